"""The symbolic comparison that runs inside a grader worker process.

Only this module imports sympy / math-verify. It is run in a child process because a
pathological expression (``9^{9^{9^{9}}}``) can make sympy compute for minutes or exhaust
memory; math-verify's own guard is ``signal.alarm``, which only works in a main thread, so the
parent kills the worker instead and math-verify's timeouts are switched off here.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["compare", "warm_up"]

# Relative tolerance for a float that math-verify called equal to a number. math-verify rounds
# both sides to 6 decimal places, which makes 1e-7 equal to 0 and to 2e-7; a relative check
# keeps its "1/3 == 0.333333" leniency without that blind spot for tiny values.
_REL_TOL = 1e-4


def warm_up() -> None:
    """Pool initializer: import and exercise the parser once so the first real call is fast."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    compare("\\frac{1}{2}", "0.5")


def _parse(latex: str) -> list[Any]:
    from math_verify import LatexExtractionConfig, parse

    # Wrapping in \boxed{} makes math-verify take the whole string as one answer instead of
    # searching it for an answer-looking span, since extraction has already been done.
    return list(
        parse(
            "\\boxed{" + latex + "}",
            extraction_config=[LatexExtractionConfig(boxed_match_priority=0)],
            parsing_timeout=None,
        )
    )


def _plain_number(expr: Any) -> complex | None:
    from sympy import Expr, N

    if not isinstance(expr, Expr) or expr.free_symbols or not expr.is_number:
        return None
    try:
        return complex(N(expr, 30))
    except (TypeError, ValueError):
        return None


def _tiny_value_mismatch(gold: Any, pred: Any) -> str | None:
    a = _plain_number(gold)
    b = _plain_number(pred)
    if a is None or b is None or a == b:
        return None
    scale = max(abs(a), abs(b))
    if abs(a - b) > _REL_TOL * scale:
        return f"numbers differ: {a.real if a.imag == 0 else a} vs {b.real if b.imag == 0 else b}"
    return None


def compare(gold: str, pred: str) -> tuple[bool, str]:
    """(equivalent, reason) for two normalised LaTeX answers."""
    from math_verify import verify

    gold_parsed = _parse(gold)
    pred_parsed = _parse(pred)
    gold_exprs = [g for g in gold_parsed if not isinstance(g, str)]
    pred_exprs = [p for p in pred_parsed if not isinstance(p, str)]
    if not gold_exprs or not pred_exprs:
        side = "gold" if not gold_exprs else "prediction"
        same = " ".join(gold.split()) == " ".join(pred.split())
        verdict = "same" if same else "different"
        return same, f"{side} is not parseable maths; compared as text ({verdict})"
    equivalent = bool(verify(gold_exprs, pred_exprs, timeout_seconds=None))
    if not equivalent:
        return False, "math-verify: not equivalent"
    mismatch = _tiny_value_mismatch(gold_exprs[0], pred_exprs[0])
    if mismatch is not None:
        return False, f"math-verify matched after rounding, but {mismatch}"
    return True, "math-verify: equivalent"
