"""The symbolic comparison that runs inside a grader worker process.

Only this module and ``math_relations`` (which it calls) import sympy / math-verify. It is run
in a child process because a pathological expression (``9^{9^{9^{9}}}``) can make sympy
compute for minutes or exhaust memory; math-verify's own guard is ``signal.alarm``, which only
works in a main thread, so the parent kills the worker instead and math-verify's timeouts are
switched off here.
"""

from __future__ import annotations

import logging
from typing import Any

from localroute.evaluation.graders.math_relations import same_inequality_set, same_solution_set

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


def _relation_rules(
    gold: str, pred: str, gold_full: str, pred_full: str
) -> tuple[bool, str] | None:
    """The equation and inequality rules (``math_relations``), when one of them applies.

    sympy gives up on some forms (``\\sin x > 0`` has no interval form it can build); a rule
    that raises does not apply, and math-verify's verdict stands.
    """
    try:
        same = same_solution_set(_parse, gold_full, pred_full)
    except Exception:
        same = None
    if same is not None:
        return (True, "equations with the same solutions (one is a non-zero multiple of the "
                "other)") if same else None
    try:
        same = same_inequality_set(_parse, gold, pred)
    except Exception:
        same = None
    if same:
        return True, "inequality and interval describe the same set of reals"
    return None


def compare(
    gold: str, pred: str, gold_full: str | None = None, pred_full: str | None = None
) -> tuple[bool, str]:
    """(equivalent, reason) for two normalised LaTeX answers.

    ``gold_full`` / ``pred_full`` are the same answers with a leading label (``y =``) kept,
    when normalising removed one; the equation rule needs both sides of an equation.
    """
    from math_verify import verify

    gold_parsed = _parse(gold)
    pred_parsed = _parse(pred)
    gold_exprs = [g for g in gold_parsed if not isinstance(g, str)]
    pred_exprs = [p for p in pred_parsed if not isinstance(p, str)]
    if gold_exprs and pred_exprs and verify(gold_exprs, pred_exprs, timeout_seconds=None):
        mismatch = _tiny_value_mismatch(gold_exprs[0], pred_exprs[0])
        if mismatch is not None:
            return False, f"math-verify matched after rounding, but {mismatch}"
        return True, "math-verify: equivalent"
    rule = _relation_rules(gold, pred, gold_full or gold, pred_full or pred)
    if rule is not None:
        return rule
    if not gold_exprs or not pred_exprs:
        side = "gold" if not gold_exprs else "prediction"
        same = " ".join(gold.split()) == " ".join(pred.split())
        verdict = "same" if same else "different"
        return same, f"{side} is not parseable maths; compared as text ({verdict})"
    return False, "math-verify: not equivalent"
