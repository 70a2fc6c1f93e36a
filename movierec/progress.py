"""What a long run is doing, for the terminal that started it: stage lines, each model's search
and each training's epochs (with a bound on the time left), at a few lines a minute at most.

``make small``/``make full`` (:mod:`movierec.report`) point ``MOVIEREC_PROGRESS`` at a file they
follow and copy to the terminal: a notebook kernel cannot write to the terminal itself (its
output streams become the notebook's, and the report would fill with progress). Unset, nothing
is written; ``MOVIEREC_PROGRESS=/dev/stderr`` shows the lines in a notebook cell or a script's
terminal.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

ENV = "MOVIEREC_PROGRESS"
MIN_INTERVAL = 20.0  # seconds between two lines of one source (its last line is always written)


def say(line: str) -> None:
    """Write ``line``, time-stamped, where ``MOVIEREC_PROGRESS`` points (if set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%H:%M:%S')}  {line}\n")


def duration(seconds: float) -> str:
    """``seconds`` as a short human duration: 45 s, 12 min, 1 h 05 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class Throttle:
    """Passes a source's lines to :func:`say` at most once per ``interval`` seconds (a
    ``final`` line always)."""

    interval: float = MIN_INTERVAL
    last: float = -math.inf

    def __call__(self, line: str, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.interval:
            self.last = now
            say(line)
