"""CPU cost of the homeostasis sensor monitor: % of one core at the configured interval.

Runs the standard sources (psutil machine sensors, gate sensor, request window) on an idle
event loop for a while and divides the process CPU time spent by the wall time.
Usage: python benchmarks/sensors_overhead.py [seconds] [interval_s]
"""

from __future__ import annotations

import asyncio
import sys
import time

from localroute.config.modes import load_modes
from localroute.governance.sensors import GateSensor, RequestWindow, SensorMonitor, SystemSensors


async def main(duration: float, interval: float) -> None:
    snapshot = {"router": {"capacity": 4, "in_flight": 0, "waiting": 0}}
    monitor = SensorMonitor([SystemSensors(), GateSensor(lambda: snapshot), RequestWindow()],
                            interval_s=interval)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    monitor.start()
    await asyncio.sleep(duration)
    await monitor.stop()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    per_sample_ms = 1000 * cpu / max(monitor.samples, 1)
    print(f"{monitor.samples} samples every {interval:g} s over {wall:.1f} s: "
          f"{100 * cpu / wall:.3f}% of one core ({per_sample_ms:.2f} ms CPU per sample)")


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    every = float(sys.argv[2]) if len(sys.argv) > 2 else load_modes().homeostasis.interval_s
    asyncio.run(main(seconds, every))
