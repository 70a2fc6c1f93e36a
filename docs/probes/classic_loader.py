"""Probe: the time and peak memory of reading a classic ratings file (ml-10m's ratings.dat, 10M
lines of ``user::movie::rating::timestamp``) by the fast path of ``data.read_fields`` (pyarrow)
and by its checked path (each line split in Python), each in a fresh process, alternating.

The file is generated (ml-10m's size by default, ratings in half stars, ids and timestamps of
its ranges) in a temporary folder and removed after. Run: ``python docs/probes/classic_loader.py
[lines] [repeats]``; prints one JSON line per read and a summary line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

READ = """
import json, resource, sys, time
from pathlib import Path
from movierec import data
path, how = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
if how == "fast":
    df = data.read_fields(path, "::", data.RATING_COLUMNS)
else:
    df = data._read_fields_checked(path, path.read_bytes(), "::", data.RATING_COLUMNS, None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"path": how, "seconds": round(seconds, 2), "rows": len(df),
                  "peak_gib": round(peak, 2)}))
"""


def write_ratings(path: Path, lines: int, seed: int = 0) -> None:
    """``lines`` ratings in ml-10m's form and ranges (71,567 users, 10,681 movies)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 71_568, lines)
    movies = rng.integers(1, 65_134, lines)
    stars = rng.integers(1, 11, lines) / 2
    times = rng.integers(789_652_009, 1_231_131_737, lines)
    with path.open("w") as f:
        for start in range(0, lines, 1_000_000):
            part = slice(start, start + 1_000_000)
            f.write("".join(f"{u}::{m}::{r:g}::{t}\n" for u, m, r, t in zip(
                users[part], movies[part], stars[part], times[part], strict=True)))


def main(lines: int = 10_000_054, repeats: int = 3) -> None:
    runs: dict[str, list[dict]] = {"fast": [], "checked": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ratings.dat"
        write_ratings(path, lines)
        size = path.stat().st_size
        for _ in range(repeats):
            for how in runs:
                out = subprocess.run([sys.executable, "-c", READ, str(path), how], check=True,
                                     capture_output=True, text=True).stdout
                runs[how].append(json.loads(out))
                print(out.strip(), flush=True)
    print(json.dumps({"lines": lines, "mib": round(size / 2**20), **{
        how: {"median_seconds": statistics.median(r["seconds"] for r in rs),
              "peak_gib": max(r["peak_gib"] for r in rs)} for how, rs in runs.items()}}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
