"""Stage-1 routing without the router model: latency and accuracy figures (printed, not asserted).

    python benchmarks/routing_overhead_classifier_only.py [--dev PATH] [--cv] [--lso]
        [--fresh FILE ...] [--repeat N]

Latency is per query for rules + classifier with the packaged artifact already loaded.
`--lso` adds the leave-source-out check: train without every dev row of one source family
(plus the packaged handwritten rows) and score that family, an honest proxy for unseen data.
The handwritten family is split by kind (hard negatives, ambiguous items, and the rest by route)
so that one large family does not hide a weak kind. `--fresh` scores the packaged artifact on
labelled files that were never used for training (queries written later, kept outside the repo).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from localroute.routing.classifier import RouteClassifier
from localroute.routing.training import (
    cross_validate,
    evaluate,
    load_rows,
    packaged_rows,
    resolve_dev_path,
    rules_then,
)
from localroute.routing.types import RouteRow


def source_family(row: RouteRow) -> str:
    family = row.source.split(":")[0].split("(")[0]
    if family != "handwritten":
        return family
    for kind in ("hard-negative", "ambiguous"):
        if row.source.startswith(f"handwritten:{kind}"):
            return f"handwritten:{kind}"
    return f"handwritten:{row.route}"


def leave_source_out(dev: list[RouteRow]) -> dict[str, tuple[int, float]]:
    families: dict[str, list[RouteRow]] = defaultdict(list)
    for row in dev:
        families[source_family(row)].append(row)
    extra = packaged_rows()
    result: dict[str, tuple[int, float]] = {}
    for family, held_out in sorted(families.items()):
        train = [r for r in dev if source_family(r) != family] + extra
        report = evaluate(rules_then(RouteClassifier.train(train)), held_out)
        result[family] = (len(held_out), report.accuracy)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", default=None,
                        help="routing dev JSONL (default: the packaged dev set)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the dev queries")
    parser.add_argument("--lso", action="store_true", help="also run leave-source-out")
    parser.add_argument("--cv", action="store_true", help="also run 5-fold CV")
    parser.add_argument("--fresh", nargs="*", default=[], help="unseen labelled JSONL files")
    args = parser.parse_args()

    dev = load_rows(resolve_dev_path(args.dev))
    classifier = RouteClassifier.load()
    predict = rules_then(classifier)
    predict(dev[0].query)  # warm-up: first call pays for lazy imports and caches
    report = evaluate(predict, dev * args.repeat)
    figures: dict[str, object] = {
        "artifact_id": classifier.artifact_id(),
        "queries_timed": report.n,
        "latency_ms_p50": round(report.latency_ms_p50, 3),
        "latency_ms_p99": round(report.latency_ms_p99, 3),
        "in_sample_accuracy (optimistic)": round(report.accuracy, 4),
        "bypass_rate": round(report.bypass_rate, 3),
    }
    if args.cv:
        cv = cross_validate(dev, k=5, seed=0)
        figures["cv5_accuracy"] = round(cv.overall.accuracy, 4)
        figures["cv5_fold_accuracy"] = [round(a, 4) for a in cv.fold_accuracy]
        figures["cv5_tool_hint_accuracy"] = cv.overall.tool_hint_accuracy
    if args.lso:
        lso = leave_source_out(dev)
        total = sum(n for n, _ in lso.values())
        figures["lso_accuracy"] = round(sum(n * a for n, a in lso.values()) / total, 4)
        figures["lso_by_family"] = {f: [n, round(a, 3)] for f, (n, a) in lso.items()}
    for path in args.fresh:
        fresh = evaluate(predict, load_rows(path))
        figures[f"fresh:{path}"] = {
            "n": fresh.n,
            "accuracy": round(fresh.accuracy, 4),
            "latency_ms_p50": round(fresh.latency_ms_p50, 3),
            "latency_ms_p99": round(fresh.latency_ms_p99, 3),
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
