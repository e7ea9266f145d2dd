"""Humanised units for tool replies.

Hand-written because these three functions are all we need and the `humanize` package is not a
dependency; binary (IEC) units match what `df -h`, Activity Monitor and psutil users expect.
"""

from __future__ import annotations

from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; whole bytes stay exact."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """93784 -> '1 day, 2 hours, 3 minutes'; under a minute shows seconds."""
    total = int(seconds)
    if total < 60:
        return f"{total} second{'s' if total != 1 else ''}"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [
        f"{value} {unit}{'s' if value != 1 else ''}"
        for value, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
        if value
    ]
    return ", ".join(parts)


def percent(value: float) -> str:
    return f"{value:.1f}%"


def format_mapping(data: dict[str, Any], indent: int = 0) -> list[str]:
    """Nested dict -> indented 'key: value' lines, for summaries whose shape we do not own."""
    lines: list[str] = []
    pad = "  " * indent
    for key, value in data.items():
        label = str(key).replace("_", " ")
        if isinstance(value, dict):
            lines.append(f"{pad}{label}:")
            lines.extend(format_mapping(value, indent + 1))
        elif isinstance(value, list | tuple):
            if all(not isinstance(v, dict | list | tuple) for v in value):
                lines.append(f"{pad}{label}: {', '.join(_scalar(v) for v in value) or '(none)'}")
            else:
                lines.append(f"{pad}{label}:")
                for item in value:
                    if isinstance(item, dict):
                        lines.extend(format_mapping(item, indent + 1))
                        lines.append("")
                    else:
                        lines.append(f"{pad}  - {_scalar(item)}")
        else:
            lines.append(f"{pad}{label}: {_scalar(value)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)
