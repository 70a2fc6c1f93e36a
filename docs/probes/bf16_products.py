"""Probe: the retrieval term's three products in bfloat16 instead of float32 (issue 35 names
"bf16 where the result holds within the tolerance"): how much faster, on which CPUs, and how far
the values move.

The sampled softmax's products (:class:`movierec.loss.ExpRowSums`: ``exp(a @ b.T + offset)`` and,
backward, ``e @ b`` and ``e.T @ a'``) are a third of ml-latest-small's training step. Here they
run alone at two shapes: make tune's setting on ml-latest-small (about 500 positives of a
1,024-row batch against 4,096 negatives, 64 dimensions) and make full's (about 8,000 positives
of 16,384 against 256 negatives), in float32 (as trained today) and in bfloat16 with float32
results. torch sends bfloat16 products to oneDNN, whose instruction set is capped in a child
process by ``ONEDNN_MAX_CPU_ISA`` to see what other CPUs get: native bfloat16 (AVX-512 BF16,
as on this AMD EPYC), AVX-512 without it (conversion in software), AVX2 only (most laptops and
many servers). The error is that of the row sums of exponentials (what the loss reads), relative
to float64, against the report's tolerance for continuous values (1e-5, reports/tolerance.json).
Synthetic unit vectors; nothing is trained, no dataset is read.
Run: ``python docs/probes/bf16_products.py`` (about a minute).
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

SHAPES = {"small (make tune)": (500, 4096, 64), "full (make full)": (8000, 256, 64)}
ISAS = {"native bf16 (this CPU)": None, "AVX-512 without bf16": "AVX512_CORE",
        "AVX2 only": "AVX2"}
TEMPERATURE = 0.25  # about make tune's choice: logits up to 4 in size


def _time(f, repeat: int = 50) -> float:
    for _ in range(5):
        f()
    t = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - t) / repeat * 1e3


def products(a, b, off, col, bf16: bool):
    """The forward product with its exponentials' row sums, and the two backward products."""
    import torch

    if not bf16:
        e = torch.addmm(off.unsqueeze(0), a, b.T).exp_()
        return e.sum(1), e @ b, e.T @ (a * col)
    ab, bb = a.bfloat16(), b.bfloat16()
    e = (ab @ bb.T).float().add_(off).exp_()
    eb = e.bfloat16()
    return e.sum(1), (eb @ bb).float(), (eb.T @ (a * col).bfloat16()).float()


def measure() -> dict:
    """In this process: ms of the three products per step in each precision, and the error."""
    import torch

    torch.set_num_threads(2)
    out = {}
    for name, (p, n, d) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        a = torch.nn.functional.normalize(torch.randn(p, d, generator=g), dim=1)
        b = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1) / TEMPERATURE
        off = torch.full((n,), -1 / TEMPERATURE)
        col = torch.rand(p, 1, generator=g)

        exact = torch.exp(a.double() @ b.double().T + off.double()).sum(1)
        out[name] = {}
        for precision in ("fp32", "bf16"):
            run = functools.partial(products, a, b, off, col, precision == "bf16")
            out[name][f"{precision}_ms"] = _time(run)
            out[name][f"{precision}_rel_error"] = float(
                ((run()[0].double() - exact).abs() / exact).max())
    return out


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(measure()))
        return
    for label, isa in ISAS.items():
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
        if isa:
            env["ONEDNN_MAX_CPU_ISA"] = isa
        res = json.loads(subprocess.run([sys.executable, __file__, "--child"], env=env,
                                        capture_output=True, text=True, check=True).stdout)
        for shape, r in res.items():
            print(f"{label:24s} {shape:18s} fp32 {r['fp32_ms']:6.2f} ms  bf16 {r['bf16_ms']:6.2f}"
                  f" ms  ({r['fp32_ms'] / r['bf16_ms']:4.1f}x)  row-sum error fp32 "
                  f"{r['fp32_rel_error']:.1e}, bf16 {r['bf16_rel_error']:.1e}")


if __name__ == "__main__":
    main()
