"""The machine a run uses: its device (``"auto"``: CUDA, then Apple MPS, then the CPU), its CPU
threads and the seeding of libraries outside movierec (movierec's own functions take explicit
generators)."""

from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_threads(threads: int) -> int:
    """Use ``threads`` CPU threads in torch (0: leave the count as it is; torch starts with one
    per physical core) and return the count in use. CPU results are bit-for-bit reproducible
    for a fixed count: the split of a parallel sum among threads changes its rounding."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch (for code outside movierec) and return a torch Generator
    that movierec's own functions take explicitly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
