"""Stage 1 on hostile input: milliseconds per adversarial body, and /health beside them.

1. Every stage-1 entry point (Stage1Router.decide, rules, classifier, argument filler, stage 2's
   assess, the validation checks over the question) on each adversarial body of
   tests/support/hostile_text.py, at the server's 4 MiB body cap: the slowest entry point per
   body, and the whole of `Stage1Router.decide`.
2. A real `localroute serve` (model server: a dead port, so requests end right after routing):
   all bodies posted at once just under the body cap, `/health` asked every 50 ms meanwhile;
   prints its p50 and max. Goal (issue 11): max under 1 s.

    python benchmarks/adversarial_routing.py [--size BYTES] [--no-serve]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.hostile_text import MIB
from tests.support.servers import free_port
from tests.test_routing_hostile_serve import HOSTILE, health_while, post_all
from tests.test_server import Serve, write_config

ROOT = Path(__file__).resolve().parents[1]


def entry_points(size: int) -> None:
    out = subprocess.run([sys.executable, "-m", "tests.support.routing_timing", "functions",
                          str(size)], cwd=ROOT, capture_output=True, text=True, check=True)
    per_body: dict[str, dict[str, float]] = {}
    for line in out.stdout.splitlines():
        if line.startswith("DONE "):
            _, name, body, ms = line.split(" ")
            per_body.setdefault(body, {})[name] = float(ms)
    print(f"stage 1 on {size / MIB:.1f} MiB bodies (ms)")
    print(f"{'body':22s} {'decide':>9s} {'slowest entry point':>40s}")
    for body, times in per_body.items():
        name, worst = max(times.items(), key=lambda kv: kv[1])
        print(f"{body:22s} {times['Stage1Router.decide']:9.2f} {name:>31s} {worst:8.2f}")
    decide = [t["Stage1Router.decide"] for t in per_body.values()]
    print(f"Stage1Router.decide: p50 {statistics.median(decide):.2f} ms, max {max(decide):.2f} ms")


def health_beside_serve() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "models.yaml", f"http://127.0.0.1:{free_port()}/v1")
        server = Serve(config)
        try:
            threads, statuses = post_all(server, HOSTILE)
            seconds = health_while(server, threads)
            for thread in threads:
                thread.join(120)
        finally:
            server.stop()
    ms = sorted(s * 1000 for s in seconds)
    print(f"/health beside {len(HOSTILE)} bodies of 4 MiB ({', '.join(HOSTILE)}): "
          f"{len(ms)} probes, p50 {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms "
          f"(goal: max < 1000 ms); answers {sorted(statuses)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4 * MIB)
    parser.add_argument("--no-serve", action="store_true", help="skip the serve measurement")
    args = parser.parse_args()
    entry_points(args.size)
    if not args.no_serve:
        health_beside_serve()


if __name__ == "__main__":
    main()
