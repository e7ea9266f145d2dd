"""Reading JSON Lines input files, with every problem named as `file:line` (bottom layer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_objects(
    path: str | Path, error: type[Exception], expected: str
) -> list[tuple[str, dict[str, Any]]]:
    """`(file:line, object)` for each non-blank line. An unreadable file, invalid JSON or a
    line that is not an object raises `error` naming the place and what was `expected`."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise error(f"{source}: cannot read the file ({exc.strerror}); pass the path of a "
                    "JSON Lines file") from exc
    out: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
        if not isinstance(data, dict):
            raise error(f"{where}: expected a JSON object with {expected}, "
                        f"got {type(data).__name__}")
        out.append((where, data))
    return out
