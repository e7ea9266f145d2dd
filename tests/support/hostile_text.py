"""Adversarial query bodies for the routing tests and benchmarks/adversarial_routing.py.

Each body is built to hit one way a regular expression can go quadratic on long input: a long
run that an unbounded quantifier eats and then gives back one character at a time (word runs,
whitespace, slashes, dots, digits), or the same keyword repeated so that a pattern starting at
each occurrence scans the rest of the text (`is `, `Error:`, `write `, `slow `, `if `). Plus the
real shapes of a pasted blob: minified code, hex, base64, one huge line, many tiny lines.
"""

from __future__ import annotations

import base64
import hashlib

MIB = 1024 * 1024


def _fill(unit: str, size: int, head: str = "", tail: str = "") -> str:
    room = max(0, size - len(head) - len(tail))
    return head + (unit * (room // len(unit) + 1))[:room] + tail


def _hex(size: int) -> str:
    out = []
    block = b"localroute"
    for _ in range(size // 64 + 1):  # 64 hex digits per digest
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:size]


def _minified(size: int) -> str:
    unit = ("function a(b,c){return b.map(function(d){return d*c+e[f](g)})}var h=a([1,2,3],4);"
            "if(h.length>2){for(var i=0;i<h.length;i++){j+=h[i]}}")
    return _fill(unit, size)


def bodies(size: int) -> dict[str, str]:
    """Name -> body of `size` characters (ASCII, so also `size` bytes)."""
    return {
        "word_run": _fill("a", size),
        "word_run_question": _fill("a", size, head="is ", tail=" running?"),
        "repeated_is": _fill("is ", size),
        "repeated_is_the": _fill("is the ", size),
        "repeated_error": _fill("Error:", size),
        "error_no_colon": _fill("xError", size),
        "repeated_write": _fill("write ", size),
        "repeated_slow": _fill("slow ", size),
        "repeated_if": _fill("if ", size),
        "repeated_in": _fill("in ", size),
        "repeated_top": _fill("top ", size),
        "spaces_inner": _fill(" ", size, head="a", tail="b"),
        "newlines": _fill("\n", size, head="a", tail="b"),
        "tiny_lines": _fill("a\n", size),
        "slashes": _fill("/", size),
        "dots": _fill(".", size),
        "dashes": _fill("-", size),
        "digits": _fill("9", size),
        "dollars": _fill("$", size),
        "backslashes": _fill("\\", size),
        "quotes": _fill("\"'`", size),
        "hex": _hex(size),
        "base64": base64.b64encode(_hex(size * 3 // 4).encode()).decode()[:size],
        "minified_js": _minified(size),
        "path_soup": _fill("~/a.b/", size),
        "capitals": _fill("Aa", size),
        "summary_ask": _fill("summarize this text ", size),
        "def_no_docstring": _fill("def f(", size),
    }
