"""Plain data across the sandbox wall: values as tagged JSON, never code or objects.

The trusted checker and the sandboxed program talk only through this codec: the arguments of each
call go one way, the return value (or the name of the exception raised) the other. A decoded
value is built from builtins only (None, bool, int, float, complex, str, bytes, bytearray, list,
tuple, set, frozenset, dict), so a program can hand back values, never an object whose `__eq__`
says yes to everything or a callable the checker would run.

Lists are JSON arrays; every other container is a one-key object naming its type (dict keys may
be any value, so a dict is a list of pairs). Hand-written rather than pickle (which runs code on
load) or `repr` + `ast.literal_eval` (no nan, inf, frozenset or very large ints, and a deeply
nested literal can crash the parser of older Pythons).

Runs inside the sandbox too, on any Python >= 3.8: standard library only, no newer syntax. The
runner gets this file's text and executes it, since the sandbox cannot import the package.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100
# ints longer than this many bits travel as hex: json refuses ints over 4300 decimal digits.
_BIG_INT_BITS = 4000 * 3


class Unencodable(ValueError):
    """The value is not plain data (or is nested too deep) and cannot cross the wall."""


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-ready tree for `value`; raises Unencodable for anything but plain data."""
    if depth > MAX_DEPTH:
        raise Unencodable(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        number = int(value)
        return {"i": hex(number)} if number.bit_length() > _BIG_INT_BITS else number
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, complex):
        return {"c": [value.real, value.imag]}
    if isinstance(value, bytearray):
        return {"ba": bytes(value).hex()}
    if isinstance(value, bytes):
        return {"b": bytes(value).hex()}
    inner = depth + 1
    if isinstance(value, list):
        return [encode(item, inner) for item in value]
    if isinstance(value, tuple):
        return {"t": [encode(item, inner) for item in value]}
    if isinstance(value, frozenset):
        return {"fs": [encode(item, inner) for item in value]}
    if isinstance(value, set):
        return {"s": [encode(item, inner) for item in value]}
    if isinstance(value, dict):
        return {"d": [[encode(k, inner), encode(v, inner)] for k, v in value.items()]}
    raise Unencodable(f"a value of type {type(value).__name__} is not plain data")


def decode(tree: Any) -> Any:
    """The value a tree from `encode` stands for; ValueError or TypeError on a malformed tree."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(item) for item in tree]
    if not isinstance(tree, dict) or len(tree) != 1:
        raise ValueError("malformed value: expected a list, a scalar or a one-key object")
    ((tag, body),) = tree.items()
    if tag == "i" and isinstance(body, str):
        return int(body, 16)
    if tag == "c" and isinstance(body, list) and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag in ("b", "ba") and isinstance(body, str):
        raw = bytes.fromhex(body)
        return raw if tag == "b" else bytearray(raw)
    if not isinstance(body, list):
        raise ValueError(f"malformed value: tag {tag!r} needs a list")
    if tag == "t":
        return tuple(decode(item) for item in body)
    if tag == "s":
        return {decode(item) for item in body}
    if tag == "fs":
        return frozenset(decode(item) for item in body)
    if tag == "d" and all(isinstance(pair, list) and len(pair) == 2 for pair in body):
        return {decode(k): decode(v) for k, v in body}
    raise ValueError(f"malformed value: unknown tag {tag!r}")


def message(record: dict[str, Any]) -> bytes:
    """One protocol message: a JSON object on one line (ASCII, so no raw newline inside)."""
    return (json.dumps(record, ensure_ascii=True, allow_nan=True) + "\n").encode("ascii")


def parse(line: bytes) -> dict[str, Any]:
    """A protocol message back; ValueError when the line is not one JSON object."""
    record = json.loads(line.decode("ascii"))
    if not isinstance(record, dict):
        raise ValueError("a message must be a JSON object")
    return record
