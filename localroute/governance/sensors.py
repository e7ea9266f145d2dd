"""Sensors: cheap readings of the machine, the backends and the request stream.

A source is any callable returning {sensor name: value or None}, sync or async; the monitor
samples every source at a fixed interval and hands one `Reading` to its subscriber. Names are
those of `config.modes.SENSOR_NAMES`, which rules refer to.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import inspect
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import structlog

from localroute.telemetry.events import EventName

Values = Mapping[str, float | None]
Source = Callable[[], Values | Awaitable[Values]]
Clock = Callable[[], float]
log = structlog.get_logger("localroute.governance")


@dataclass(frozen=True)
class Reading:
    at: float  # the monitor clock's time of the sample
    values: dict[str, float | None]


def _darwin_pressure_reader() -> Callable[[], int | None] | None:
    """`kern.memorystatus_vm_pressure_level` (1 normal, 2 warning, 4 critical) through
    sysctlbyname: psutil does not expose it and a `sysctl` subprocess per sample would cost
    more than every other sensor together."""
    if sys.platform != "darwin":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def read() -> int | None:
        value = ctypes.c_int(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        rc = libc.sysctlbyname(b"kern.memorystatus_vm_pressure_level", ctypes.byref(value),
                               ctypes.byref(size), None, ctypes.c_size_t(0))
        return int(value.value) if rc == 0 else None

    return read


def _linux_psi() -> float | None:
    """Linux pressure stall information: % of the last 10 s some task waited on memory."""
    try:
        line = Path("/proc/pressure/memory").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    for part in line.split():
        if part.startswith("avg10="):
            return float(part[len("avg10="):])
    return None


class SystemSensors:
    """CPU, memory, swap (and its growth), disk, and the OS's own memory-pressure verdict."""

    def __init__(self, disk_path: str = "/", clock: Clock = time.monotonic) -> None:
        self.disk_path = disk_path
        self._clock = clock
        self._pressure = _darwin_pressure_reader()
        self._last_swap: tuple[float, int] | None = None
        psutil.cpu_percent(interval=None)  # primes the counter: the next call measures since now

    def __call__(self) -> dict[str, float | None]:
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        now = self._clock()
        growth = None
        if self._last_swap is not None and now > self._last_swap[0]:
            growth = (swap.used - self._last_swap[1]) / 2**20 / (now - self._last_swap[0])
        self._last_swap = (now, swap.used)
        return {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "memory_percent": mem.percent,
            "swap_percent": swap.percent,
            "swap_growth_mb_s": growth,
            "disk_percent": psutil.disk_usage(self.disk_path).percent,
            "memory_pressure": float(p) if self._pressure and (p := self._pressure()) else None,
            "memory_psi_avg10": _linux_psi() if sys.platform.startswith("linux") else None,
        }


class GateSensor:
    """Queue depth and in-flight calls summed over a client's concurrency gates."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._snapshot = snapshot

    def __call__(self) -> dict[str, float | None]:
        gates = self._snapshot()
        return {
            "queue_depth": float(sum(g["waiting"] for g in gates.values())),
            "in_flight": float(sum(g["in_flight"] for g in gates.values())),
        }


class RequestWindow:
    """Error rate and p95 latency of the requests of the last `window_s` seconds.

    An in-process source for when telemetry is not wired in: callers `record()` each request."""

    def __init__(self, window_s: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._items: deque[tuple[float, float, bool]] = deque()

    def record(self, latency_s: float, ok: bool) -> None:
        self._items.append((self._clock(), latency_s, ok))

    def __call__(self) -> dict[str, float | None]:
        cutoff = self._clock() - self.window_s
        while self._items and self._items[0][0] < cutoff:
            self._items.popleft()
        if not self._items:
            return {"error_rate": None, "latency_p95_s": None}
        latencies = sorted(i[1] for i in self._items)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        errors = sum(1 for i in self._items if not i[2])
        return {"error_rate": errors / len(self._items), "latency_p95_s": p95}


class BackendHealthSensor:
    """How many distinct backends do not answer, probed at most every `every_s` seconds
    (a probe is a network call: far costlier than the other sensors)."""

    def __init__(self, probe: Callable[[], Awaitable[int]], every_s: float,
                 clock: Clock = time.monotonic) -> None:
        self._probe = probe
        self.every_s = every_s
        self._clock = clock
        self._last: tuple[float, float] | None = None

    async def __call__(self) -> dict[str, float | None]:
        now = self._clock()
        if self._last is None or now - self._last[0] >= self.every_s:
            self._last = (now, float(await self._probe()))
        return {"backends_down": self._last[1]}


async def sample(sources: Iterable[Source]) -> dict[str, float | None]:
    """One reading from every source; a failing source is logged and contributes nothing."""
    values: dict[str, float | None] = {}
    for source in sources:
        try:
            result = source()
            if inspect.isawaitable(result):
                result = await result
            values.update(result)
        except Exception as exc:  # a broken sensor must not stop the others
            log.warning(EventName.SENSOR_ERROR.value, source=repr(source), error=str(exc))
    return values


@dataclass
class SensorMonitor:
    """Samples its sources every `interval_s` in a background task."""

    sources: list[Source]
    interval_s: float
    on_reading: Callable[[Reading], Any] | None = None
    clock: Clock = time.monotonic
    last: Reading | None = None
    samples: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def sample_once(self) -> Reading:
        reading = Reading(at=self.clock(), values=await sample(self.sources))
        self.last = reading
        self.samples += 1
        if self.on_reading is not None:
            result = self.on_reading(reading)
            if inspect.isawaitable(result):
                await result
        return reading

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.sample_once()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sensors")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
