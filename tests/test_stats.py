"""Statistics with known answers: Wilson intervals, the sign test, pass@k, A/B summaries."""

from __future__ import annotations

from math import comb

import pytest

from localroute.evaluation.ab.run import blind, reconcile
from localroute.evaluation.stats import ab_stats, pass_at_k, quantiles, sign_test, wilson


def test_wilson_matches_the_textbook_values() -> None:
    # 8 of 10: Wilson 95% interval [0.4902, 0.9433] (Newcombe 1998, Table I method 3 style).
    ci = wilson(8, 10)
    assert ci.rate == pytest.approx(0.8)
    assert ci.low == pytest.approx(0.4902, abs=1e-4) and ci.high == pytest.approx(0.9433, abs=1e-4)
    zero = wilson(0, 10)
    assert zero.low == pytest.approx(0.0, abs=1e-12)
    assert zero.high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0).rate is None and wilson(0, 0).fmt() == "n/a (no trials)"
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson(3, 2)


def test_sign_test_is_the_exact_two_sided_binomial() -> None:
    assert sign_test(8, 2) == pytest.approx(2 * (comb(10, 8) + comb(10, 9) + 1) / 2**10)
    assert sign_test(5, 5) == pytest.approx(1.0)
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    assert sign_test(0, 0) is None


def test_pass_at_k_unbiased_estimator() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(n-c, k) / C(n, k) computed directly.
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - comb(7, 5) / comb(10, 5))
    assert pass_at_k(5, 4, 2) == 1.0  # n - c < k: every k-subset holds a pass
    assert pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_ab_stats_on_a_constructed_verdict_list() -> None:
    outcomes = ["win"] * 8 + ["loss"] * 2 + ["tie"] * 3
    consistent = [True] * 10 + [False] * 3 + [True, True]
    s = ab_stats(outcomes, consistent)  # type: ignore[arg-type]
    assert (s.n, s.wins, s.ties, s.losses) == (13, 8, 3, 2)
    assert s.win_rate.rate == pytest.approx(0.8) and s.win_rate.trials == 10
    assert s.win_rate.low == pytest.approx(0.4902, abs=1e-4)
    assert s.sign_test_p == pytest.approx(0.109375)
    assert s.score == pytest.approx((8 + 1.5) / 13)
    assert s.order_consistency == pytest.approx(12 / 15) and s.order_pairs == 15
    with pytest.raises(ValueError, match="'win', 'tie' or 'loss'"):
        ab_stats(["win", "draw"])  # type: ignore[list-item]


def test_reconcile_both_orders() -> None:
    assert reconcile("b", "b") == ("win", True)
    assert reconcile("a", "a") == ("loss", True)
    assert reconcile("tie", "tie") == ("tie", True)
    assert reconcile("a", "b") == ("tie", False)  # position bias: disagreement is a tie
    assert reconcile("invalid", "b") == ("tie", None)


def test_blind_removes_reasoning_and_names() -> None:
    text = "<think>I am DeepSeek-R1 and I think</think>As Qwen3-4B I say: 42."
    seen = blind(text, ["qwen/qwen3-4b", "Qwen3-4B", "DeepSeek-R1"])
    assert "think" not in seen and "Qwen3-4B" not in seen and seen.endswith("say: 42.")


def test_quantiles() -> None:
    q = quantiles([1.0, 2.0, 3.0, 4.0])
    assert q.p50 == pytest.approx(2.5) and q.max == 4.0 and q.mean == pytest.approx(2.5)
    assert quantiles([]).p50 is None
