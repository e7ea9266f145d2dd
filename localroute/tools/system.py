"""Machine health tools over psutil: cpu, memory, battery, uptime (disk: tools/disk.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import psutil

from localroute.tools.base import NoArgs, Tool, ToolContext, ToolResult
from localroute.tools.formatting import human_bytes, human_duration, percent

# Sampling window for CPU percentages: long enough to be meaningful, short enough for a reply.
CPU_SAMPLE_S = 0.25


class CpuTool(Tool[NoArgs]):
    name = "cpu"
    description = "Current CPU usage: overall and per-core percent, core counts and load averages."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        data = await asyncio.to_thread(_cpu_snapshot)
        lines = [
            f"CPU: {percent(data['percent'])} busy across {data['logical_cores']} logical cores"
            + (f" ({data['physical_cores']} physical)." if data["physical_cores"] else ".")
        ]
        load = data["load_average"]
        if load:
            share = load[0] / max(data["logical_cores"], 1) * 100
            lines.append(
                "Load average (1, 5, 15 min): "
                + ", ".join(f"{v:.2f}" for v in load)
                + f" ({percent(share)} of capacity over the last minute)."
            )
        per = data["per_core_percent"]
        if len(per) > 1:
            busiest = max(range(len(per)), key=per.__getitem__)
            lines.append(f"Busiest core: #{busiest} at {percent(per[busiest])}.")
        if data["frequency_mhz"]:
            lines.append(f"Frequency: {data['frequency_mhz']:.0f} MHz.")
        return self.result(data, "\n".join(lines))


def _cpu_snapshot() -> dict[str, Any]:
    per_core = psutil.cpu_percent(interval=CPU_SAMPLE_S, percpu=True)
    try:
        load: list[float] = list(psutil.getloadavg())
    except (AttributeError, OSError):
        load = []
    try:
        freq = psutil.cpu_freq()
        mhz = float(freq.current) if freq and freq.current else None
    except (AttributeError, OSError, NotImplementedError):
        # Some platforms (older psutil on Apple silicon, containers) cannot read the clock.
        mhz = None
    return {
        "percent": sum(per_core) / len(per_core) if per_core else 0.0,
        "per_core_percent": per_core,
        "logical_cores": psutil.cpu_count() or len(per_core),
        "physical_cores": psutil.cpu_count(logical=False),
        "load_average": load,
        "frequency_mhz": mhz,
    }


class MemoryTool(Tool[NoArgs]):
    name = "memory"
    description = "RAM and swap: total, used, available and percent."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        vm, swap = await asyncio.to_thread(lambda: (psutil.virtual_memory(), psutil.swap_memory()))
        data = {"virtual": vm._asdict(), "swap": swap._asdict()}
        lines = [
            f"Memory: {human_bytes(vm.used)} used of {human_bytes(vm.total)} "
            f"({percent(vm.percent)}), {human_bytes(vm.available)} available."
        ]
        if swap.total:
            lines.append(
                f"Swap: {human_bytes(swap.used)} used of {human_bytes(swap.total)} "
                f"({percent(swap.percent)})."
            )
        else:
            lines.append("Swap: none configured.")
        return self.result(data, "\n".join(lines))


class BatteryTool(Tool[NoArgs]):
    name = "battery"
    description = "Battery charge, whether on AC power, and time remaining."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        sensor = getattr(psutil, "sensors_battery", None)
        battery = await asyncio.to_thread(sensor) if sensor is not None else None
        if battery is None:
            return self.result(
                {"present": False},
                "No battery found on this machine (a desktop or server, or the OS does not "
                "report one).",
            )
        secs = battery.secsleft
        secs_left = secs if isinstance(secs, int) and secs >= 0 else None
        data = {
            "present": True,
            "percent": battery.percent,
            "plugged_in": battery.power_plugged,
            "seconds_left": secs_left,
        }
        if battery.power_plugged:
            state = "on AC power" + (" (fully charged)" if battery.percent >= 100 else "")
        elif battery.power_plugged is None:
            state = "power source unknown"
        else:
            state = "on battery"
            if secs_left is not None:
                state += f", about {human_duration(secs_left)} left"
        text = (
            f"Battery: {battery.percent:.0f}%, {state}.\n"
            "(Battery health and cycle count are not reported by this sensor.)"
        )
        return self.result(data, text)


class UptimeTool(Tool[NoArgs]):
    name = "uptime"
    description = "How long the machine has been running since its last boot."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        boot = await asyncio.to_thread(psutil.boot_time)
        seconds = max(time.time() - boot, 0.0)
        booted = datetime.fromtimestamp(boot).astimezone()
        data = {
            "boot_time": booted.isoformat(timespec="seconds"),
            "uptime_seconds": round(seconds, 1),
            "uptime_hours": round(seconds / 3600, 2),
            "uptime_days": round(seconds / 86400, 3),
        }
        text = (
            f"Up {human_duration(seconds)} ({seconds / 3600:.1f} hours), "
            f"since {booted:%a %Y-%m-%d %H:%M} local time."
        )
        return self.result(data, text)
