"""Training data loading, `train-router`, cross-validation and the routing evaluation report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError
from sklearn.model_selection import StratifiedKFold

from localroute.config.modes import RoutingSettings
from localroute.jsonl import read_objects
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier, clear_packaged_cache
from localroute.routing.types import ROUTES, RouteRow

TRAINING_DATA_DIR = Path(__file__).parent / "training_data"
# The labelled dev set ships with the package (sources and licences in dev_data/SOURCES.md), so
# `train-router` reproduces the packaged artifact from an installed wheel.
DEFAULT_DEV_PATH = Path(__file__).parent / "dev_data" / "routing_dev.jsonl"

PredictFn = Callable[[str], tuple[str, str | None]]


class RowLoadError(ValueError):
    """A training/evaluation file has a bad row; the message names file:line."""


class RouteMetrics(BaseModel):
    precision: float
    recall: float
    support: int


class EvalReport(BaseModel):
    accuracy: float
    n: int
    per_route: dict[str, RouteMetrics]
    confusion: dict[str, dict[str, int]]  # gold route -> predicted route -> count
    bypass_rate: float  # share of queries routed to tool (no model call at all)
    tool_hint_accuracy: float | None  # over gold-tool rows predicted as tool
    latency_ms_p50: float
    latency_ms_p99: float


class CVReport(BaseModel):
    k: int
    seed: int
    fold_accuracy: list[float]
    overall: EvalReport


class TrainReport(BaseModel):
    out_path: str
    artifact_id: str
    n_dev: int
    n_handwritten: int
    per_route_counts: dict[str, int]
    train_seconds: float


def load_rows(path: Path | str, *, require_source: bool = False) -> list[RouteRow]:
    """Read a JSONL file of labelled rows; a bad row raises RowLoadError naming file:line.

    ``require_source``: every row must say where it comes from (the packaged training data).
    """
    rows: list[RouteRow] = []
    for where, data in read_objects(path, RowLoadError, "query and route"):
        source = data.get("source")
        if require_source and (not isinstance(source, str) or not source.strip()):
            raise RowLoadError(
                f"{where}: row has no 'source'; say where it comes from ('handwritten:<kind>' "
                "or the public data set, see dev_data/SOURCES.md)"
            )
        try:
            rows.append(RouteRow.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}"
                for err in exc.errors()
            )
            raise RowLoadError(
                f"{where}: {problems} (route must be one of {', '.join(ROUTES)})"
            ) from exc
    return rows


def packaged_rows() -> list[RouteRow]:
    """The handwritten training rows shipped in `localroute/routing/training_data/`.

    One file per route (`tool.jsonl`, `router.jsonl`, ...) plus `hard_negatives.jsonl`; every
    row carries its `source`. File order does not matter: training sorts the rows.
    """
    rows: list[RouteRow] = []
    for path in sorted(TRAINING_DATA_DIR.glob("*.jsonl")):
        rows.extend(load_rows(path, require_source=True))
    return rows


def resolve_dev_path(path: Path | str | None = None) -> Path:
    """An explicit dev path, or the packaged `dev_data/routing_dev.jsonl`."""
    candidate = Path(path) if path is not None else DEFAULT_DEV_PATH
    if not candidate.is_file():
        raise RowLoadError(
            f"{candidate}: routing dev set not found; pass the path of a JSONL file of "
            '{"query", "route"} rows with --dev FILE'
        )
    return candidate


def train_router(
    dev_path: Path | str | None = None, out_path: Path | str | None = None, seed: int = 0
) -> TrainReport:
    """Train on the dev set + packaged handwritten rows and write the artifact."""
    from localroute.routing.classifier import PACKAGED_ARTIFACT

    dev = load_rows(resolve_dev_path(dev_path))
    extra = packaged_rows()
    started = time.perf_counter()
    classifier = RouteClassifier.train(dev + extra, seed=seed)
    elapsed = time.perf_counter() - started
    target = classifier.save(out_path if out_path is not None else PACKAGED_ARTIFACT)
    clear_packaged_cache()
    counts: dict[str, int] = {route: sum(r.route == route for r in dev + extra) for route in ROUTES}
    return TrainReport(
        out_path=str(target),
        artifact_id=classifier.artifact_id(),
        n_dev=len(dev),
        n_handwritten=len(extra),
        per_route_counts=counts,
        train_seconds=round(elapsed, 3),
    )


def rules_then(classifier: RouteClassifier) -> PredictFn:
    """Stage 1 as shipped, without the router model: the cascade's own fast path (rules,
    then the classifier), so what is scored here is what answers requests."""
    router = Stage1Router(classifier, RoutingSettings())  # the fast path reads no setting

    def predict(query: str) -> tuple[str, str | None]:
        decision = router.decide_fast(query)
        return decision.route, decision.tool_call.name if decision.tool_call else None

    return predict


def _timed(
    predict_fn: PredictFn, rows: Sequence[RouteRow]
) -> tuple[list[tuple[str, str | None]], list[float]]:
    predicted: list[tuple[str, str | None]] = []
    latencies: list[float] = []
    for row in rows:
        started = time.perf_counter()
        predicted.append(predict_fn(row.query))
        latencies.append((time.perf_counter() - started) * 1000.0)
    return predicted, latencies


def evaluate(predict_fn: PredictFn, rows: Sequence[RouteRow]) -> EvalReport:
    """Score `predict_fn` (query -> (route, tool_hint)) on labelled rows, timing each call."""
    if not rows:
        raise ValueError("evaluate() needs at least one labelled row")
    predicted, latencies = _timed(predict_fn, rows)
    return _report([r.route for r in rows], [r.tool_hint for r in rows], predicted, latencies)


def _report(
    gold: list[str],
    gold_hints: list[str | None],
    predicted: list[tuple[str, str | None]],
    latencies: list[float],
) -> EvalReport:
    pred_routes = [p[0] for p in predicted]
    confusion: dict[str, dict[str, int]] = {g: {p: 0 for p in ROUTES} for g in ROUTES}
    for g, p in zip(gold, pred_routes, strict=True):
        confusion[g][p] += 1
    per_route: dict[str, RouteMetrics] = {}
    for route in ROUTES:
        tp = confusion[route][route]
        predicted_n = sum(confusion[g][route] for g in ROUTES)
        support = sum(confusion[route].values())
        per_route[route] = RouteMetrics(
            precision=tp / predicted_n if predicted_n else 0.0,
            recall=tp / support if support else 0.0,
            support=support,
        )
    hint_pairs = [
        (gh, p[1])
        for g, gh, p in zip(gold, gold_hints, predicted, strict=True)
        if g == "tool" and p[0] == "tool"
    ]
    correct = sum(g == p for g, p in zip(gold, pred_routes, strict=True))
    lat = np.asarray(latencies, dtype=np.float64)
    return EvalReport(
        accuracy=correct / len(gold),
        n=len(gold),
        per_route=per_route,
        confusion=confusion,
        bypass_rate=sum(p == "tool" for p in pred_routes) / len(gold),
        tool_hint_accuracy=(
            sum(g == p for g, p in hint_pairs) / len(hint_pairs) if hint_pairs else None
        ),
        latency_ms_p50=float(np.percentile(lat, 50)),
        latency_ms_p99=float(np.percentile(lat, 99)),
    )


def cross_validate(
    dev_rows: Sequence[RouteRow],
    k: int = 5,
    seed: int = 0,
    extra_rows: Sequence[RouteRow] | None = None,
    predictor: Callable[[RouteClassifier], PredictFn] | None = None,
) -> CVReport:
    """Stratified k-fold over the dev rows; each fold trains on the other folds + the
    packaged handwritten rows (or `extra_rows`) and scores rules + classifier on its fold."""
    if k < 2:
        raise ValueError(f"k must be at least 2 for cross-validation, got {k}")
    extra = list(extra_rows) if extra_rows is not None else packaged_rows()
    labels = [r.route for r in dev_rows]
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    gold: list[str] = []
    gold_hints: list[str | None] = []
    predicted: list[tuple[str, str | None]] = []
    latencies: list[float] = []
    fold_accuracy: list[float] = []
    for train_idx, test_idx in folds.split(np.zeros(len(labels)), labels):
        classifier = RouteClassifier.train([dev_rows[i] for i in train_idx] + extra, seed=seed)
        held_out = [dev_rows[i] for i in test_idx]
        fold_pred, fold_lat = _timed((predictor or rules_then)(classifier), held_out)
        fold_accuracy.append(
            sum(p[0] == r.route for p, r in zip(fold_pred, held_out, strict=True)) / len(held_out)
        )
        predicted.extend(fold_pred)
        latencies.extend(fold_lat)
        gold.extend(r.route for r in held_out)
        gold_hints.extend(r.tool_hint for r in held_out)
    return CVReport(
        k=k,
        seed=seed,
        fold_accuracy=fold_accuracy,
        overall=_report(gold, gold_hints, predicted, latencies),
    )
