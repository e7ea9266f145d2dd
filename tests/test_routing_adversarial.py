"""Routing on hostile input (issue 11, point 1): stage 1 is linear and bounded on any body.

Before the fix, `\\w+(Error|Exception):` and the argument filler's `is (.+?) running` were
quadratic: a 16 KiB run of word characters took 4 s in the structural features, 16 KiB of
`is ` 6 s in the process-name filler, and a 4 MiB body did not finish. Here every pattern that
reads query text runs over adversarial bodies of 64 KiB (four times the bounded view stage 1
reads; a quadratic pattern needs tens of seconds there, a linear one milliseconds), and every
stage-1 entry point over bodies of 4 MiB, the server's body cap. Each runs in a child process
that a watchdog kills when one call exceeds its generous budget; the real figures are printed
by benchmarks/adversarial_routing.py.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from localroute.bounded_text import GAP, STAGE1_TAIL_CHARS, STAGE1_VIEW_CHARS, stage1_view
from localroute.tools.arguments import _clean
from tests.support.hostile_text import MIB, bodies

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 5.0  # per call; generous for a loaded 2-core machine
STARTUP_S = 120.0  # imports and the classifier's load, before the first call


def run_watched(kind: str, size: int) -> dict[tuple[str, str], float]:
    """Milliseconds per (name, body) from tests/support/routing_timing.py; fails naming the
    call that did not finish within BUDGET_S."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.routing_timing", kind, str(size)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put("")  # the child exited

    threading.Thread(target=pump, daemon=True).start()
    timings: dict[tuple[str, str], float] = {}
    current = "startup"
    wait = STARTUP_S
    try:
        while True:
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                pytest.fail(f"{current} ({kind}, {size} characters) did not finish within "
                            f"{wait:g} s")
            if line == "END":
                break
            if not line:
                pytest.fail(f"the timing worker exited during {current}: rc {proc.wait()}")
            word, *rest = line.split(" ")
            if word == "START":
                current, wait = " on ".join(rest), BUDGET_S
            elif word == "DONE":
                timings[(rest[0], rest[1])] = float(rest[2])
            else:  # anything else is the worker's own error output
                current = f"{current}; worker said: {line}"
    finally:
        proc.kill()
        proc.wait()
    return timings


def test_every_pattern_over_query_text_is_linear() -> None:
    timings = run_watched("patterns", 64 * 1024)
    names = {name for name, _ in timings}
    # The collection finds the patterns that were quadratic, so it finds the others too.
    for known in ("features._EXCEPTION_NAME", "features._PATH", "arguments._PROCESS_NAMES[0]",
                  "arguments._MODEL_NAME", "arguments._PLACE", "complexity._CODE_VERB",
                  "complexity._MATH", "rules._SIGNATURE_DOCSTRING", "rules._VERSION_HEADER",
                  "steps._ABOUT_MACHINE", "cascade._DIAGNOSIS", "checks._LIST_LINE"):
        assert known in names
    assert len(names) >= 60
    slow = {k: v for k, v in timings.items() if v > BUDGET_S * 1000}
    assert not slow


PATTERN_CALL = re.compile(r"\bre\.(search|match|fullmatch|findall|finditer|sub|subn|split)\(")


def test_no_pattern_hides_inside_a_function() -> None:
    # Patterns written inline (re.search(r"...", query)) would escape the collection above.
    from tests.support.routing_timing import PATTERN_MODULES

    for module in PATTERN_MODULES:
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert not PATTERN_CALL.search(source), module.__name__


def test_stage1_entry_points_finish_on_4_mib_bodies() -> None:
    timings = run_watched("functions", 4 * MIB)
    names = {name for name, _ in timings}
    assert {"Stage1Router.decide", "apply_rules", "RouteClassifier.predict", "assess",
            "arguments_from_query[processes]", "arguments_from_query[models]",
            "check_answer", "Steps._wants_system_tools"} <= names
    assert len(timings) == len(names) * len(bodies(16))  # every body, every entry point
    slow = {k: v for k, v in timings.items() if v > BUDGET_S * 1000}
    assert not slow


def test_the_view_is_bounded_whole_and_stable() -> None:
    short = "summarize this:\n" + "x" * 100
    assert stage1_view(short) is short
    exact = "y" * STAGE1_VIEW_CHARS
    assert stage1_view(exact) is exact
    long = "HEAD " + "m" * (4 * MIB) + " TAIL"
    view = stage1_view(long)
    assert len(view) == STAGE1_VIEW_CHARS
    assert view.startswith("HEAD ") and view.endswith(" TAIL")
    assert view[-STAGE1_TAIL_CHARS - len(GAP):-STAGE1_TAIL_CHARS] == GAP
    assert stage1_view(view) == view  # a view of a view is the same view


@pytest.mark.parametrize(("token", "cleaned"), [
    ("notes.md.", "notes.md"), ("notes.md.)", "notes.md"), ("...", ".."), ("..", ".."),
    (".", "."), ("a/...", "a/.."), ("a/.", "a/"), ("a/..", "a/.."), ("x..y..", "x..y"),
    ("." * 100_000, ".."),
])
def test_trailing_full_stops_come_off_as_before(token: str, cleaned: str) -> None:
    # `_clean` used to drop one full stop per pass (quadratic on a run of dots); these are the
    # answers that loop gave.
    started = time.perf_counter()
    assert _clean(token) == cleaned
    assert time.perf_counter() - started < BUDGET_S
