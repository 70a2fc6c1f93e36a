"""A trained model saved with everything needed to recommend, explain and fold in new users,
loadable without the dataset.

A model folder holds ``model.pt`` (config + state dict, loadable with ``weights_only=True``),
``arrays.npz`` (movie features, user ids, each user's train + val history), ``movies.parquet``
(movieId, title, genres) and ``manifest.json`` (format, variant, the SHA-256 of the data it was
trained on, vocabularies, example recommendations, and the SHA-256 and size of every other
file, so that a partial or edited folder is detected). It is written to a temporary folder and
renamed into place. :meth:`movierec.recommend.Recommender.load` reads one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from movierec.csr import Csr
from movierec.features import MovieFeatures
from movierec.model import ModelConfig, MovieRecModel
from movierec.runtime import resolve_device
from movierec.tensors import FeatureTensors

FORMAT = 2  # 2: the model's config holds its objective (the loss a new user is folded in with)
DATA_FILES = ("model.pt", "arrays.npz", "movies.parquet")  # each one hashed in the manifest
MANIFEST = "manifest.json"
MANIFEST_KEYS = ("format", "variant", "dataset", "data_checksums", "by", "tag_vocab",
                 "genome_tags", "genres", "examples", "files")


class ArtifactError(ValueError):
    """A model folder that is missing, partial, edited, of another format or of other data."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def features_from_arrays(a: dict[str, np.ndarray], movie_ids: np.ndarray,
                         manifest: dict) -> MovieFeatures:
    genome = mask = None
    if "genome" in a:
        genome = np.zeros((len(movie_ids), a["genome"].shape[1]), np.float32)
        genome[a["genome_rows"]] = a["genome"]
        mask = np.zeros(len(movie_ids), bool)
        mask[a["genome_rows"]] = True
    return MovieFeatures(
        movie_ids=movie_ids.astype(np.int32),
        genres=Csr(a["genres_offsets"], a["genres_indices"], a["genres_weights"]),
        tags=Csr(a["tags_offsets"], a["tags_indices"], a["tags_weights"]),
        tag_vocab=manifest["tag_vocab"], genome=genome, genome_mask=mask,
        genome_tags=manifest["genome_tags"])


def save_artifact(folder: str | os.PathLike, rec, *, variant: str, dataset: str,
                  data_checksums: dict[str, str], examples: dict | None = None) -> Path:
    """Write the :class:`~movierec.recommend.Recommender` ``rec`` to ``folder`` atomically.

    ``examples`` (userId -> movieIds) records recommendations made at training time, which a
    loaded model must reproduce."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the folder is an ordinary output
    try:
        state = {k: v.detach().cpu() for k, v in rec.model.state_dict().items()}
        torch.save({"format": FORMAT, "model_config": rec.model.config.to_dict(),
                    "state": state}, tmp / "model.pt")
        np.savez(tmp / "arrays.npz", movie_ids=rec.movies["movieId"].to_numpy(np.int64),
                 user_ids=rec.user_ids.astype(np.int64),
                 history_offsets=rec.history.offsets, history_items=rec.history.indices,
                 **rec.feats.arrays())
        rec.movies[["movieId", "title", "genres"]].to_parquet(tmp / "movies.parquet",
                                                              index=False)
        manifest = {
            "format": FORMAT, "variant": variant, "dataset": dataset,
            "data_checksums": data_checksums, "by": rec.by,
            "tag_vocab": rec.tag_vocab, "genome_tags": rec.genome_tags,
            "genres": list(rec.genres) if rec.genres else None,
            "examples": {str(k): [int(x) for x in v] for k, v in (examples or {}).items()},
            "files": {n: {"sha256": _sha256(tmp / n), "bytes": (tmp / n).stat().st_size}
                      for n in DATA_FILES},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest, after checking that every file is present and unchanged."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no model folder here (run `make small` to write one)")
    if not path.exists():
        raise ArtifactError(f"{path}: missing: not a movierec model folder, or a partial one")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise ArtifactError(f"{path}: format {got!r}, this movierec reads format {FORMAT}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path}: lacks {missing} (a format {FORMAT} manifest holds "
                            f"{list(MANIFEST_KEYS)})")
    files = manifest["files"]
    if not isinstance(files, dict) or sorted(files) != sorted(DATA_FILES):
        raise ArtifactError(f"{path}: must vouch for exactly {list(DATA_FILES)}, lists "
                            f"{sorted(files) if isinstance(files, dict) else files!r}")
    for name, want in files.items():
        if not (isinstance(want, dict) and isinstance(want.get("bytes"), int)
                and isinstance(want.get("sha256"), str) and len(want["sha256"]) == 64):
            raise ArtifactError(f"{path}: the entry of {name} needs its sha256 and bytes, got "
                                f"{want!r}")
        file = folder / name
        if not file.exists():
            raise ArtifactError(f"{file}: missing (a partial model folder)")
        if file.stat().st_size != want["bytes"] or _sha256(file) != want["sha256"]:
            raise ArtifactError(f"{file}: size or SHA-256 differs from the manifest (truncated "
                                "or edited)")
    return manifest


def read_artifact(folder: str | os.PathLike, device: str | torch.device = "auto", *,
                  expect_checksums: dict[str, str] | None = None) -> dict:
    """The parts of the recommender saved in ``folder``, on ``device``: the keyword arguments
    of :class:`~movierec.recommend.Recommender` and the ``manifest``.

    ``expect_checksums`` (a dataset's file SHA-256s, e.g. ``Prepared.checksums``) must equal the
    data the model was trained on, else :class:`ArtifactError`."""
    folder, device = Path(folder), resolve_device(device)
    manifest = read_manifest(folder)
    if expect_checksums is not None and expect_checksums != manifest["data_checksums"]:
        differ = sorted(k for k in set(expect_checksums) | set(manifest["data_checksums"])
                        if expect_checksums.get(k) != manifest["data_checksums"].get(k))
        raise ArtifactError(f"{folder}: trained on {manifest['dataset']!r}, whose files differ "
                            f"from the data given ({differ})")
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    model = MovieRecModel(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["state"])
    model.to(device).eval()
    with np.load(folder / "arrays.npz") as npz:
        a = {k: npz[k] for k in npz.files}
    features = features_from_arrays(a, a["movie_ids"], manifest)
    bases = model.content.bases() if model.content is not None else None
    return {"model": model, "feats": FeatureTensors(features, device, bases=bases),
            "movies": pd.read_parquet(folder / "movies.parquet"), "user_ids": a["user_ids"],
            "history": Csr(a["history_offsets"], a["history_items"]), "by": manifest["by"],
            "tag_vocab": manifest["tag_vocab"], "genome_tags": manifest["genome_tags"],
            "genres": tuple(manifest["genres"]) if manifest["genres"] else None,
            "manifest": manifest}
