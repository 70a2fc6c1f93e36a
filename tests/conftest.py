"""Shared fixtures: generated MovieLens-format data (no network) and the real small dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from movierec import synth
from movierec.data import DATASETS, data_root, dataset_files_present, load_movielens
from movierec.experiment import Experiment
from movierec.prepare import prepare


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny generated dataset with genome (120 users, 300 movies, 6,000 ratings)."""
    return synth.generate(tmp_path_factory.mktemp("data") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_exp(tiny_dir) -> Experiment:
    """The tiny dataset prepared (split, features) as an experiment on the CPU."""
    return Experiment(prepare(load_movielens(tiny_dir)), torch.device("cpu"))


@pytest.fixture(scope="session")
def small_dir() -> Path:
    """ml-latest-small under $MOVIEREC_DATA. Skipped locally when absent; in CI (CI set) its
    absence is a failure, never a silent skip."""
    folder = data_root() / "ml-latest-small"
    if not dataset_files_present(folder, DATASETS["ml-latest-small"]):
        msg = f"ml-latest-small not found under {folder.parent} (set MOVIEREC_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return folder


def write_csv(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def train_config(**changes):
    """A quick training configuration for tests (the notebook's settings are larger)."""
    from movierec.train import TrainConfig

    base = {"epochs": 4, "batch_size": 256, "lr": 0.01, "dense_lr": 0.003, "patience": 10,
            "n_negatives": 1024, "progress": False}
    return TrainConfig(**{**base, **changes})


# a setting of the main model for tests (it has no defaults: variants.MAIN_SPACE)
MAIN = {"rank_weight": 1.0, "temperature": 0.3, "reg": 0.02, "min_positive": 4.0,
        "lr": 0.01, "dense_lr": 0.003, "n_negatives": 1024}


def spec(name: str, dim: int = 8, axes: dict | None = None, **train):
    """Our variant ``name`` as a protocol spec with :func:`train_config` settings; the main
    model's settings that ``axes`` does not search are :data:`MAIN`'s (and ``dim``)."""
    from movierec.variants import VariantSpec, variant

    v = variant(name)
    main = {**MAIN, "dim": dim, **{k: x for k, x in train.items() if k in MAIN}}
    fixed = {k: (x,) for k, x in main.items() if k in v.requires}
    # a variant's own grid pinned to one setting (its middle values; the test's dim)
    fixed.update({k: (dim,) if k == "dim" else (x[len(x) // 2],) for k, x in v.axes.items()
                  if k not in train})
    return VariantSpec(v, train_config(**train), dim, axes={**fixed, **(axes or {})})
