"""Equations and inequalities compared by what they mean, for the grader worker.

Two rules that math-verify does not apply on its own, both run inside the worker process
(sympy), so the parent's hard timeout bounds them like every other comparison:

- Equations as solution sets. ``y - 2x = 3`` and ``y = 2x + 3``, or ``2x + 3y - 6 = 0`` and
  ``y = -\\frac{2}{3}x + 2``, are the same line. Every term is moved to one side
  (``f = lhs - rhs``); two equations are equivalent when ``f_gold / f_pred`` is a non-zero
  constant, which is a sufficient condition for equal solution sets that never accepts two
  different curves.
- Inequalities in one variable as sets of reals. ``y \\le 0`` is the interval ``(-\\infty, 0]``;
  ``x < -1 \\lor x > 2`` (the normaliser's marker for "or" between inequalities) is
  ``(-\\infty, -1) \\cup (2, \\infty)``. A side is turned into a set only when it has a single
  free symbol; when both sides are inequalities they must name the same one.

Graded answers are untrusted: the rules only run on answers up to ``MAX_CHARS`` characters,
and the parent kills the worker if sympy runs past the grading timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from localroute.evaluation.graders.math_normalize import LOGIC_AND, LOGIC_OR

__all__ = ["MAX_CHARS", "same_inequality_set", "same_solution_set"]

# A real final answer is short; longer text is not given to the relation rules at all.
MAX_CHARS: Final = 400

Parser = Callable[[str], list[Any]]


def _first_expr(parse: Parser, latex: str) -> Any | None:
    parsed = [p for p in parse(latex) if not isinstance(p, str)]
    return parsed[0] if parsed else None


def _one_side(eq: Any) -> Any | None:
    from sympy import Eq

    if not isinstance(eq, Eq):
        return None
    return eq.lhs - eq.rhs


def same_solution_set(parse: Parser, gold: str, pred: str) -> bool | None:
    """True when both are equations and one is a non-zero multiple of the other.

    None when either side is not a single equation (the rule does not apply).
    """
    from sympy import S, cancel, simplify

    if len(gold) > MAX_CHARS or len(pred) > MAX_CHARS or "=" not in gold or "=" not in pred:
        return None
    f = _one_side(_first_expr(parse, gold))
    g = _one_side(_first_expr(parse, pred))
    if f is None or g is None:
        return None
    f_zero = bool(simplify(f) == 0)
    g_zero = bool(simplify(g) == 0)
    if f_zero or g_zero:
        # "0 = 0" holds everywhere: it matches only another identity.
        return f_zero and g_zero
    ratio = cancel(f / g)
    if ratio.free_symbols:
        ratio = simplify(ratio)
    if ratio.free_symbols or not ratio.is_number:
        return False
    nonzero = ratio != 0 and ratio.is_finite is True and ratio not in (S.NaN, S.ComplexInfinity)
    return bool(nonzero)


def _relation_set(parse: Parser, latex: str) -> tuple[Any, Any] | None:
    """(symbol, set of reals) for an inequality form in one variable, else None."""
    from sympy import And, Intersection, Union
    from sympy.core.relational import Relational

    has_and = LOGIC_AND.strip() in latex
    has_or = LOGIC_OR.strip() in latex
    if has_and and has_or:
        return None  # precedence of a mixed chain is not worth guessing
    marker = LOGIC_AND if has_and else LOGIC_OR
    parts = latex.split(marker.strip()) if has_and or has_or else [latex]
    symbols: set[Any] = set()
    sets: list[Any] = []
    for part in parts:
        rel = _first_expr(parse, part.strip())
        if not isinstance(rel, Relational | And):
            return None
        if isinstance(rel, And) and not all(isinstance(a, Relational) for a in rel.args):
            return None
        symbols |= rel.free_symbols
        if len(symbols) != 1:
            return None
        sets.append(rel.as_set())
    combined = Intersection(*sets) if has_and else Union(*sets)
    return next(iter(symbols)), combined


def _as_set(parse: Parser, latex: str) -> Any | None:
    from sympy import Set

    value = _first_expr(parse, latex)
    return value if isinstance(value, Set) else None


def same_inequality_set(parse: Parser, gold: str, pred: str) -> bool | None:
    """True when an inequality and an interval (or two inequalities) are the same set.

    None when neither side is an inequality in one variable or the other side is no set.
    """
    if len(gold) > MAX_CHARS or len(pred) > MAX_CHARS:
        return None
    gold_rel = _relation_set(parse, gold)
    pred_rel = _relation_set(parse, pred)
    if gold_rel is None and pred_rel is None:
        return None
    if gold_rel is not None and pred_rel is not None:
        if gold_rel[0] != pred_rel[0]:
            return False
        return _sets_equal(gold_rel[1], pred_rel[1])
    gold_set = gold_rel[1] if gold_rel is not None else _as_set(parse, gold)
    pred_set = pred_rel[1] if pred_rel is not None else _as_set(parse, pred)
    if gold_set is None or pred_set is None:
        return None
    return _sets_equal(gold_set, pred_set)


def _sets_equal(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return bool(a.symmetric_difference(b).is_empty is True)
