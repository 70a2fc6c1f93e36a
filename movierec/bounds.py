"""How far a result may move on another CPU (another MKL code path, thread count or vector unit):
the tolerances measured by ``make tolerance`` (docs/reproducibility.md). The report's comparison
(:mod:`movierec.compare`) and the replay of a recorded search (:mod:`movierec.protocol`) both
size their bounds from these."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Bounds for a run on another CPU (docs/reproducibility.md says how they were measured)."""

    rel: float = 1e-5  # continuous values: |a - b| <= rel * max(|a|, |b|)
    flips: int = 3  # ranking metrics: top-k entries that may change over all evaluated users
    coverage_movies: int = 10  # coverage: distinct movies shown that may differ
    p_shift: float = 0.02  # a bootstrap's share of resamples not ahead (near-ties move some)
    # ... plus its difference's move times the resampled differences' density peak, taken as
    # this many peaks of a normal of the same spread: a bootstrap of few users is lumpy (the
    # new-movie study's 18, most at 0 under both models); an MKL_CBWR=COMPATIBLE rerun at
    # ca60254 moved one share by 2.05 peaks times its difference's move
    p_peaks: float = 4.0


# a per-user ranking metric (its user mean, or that mean's standard error) and coverage
RANKING_METRIC = re.compile(r"^(?:(?P<bucket>\w+) )?(?:val_)?(recall|ndcg|hit_rate|map|coverage)"
                            r"@\d+(_se)?$")
MAX_RATING_ERROR = 4.5  # ratings lie in 0.5..5: no RMSE or MAE exceeds this
