"""The packaged routing training data and the bit-for-bit reproduction of the shipped artifact.

Layout: one file per route plus ``hard_negatives.jsonl``, every row with its ``source``.
Reproduction: ``localroute train-router`` run in a fresh process writes exactly the bytes of
``routing/artifacts/route_classifier.joblib`` (a fresh process, because the non-determinism
this guards against was a memory address pickled by scikit-learn).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from localroute.routing.classifier import PACKAGED_ARTIFACT, RouteClassifier
from localroute.routing.training import (
    TRAINING_DATA_DIR,
    RowLoadError,
    load_rows,
    packaged_rows,
)
from localroute.routing.types import ROUTES
from tests.support.paths import REPO

HARD_NEGATIVE = "handwritten:hard-negative"


def test_one_file_per_route_plus_hard_negatives() -> None:
    names = {path.name for path in TRAINING_DATA_DIR.glob("*.jsonl")}
    assert names == {f"{route}.jsonl" for route in ROUTES} | {"hard_negatives.jsonl"}
    for route in ROUTES:
        rows = load_rows(TRAINING_DATA_DIR / f"{route}.jsonl", require_source=True)
        assert rows, route
        assert {r.route for r in rows} == {route}
        assert not [r.query for r in rows if r.source.startswith(HARD_NEGATIVE)]
    negatives = load_rows(TRAINING_DATA_DIR / "hard_negatives.jsonl", require_source=True)
    assert negatives and all(r.source.startswith(HARD_NEGATIVE) for r in negatives)
    # A hard negative looks like a tool request but is none.
    assert "tool" not in {r.route for r in negatives}


def test_every_packaged_row_names_its_source() -> None:
    rows = packaged_rows()
    assert rows and all(r.source.strip() and r.source != "unknown" for r in rows)


def test_a_training_row_without_source_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"query": "hi", "route": "router", "source": "handwritten:greeting"})
        + "\n"
        + json.dumps({"query": "hello", "route": "router"})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(RowLoadError, match="no 'source'") as info:
        load_rows(path, require_source=True)
    assert f"{path}:2:" in str(info.value)
    assert len(load_rows(path)) == 2  # a dev or evaluation file may leave it out


def test_row_order_does_not_change_the_saved_bytes(tmp_path: Path) -> None:
    rows = packaged_rows()
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    first = RouteClassifier.train(rows, seed=0).save(tmp_path / "a.joblib")
    second = RouteClassifier.train(shuffled, seed=0).save(tmp_path / "b.joblib")
    assert first.read_bytes() == second.read_bytes()


def test_train_router_reproduces_the_shipped_artifact_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "route_classifier.joblib"
    done = subprocess.run(
        [sys.executable, "-m", "localroute", "train-router", "--out", str(out), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["artifact_id"] == RouteClassifier.load().artifact_id()
    assert out.read_bytes() == PACKAGED_ARTIFACT.read_bytes(), (
        "train-router no longer reproduces the shipped artifact: rebuild it with "
        "`localroute train-router` and commit it with the change that altered it"
    )
