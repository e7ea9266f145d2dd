"""Statistics of benchmark and A/B results: Wilson intervals, the sign test, pass@k, quantiles.

Intervals and the binomial test come from scipy (a dependency of scikit-learn); only pass@k is
written out here, because it is the three-line estimator of Chen et al. (2021) and no library we
depend on ships it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy.stats import binomtest

Outcome = Literal["win", "tie", "loss"]


class Interval(BaseModel):
    """A proportion with its 95% Wilson score interval (None when there is no trial)."""

    successes: int
    trials: int
    rate: float | None
    low: float | None
    high: float | None

    def fmt(self, digits: int = 1) -> str:
        if self.rate is None or self.low is None or self.high is None:
            return "n/a (no trials)"
        pct = 100.0
        return (
            f"{self.rate * pct:.{digits}f}% [{self.low * pct:.{digits}f}, "
            f"{self.high * pct:.{digits}f}]"
        )


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of successes/trials (no continuity correction)."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return Interval(successes=0, trials=0, rate=None, low=None, high=None)
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(
        successes=successes,
        trials=trials,
        rate=successes / trials,
        low=float(ci.low),
        high=float(ci.high),
    )


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided exact binomial sign test of wins vs losses (ties dropped); None without data."""
    if wins < 0 or losses < 0:
        raise ValueError(f"counts must be non-negative, got wins={wins} losses={losses}")
    if wins + losses == 0:
        return None
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k).

    The product form avoids the huge binomials (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", figure 3).
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(per_item: Iterable[tuple[int, int]], k: int) -> float | None:
    """pass@k averaged over problems, each given as (samples, passed)."""
    values = [pass_at_k(n, c, k) for n, c in per_item]
    return float(np.mean(values)) if values else None


class Quantiles(BaseModel):
    n: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


def quantiles(values: Sequence[float]) -> Quantiles:
    if not values:
        return Quantiles(n=0, mean=None, p50=None, p90=None, p99=None, max=None)
    arr = np.asarray(values, dtype=float)
    p50, p90, p99 = (float(x) for x in np.percentile(arr, [50, 90, 99]))
    return Quantiles(
        n=len(values), mean=float(arr.mean()), p50=p50, p90=p90, p99=p99, max=float(arr.max())
    )


class ABStats(BaseModel):
    """Win/tie/loss of side B against side A, from the final (order-reconciled) verdicts."""

    n: int
    wins: int
    ties: int
    losses: int
    win_rate: Interval  # wins / (wins + losses), the quantity the sign test is about
    score: float | None  # (wins + ties / 2) / n
    sign_test_p: float | None
    order_consistency: float | None  # share of queries whose two orders agreed
    order_pairs: int


def ab_stats(outcomes: Sequence[Outcome], consistent: Sequence[bool] | None = None) -> ABStats:
    """Summarise final verdicts (from B's side); `consistent` says, per query, whether the
    judge gave the same verdict in both orders."""
    bad = sorted({o for o in outcomes if o not in ("win", "tie", "loss")})
    if bad:
        raise ValueError(f"verdicts must be 'win', 'tie' or 'loss'; got {bad}")
    wins, ties, losses = (sum(1 for o in outcomes if o == x) for x in ("win", "tie", "loss"))
    n = len(outcomes)
    pairs = len(consistent) if consistent is not None else 0
    return ABStats(
        n=n,
        wins=wins,
        ties=ties,
        losses=losses,
        win_rate=wilson(wins, wins + losses),
        score=(wins + ties / 2) / n if n else None,
        sign_test_p=sign_test(wins, losses),
        order_consistency=(sum(consistent) / pairs) if consistent is not None and pairs else None,
        order_pairs=pairs,
    )
