"""The evaluations panel: the benchmark runs and A/B tests in the runs directory, with their
headline figures and their `report.html`.

Read from the files the runs leave (`manifest.json`, `samples.jsonl`, `ab.jsonl`) as plain JSON,
not through the evaluation package: a run directory is untrusted input here, and the page must
list a run that a newer or older localroute wrote rather than fail on its schema. A sample's
key may be logged twice (a retried error); the last row wins, as in `bench report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_RUNS = 200
MAX_SAMPLES_BYTES = 64 * 1024 * 1024  # a larger log is listed without its accuracy


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _bench_figures(samples: Path) -> dict[str, Any]:
    try:
        if samples.stat().st_size > MAX_SAMPLES_BYTES:
            return {"note": f"samples.jsonl is over {MAX_SAMPLES_BYTES >> 20} MiB; see the report"}
        lines = samples.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    latest: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn last line of an interrupted run
        if isinstance(row, dict) and "key" in row:
            latest[str(row["key"])] = row
    rows = list(latest.values())
    correct = sum(1 for r in rows if isinstance(r.get("grade"), dict) and r["grade"].get("correct"))
    errors = sum(1 for r in rows if r.get("error"))
    return {"samples": len(rows), "correct": correct, "errors": errors,
            "accuracy": round(correct / len(rows), 4) if rows else None}


def _ab_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    stats = manifest.get("stats") if isinstance(manifest.get("stats"), dict) else {}
    assert isinstance(stats, dict)
    win_rate = stats.get("win_rate")
    return {"n": stats.get("n"), "wins": stats.get("wins"), "ties": stats.get("ties"),
            "losses": stats.get("losses"), "score": stats.get("score"),
            "sign_test_p": stats.get("sign_test_p"),
            "win_rate": win_rate.get("estimate") if isinstance(win_rate, dict) else None}


def _side(manifest: dict[str, Any], name: str) -> str | None:
    side = manifest.get(name)
    if isinstance(side, dict):
        return str(side.get("model") or side.get("role") or side.get("name") or "")
    return None


def list_runs(runs_dir: Path) -> dict[str, Any]:
    """Every run under `runs_dir` (one or two levels down), newest first."""
    if not runs_dir.is_dir():
        return {"runs_dir": str(runs_dir), "exists": False, "runs": []}
    manifests = [*runs_dir.glob("*/manifest.json"), *runs_dir.glob("*/*/manifest.json")]
    manifests.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    runs = []
    for path in manifests[:MAX_RUNS]:
        manifest = _json(path)
        if manifest is None:
            continue
        root = path.parent
        rel = root.relative_to(runs_dir).as_posix()
        ab = (root / "ab.jsonl").exists()
        entry: dict[str, Any] = {
            "path": rel, "kind": "ab" if ab else "bench",
            "created_at": manifest.get("created_at"), "suite": manifest.get("suite"),
            "role": manifest.get("role"), "model": manifest.get("model"),
            "report": f"/ui/runs/{rel}/report.html" if (root / "report.html").exists() else None,
        }
        if ab:
            entry["a"], entry["b"] = _side(manifest, "a"), _side(manifest, "b")
            entry["figures"] = _ab_figures(manifest)
        else:
            entry["figures"] = _bench_figures(root / "samples.jsonl")
        runs.append(entry)
    return {"runs_dir": str(runs_dir), "exists": True, "runs": runs}


def report_path(runs_dir: Path, run: str) -> Path | None:
    """The `report.html` of the run at `run` (as listed), or None: the path may not leave the
    runs directory (no `..`, no symlink out of it)."""
    base = runs_dir.resolve()
    candidate = (base / run / "report.html").resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate
