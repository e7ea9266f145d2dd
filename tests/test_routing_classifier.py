"""Stage-1 routing: rule precision, classifier determinism, CV accuracy, artifacts, row errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from localroute.routing.classifier import ArtifactError, RouteClassifier, data_fingerprint
from localroute.routing.rules import _pasted_changelog, apply_rules
from localroute.routing.training import (
    RowLoadError,
    cross_validate,
    evaluate,
    load_rows,
    packaged_rows,
    resolve_dev_path,
)
from localroute.routing.types import RouteRow


@pytest.fixture(scope="module")
def dev_rows() -> list[RouteRow]:
    return load_rows(resolve_dev_path())


@pytest.fixture(scope="module")
def small_classifier() -> RouteClassifier:
    return RouteClassifier.train(packaged_rows(), seed=0)


def test_every_rule_is_never_wrong_on_dev_and_packaged_rows(dev_rows: list[RouteRow]) -> None:
    fired: Counter[str] = Counter()
    for row in dev_rows + packaged_rows():
        hit = apply_rules(row.query)
        if hit is None:
            continue
        fired[hit.reason] += 1
        assert (hit.route, hit.tool_hint) == (row.route, row.tool_hint), (
            f"rule {hit.reason} wrong on {row.source}: {row.query[:80]!r}"
        )
    # The rules must carry real weight, not just be vacuously precise.
    assert sum(fired.values()) >= 200
    assert {"shell-command", "python-signature-docstring", "latex-math"} <= set(fired)
    assert {"summarize-pasted-text", "write-code-request"} <= set(fired)


def test_rules_leave_dev_hard_negatives_to_the_classifier_or_get_them_right(
    dev_rows: list[RouteRow],
) -> None:
    hard = [r for r in dev_rows if r.source.startswith("handwritten:hard-negative")]
    assert hard
    for row in hard:
        hit = apply_rules(row.query)
        assert hit is None or hit.route == row.route


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Write a script for a 30-second TV commercial about a bakery.", None),
        ("Write a short play script about two robots falling in love.", None),
        ("Write a script that renames every .jpeg file in a folder to .jpg", "coding"),
        ("write a python function to merge two sorted lists", "coding"),
    ],
)
def test_write_code_rule_leaves_prose_scripts_alone(query: str, expected: str | None) -> None:
    hit = apply_rules(query)
    assert (hit.route if hit is not None else None) == expected


def test_pasted_changelog_rule_needs_a_release_heading_and_change_lines() -> None:
    changelog = (
        "What matters for users here?\n\n## 2.4.0 (2025-05-01)\n\n"
        + "".join(f"- Fixed: issue number {i} in the sync engine when offline\n" for i in range(6))
        + "- Added: export to PDF with custom margins and page sizes\n" * 2
        + "- Changed: the default timeout is now 20 seconds instead of 10\n"
    )
    hit = apply_rules(changelog)
    assert hit is not None and hit.route == "summarization"
    assert hit.reason in {"pasted-changelog", "summarize-pasted-text"}
    direct = _pasted_changelog(changelog)
    assert direct is not None and direct.reason == "pasted-changelog"
    # Quantities at the start of recipe lines are not release headings.
    recipe = "Scale this recipe for 6 people:\n" + "1.5 cups flour, sifted twice before use\n" * 20
    assert _pasted_changelog(recipe) is None
    # Code in the body makes it a coding question.
    assert _pasted_changelog(changelog + "\ndef migrate(cfg):\n    return cfg\n") is None


def test_two_trainings_give_identical_predictions(small_classifier: RouteClassifier) -> None:
    again = RouteClassifier.train(packaged_rows(), seed=0)
    queries = ["is ollama running", "Prove that 7 is prime.", "tl;dr of this chat", "hi there"]
    for query in queries:
        assert small_classifier.predict(query) == again.predict(query)
    assert small_classifier.artifact_id() == again.artifact_id()


def test_cross_validation_on_dev_reaches_095(dev_rows: list[RouteRow]) -> None:
    report = cross_validate(dev_rows, k=5, seed=0)
    assert report.overall.n == len(dev_rows)
    assert len(report.fold_accuracy) == 5
    assert report.overall.accuracy >= 0.95, report.overall.confusion


def test_packaged_artifact_is_current_and_predicts(dev_rows: list[RouteRow]) -> None:
    classifier = RouteClassifier.load()
    assert RouteClassifier.load() is classifier  # cached per process
    expected = data_fingerprint(dev_rows + packaged_rows(), seed=0)
    assert classifier.artifact_id().endswith(expected), "run `localroute train-router`"
    prediction = classifier.predict("how much free disk space do I have left?")
    assert prediction.route == "tool"
    assert prediction.tool_hint == "disk"
    assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-6


def test_save_and_load_round_trip(small_classifier: RouteClassifier, tmp_path: Path) -> None:
    path = small_classifier.save(tmp_path / "rc.joblib")
    loaded = RouteClassifier.load(path)
    assert loaded.artifact_id() == small_classifier.artifact_id()
    query = "write a haiku about swap memory"
    assert loaded.predict(query) == small_classifier.predict(query)


def test_load_names_missing_and_corrupt_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"nope\.joblib"):
        RouteClassifier.load(tmp_path / "nope.joblib")
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ArtifactError, match="train-router"):
        RouteClassifier.load(bad)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"query": "hi", "route": "chat"}', "route"),
        ('{"query": "df -h", "route": "tool"}', "tool_hint"),
        ('{"query": "hi", "route": "router", "tool_hint": "cpu"}', "only allowed"),
        ('["hi", "router"]', "JSON object"),
    ],
)
def test_load_rows_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    good = json.dumps({"query": "hello", "route": "router"})
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(RowLoadError) as info:
        load_rows(path)
    assert f"{path}:3" in str(info.value)
    assert message in str(info.value)


def test_evaluate_reports_accuracy_confusion_and_bypass() -> None:
    rows = [
        RouteRow(query="df -h", route="tool", tool_hint="disk"),
        RouteRow(query="hi", route="router"),
        RouteRow(query="2+2 proof", route="reasoning"),
        RouteRow(query="fix my code", route="coding"),
    ]
    answers = {"df -h": ("tool", "memory"), "hi": ("router", None)}

    def predict(query: str) -> tuple[str, str | None]:
        return answers.get(query, ("tool", "cpu"))

    report = evaluate(predict, rows)
    assert report.accuracy == 0.5
    assert report.bypass_rate == 0.75
    assert report.confusion["reasoning"]["tool"] == 1
    assert report.per_route["tool"].precision == pytest.approx(1 / 3)
    assert report.per_route["tool"].recall == 1.0
    assert report.tool_hint_accuracy == 0.0
    assert report.latency_ms_p99 >= report.latency_ms_p50 >= 0.0
