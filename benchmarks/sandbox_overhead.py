"""What grading one code row costs: the 25 problems of the packaged code suite with correct
solutions (tests/support/code_solutions.py), graded one row at a time, R rounds. Prints the
time of the first capability probe (namespaces, interpreter, the scan for world-writable
directories), p50/p95 of the wall time per row, and the protections the rows had.

    python benchmarks/sandbox_overhead.py [R]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.evaluation.graders.code import grade_code_rows
from localroute.evaluation.sandbox.program import SandboxConfig, capabilities
from tests.support.code_solutions import RIGHT
from tests.support.paths import EVAL_DATA


def main(rounds: int) -> None:
    config = SandboxConfig()
    started = time.perf_counter()
    caps = capabilities(config)
    probe_ms = (time.perf_counter() - started) * 1000
    rows = [json.loads(line) for line in (EVAL_DATA / "code_subset.jsonl").open()]
    rows = [{**row, "completion": RIGHT[row["id"]]} for row in rows]
    times, verdicts = [], set()
    for _ in range(rounds):
        for row in rows:
            started = time.perf_counter()
            result = grade_code_rows([row], config, concurrency=1)[0]
            times.append((time.perf_counter() - started) * 1000)
            verdicts.add(result["verdict"])
    ms = np.array(times)
    print(f"capability probe: {probe_ms:.0f} ms (once per process)")
    print(f"per row ({len(ms)} rows): p50 {np.percentile(ms, 50):.0f} ms, "
          f"p95 {np.percentile(ms, 95):.0f} ms; verdicts {sorted(verdicts)}")
    print(f"missing protections: {getattr(caps, 'missing', 'n/a')}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
