"""Sensors: real readings from psutil, the gate and request sources, and the monitor loop."""

from __future__ import annotations

import asyncio
import time

from localroute.governance.sensors import (
    BackendHealthSensor,
    GateSensor,
    Reading,
    RequestWindow,
    SensorMonitor,
    SystemSensors,
    sample,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_system_sensors_read_this_machine() -> None:
    clock = Clock()
    sensors = SystemSensors(clock=clock)
    first = sensors()
    clock.t = 1.0
    second = sensors()
    for key in ("cpu_percent", "memory_percent", "swap_percent", "disk_percent"):
        value = second[key]
        assert value is not None and 0.0 <= value <= 100.0, key
    assert first["swap_growth_mb_s"] is None  # growth needs two samples
    assert second["swap_growth_mb_s"] is not None
    assert second["memory_pressure"] is None  # sysctl key exists only on macOS


def test_request_window_rates_and_expiry() -> None:
    clock = Clock()
    window = RequestWindow(window_s=60, clock=clock)
    assert window() == {"error_rate": None, "latency_p95_s": None}
    for i in range(20):
        window.record(latency_s=float(i), ok=i % 4 != 0)  # 5 of 20 failed
    values = window()
    assert values["error_rate"] == 0.25 and values["latency_p95_s"] == 19.0
    clock.t = 61.0
    assert window()["error_rate"] is None  # everything aged out


def test_gate_sensor_sums_waiting_and_in_flight() -> None:
    snap = {"router": {"capacity": 2, "in_flight": 2, "waiting": 3},
            "validation@router": {"capacity": 1, "in_flight": 1, "waiting": 1}}
    assert GateSensor(lambda: snap)() == {"queue_depth": 4.0, "in_flight": 3.0}


async def test_backend_probe_runs_at_its_own_slower_interval() -> None:
    clock = Clock()
    calls = 0

    async def probe() -> int:
        nonlocal calls
        calls += 1
        return 1

    sensor = BackendHealthSensor(probe, every_s=15, clock=clock)
    for t in (0, 2, 4, 14.9, 15, 16):
        clock.t = t
        assert await sensor() == {"backends_down": 1.0}
    assert calls == 2


async def test_a_failing_source_does_not_stop_the_others() -> None:
    def broken() -> dict[str, float | None]:
        raise RuntimeError("sensor on fire")

    values = await sample([broken, lambda: {"queue_depth": 2.0}])
    assert values == {"queue_depth": 2.0}


async def test_monitor_samples_in_the_background_until_stopped() -> None:
    seen: list[Reading] = []
    monitor = SensorMonitor([lambda: {"queue_depth": 1.0}], interval_s=0.01,
                            on_reading=seen.append)
    monitor.start()
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await monitor.stop()
    count = len(seen)
    await asyncio.sleep(0.05)
    assert count >= 3 and len(seen) == count  # stopped: no more readings
    assert seen[0].values == {"queue_depth": 1.0} and monitor.last is seen[-1]
