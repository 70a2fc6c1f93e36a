"""Provenance for reports: versions, git commit, dataset checksums, device, seed; and an atomic
``metrics.json`` writer."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch

from movierec.atomic import write_atomically
from movierec.progress import duration, say

PACKAGES = ("movierec", "torch", "numpy", "pandas", "pyarrow", "scipy", "nltk", "scikit-surprise",
            "implicit", "lightfm-next", "scikit-learn", "optuna", "matplotlib", "papermill")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(path: str | os.PathLike = ".") -> dict[str, str | bool | None]:
    """The commit checked out at ``path`` and whether the tree has uncommitted changes
    (outside ``reports/``, which a running report itself rewrites)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(path), *args], capture_output=True,
                                  text=True, check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def project_root() -> Path | None:
    """The source checkout holding the ``movierec`` package (an editable install), else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else None


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` of /proc/cpuinfo (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """E.g. GenuineIntel or AuthenticAMD (Linux); the machine type elsewhere."""
    return _cpuinfo("vendor_id") or platform.machine()


def device_info(device: torch.device) -> dict[str, str | int | None]:
    """Device, CPU, torch threads and the CPU code paths, all of which CPU bits depend on
    (``MKL_CBWR`` pins MKL's; see README, Reproducibility)."""
    info: dict[str, str | int | None] = {
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "cpu_vendor": cpu_vendor(), "cpu": cpu_name(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def provenance(*, device: torch.device, seed: int, dataset: str,
               checksums: dict[str, str], file_sizes: dict[str, int] | None = None,
               repo: str | os.PathLike = ".") -> dict:
    return {"versions": package_versions(), "git": git_state(repo), "dataset": dataset,
            "checksums": checksums, "file_sizes": file_sizes or {}, **device_info(device),
            "seed": seed, "platform": platform.platform()}


def _clean(obj):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(_clean(data), indent=2, sort_keys=False) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text))


class Timer:
    """Wall time per named stage: ``with timer("split"): ...``; ``timer.seconds`` is a dict.
    Each stage's start and end are reported (:mod:`movierec.progress`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        say(f"== {stage}")
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
            say(f"== {stage}: done in {duration(elapsed)}")
