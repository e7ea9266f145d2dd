"""The torch-free helpers of benchmarks/routing_vs_semantic_router.py: folds, scoring, table."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from localroute.routing.classifier import RouteClassifier
from localroute.routing.training import PredictFn, cross_validate
from localroute.routing.types import ROUTES, RouteRow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "routing_vs_semantic_router.py"


def _load_bench() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the file by path.
    spec = importlib.util.spec_from_file_location("routing_vs_semantic_router", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

_QUERIES = {
    "tool": ["how busy is the cpu", "free disk space", "cpu load now", "disk usage of /",
             "cpu temperature"],
    "router": ["hello there", "tell me a joke", "what is a good name for a cat", "thanks!",
               "write a haiku about rain"],
    "reasoning": ["prove that sqrt 2 is irrational", "solve x^2 - 5x + 6 = 0",
                  "how many primes below 50", "is 91 prime, explain", "logic puzzle: who lies"],
    "coding": ["write a python function to reverse a list", "fix this bug in my rust code",
               "implement quicksort in go", "refactor this class", "write a sql join query"],
    "summarization": ["summarize this article", "tl;dr of the meeting notes",
                      "give me the key points of this text", "condense this report",
                      "summarise the thread below"],
}


def _tiny_rows() -> list[RouteRow]:
    rows: list[RouteRow] = []
    for route, queries in _QUERIES.items():
        for i, query in enumerate(queries):
            hint = ("cpu" if "cpu" in query else "disk") if route == "tool" else None
            rows.append(RouteRow.model_validate(
                {"query": query, "route": route, "tool_hint": hint, "id": f"{route}-{i}"}))
    return rows


def test_folds_partition_the_rows_and_are_stratified() -> None:
    labels = [r.route for r in _tiny_rows()] * 2
    folds = bench.fold_indices(labels, 5, 0)
    assert len(folds) == 5
    tested = [i for _, test in folds for i in test]
    assert sorted(tested) == list(range(len(labels)))
    for train, test in folds:
        assert not set(train) & set(test)
        assert sorted(train + test) == list(range(len(labels)))
        assert Counter(labels[i] for i in test) == {route: 2 for route in ROUTES}
    assert bench.fold_indices(labels, 5, 0) == folds
    assert bench.fold_indices(labels, 5, 1) != folds


def test_folds_are_the_ones_cross_validate_scores() -> None:
    rows = _tiny_rows()
    seen: list[list[str]] = []

    def recorder(classifier: RouteClassifier) -> PredictFn:
        seen.append([])

        def predict(query: str) -> tuple[str, str | None]:
            seen[-1].append(query)
            return "router", None

        return predict

    cross_validate(rows, k=5, seed=3, extra_rows=rows, predictor=recorder)
    ours = [[rows[i].query for i in test] for _, test in bench.fold_indices(
        [r.route for r in rows], 5, 3)]
    assert seen == ours


def test_fold_indices_rejects_k_below_two() -> None:
    with pytest.raises(ValueError, match="--k must be at least 2"):
        bench.fold_indices(["tool", "router"], 1, 0)


def test_summarise_counts_no_route_as_wrong() -> None:
    result = bench.SystemResult("demo")
    result.add_fold(["tool", "tool", "router", "coding"], ["tool", None, "router", "reasoning"],
                    [1.0, 2.0, 3.0, 4.0], 0.5)
    result.add_fold(["summarization", "reasoning"], ["summarization", "reasoning"],
                    [5.0, 6.0], 0.25)
    summary = bench.summarise(result)
    assert summary["n"] == 6
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["no_route"] == 1
    assert summary["per_route_accuracy"] == {
        "tool": 0.5, "router": 1.0, "reasoning": 1.0, "coding": 0.0, "summarization": 1.0}
    assert summary["latency_ms"]["p50"] == pytest.approx(3.5)
    assert summary["fit_seconds_per_fold"] == [0.5, 0.25]
    assert summary["fold_accuracy"] == [0.5, 1.0]


def test_add_fold_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="demo: a fold needs one prediction"):
        bench.SystemResult("demo").add_fold(["tool"], ["tool", "router"], [1.0], 0.1)


def test_table_has_a_column_per_system_and_every_route() -> None:
    summaries = []
    for name, guess in (("alpha", "tool"), ("beta", None)):
        result = bench.SystemResult(name)
        result.add_fold(list(ROUTES), [guess] * len(ROUTES), [1.0] * len(ROUTES), 0.125)
        summaries.append(bench.summarise(result))
    table = bench.format_table(summaries)
    header, rule, *body = table.splitlines()
    assert set(rule.replace(" ", "")) == {"-"}
    assert header.split() == ["alpha", "beta"]
    rows = {line.split()[0]: line.split()[1:] for line in body if line.strip()}
    assert rows["accuracy"] == ["0.200", "0.000"]
    assert rows["tool"] == ["1.000", "0.000"]
    assert rows["coding"] == ["0.000", "0.000"]
    assert any(line.startswith("no route returned") and line.split()[-2:] == ["0", "5"]
               for line in body)
