"""Stage 1's argument filler: a tool call's arguments from the person's words, with no model.

Hand-written patterns because the phrasings are short and few (see the tool rows of
routing_dev.jsonl) and this runs inside the 2 ms routing budget; anything not recognised is left
to the tool's defaults, and a required argument that is missing fails validation with a message
naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from localroute.tools.processes import MAX_PROCESSES

# Edge punctuation a person types around a path; a trailing '.' is handled separately so that
# 'notes.md.' loses the full stop but '.' and '..' survive.
_EDGE = "\"'`()[]{}<>,;:!?"
_PATHLIKE = re.compile(
    r"""^(?:~|\.{1,2}$|\.{1,2}/|/)      # home, '.', '..', './x', '../x', absolute
      |^[^\s:]*/[^\s]*$                  # has a slash (but not a URL scheme)
      |^\.?[\w-]*[\w]\.[A-Za-z][\w]{0,7}$  # name.ext
      |^\.[A-Za-z][\w.-]*$               # dot-file
    """,
    re.VERBOSE,
)
_QUOTED_PATHLIKE = re.compile(r"^[~/.]|/|\.[A-Za-z]\w{0,7}$")
_QUOTED = re.compile(r"`([^`]+)`|\"([^\"]+)\"|(?:^|\s)'([^']+)'(?=$|[\s?.,!])")

_HOME_FOLDERS = {
    name: f"~/{name.capitalize()}"
    for name in ("downloads", "documents", "desktop", "pictures", "music", "movies", "videos")
}
_LIST_STOP = {
    "the", "this", "that", "my", "a", "all", "files", "file", "contents", "content", "me",
    "what", "whats", "current", "working", "folder", "directory", "dir", "here", "everything",
}  # fmt: skip
_READ_STOP = _LIST_STOP | {"it", "out", "up", "in", "of", "file's", "see"}
_PROC_STOP = {
    "top", "heaviest", "biggest", "largest", "busiest", "hungriest", "most", "main", "current",
    "running", "active", "which", "what", "that", "this", "each", "every", "a", "any", "all",
    "the", "my", "other", "background", "slowest", "list", "show", "many", "few", "some", "no",
    "single", "user", "system", "zombie", "memory", "cpu", "ram", "heavy", "hungry",
}  # fmt: skip
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "fifteen": 15, "twenty": 20,
}  # fmt: skip
_IFACE = re.compile(
    r"\b((?:en|eth|wlan|wlp|enp|eno|ens|wl|utun|bridge|docker|br|veth|awdl|llw|tun|tap|ppp|lo)"
    r"\d[\w.-]*|lo)\b"
)


def _clean(token: str) -> str:
    token = token.strip(_EDGE)
    while token.endswith(".") and token not in {".", ".."} and not token.endswith("/.."):
        token = token[:-1]
    return token


def _tokens(query: str) -> list[str]:
    return [t for t in (_clean(raw) for raw in query.split()) if t]


def _path_token(query: str, *, rooted_only: bool = False) -> str | None:
    """The first path-like word: quoted, starting with ~ / . or containing a slash, or name.ext."""
    for match in _QUOTED.finditer(query):
        quoted = next(g for g in match.groups() if g is not None).strip()
        # Quoted text may hold spaces ('my notes.txt'), so only its shape is checked.
        if _QUOTED_PATHLIKE.search(quoted) and (not rooted_only or quoted[0] in "/~"):
            return quoted
    for token in _tokens(query):
        if "://" in token:
            continue
        if rooted_only:
            if token[0] in "/~":
                return token
        elif _PATHLIKE.match(token):
            return token
    return None


def _words(query: str) -> list[str]:
    return [w.lower().replace("'", "") for w in _tokens(query)]


def _list_directory(query: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    words = _words(query)
    flags = [t for t in query.split() if re.fullmatch(r"-[A-Za-z]+", t)]
    if any("a" in f.lower() for f in flags) or re.search(
        r"\b(hidden|dot-?files|including dot)\b", query, re.I
    ):
        args["show_hidden"] = True
    path = _path_token(query)
    if path is None:
        folder = re.search(
            r"\b(?:the\s+|my\s+)?([\w.-]+)\s+(?:folder|directory|dir)\b", query, re.I
        )
        if folder and folder.group(1).lower() not in _LIST_STOP | {"home"}:
            path = folder.group(1)
        elif re.search(r"\bhome\s+(?:folder|directory|dir)\b", query, re.I):
            path = "~"
    if path is None:
        inside = re.search(r"\b(?:in|of|inside|under)\s+(?:my\s+|the\s+)?([\w.-]+)", query, re.I)
        if inside and inside.group(1).lower() in _HOME_FOLDERS:
            path = inside.group(1)
    if path is None and words and words[0] in {"ls", "dir", "ll", "tree"}:
        rest = [w for w in _tokens(query)[1:] if not w.startswith("-")]
        if rest and rest[0].lower() not in _LIST_STOP:
            path = rest[0]
    if path is not None:
        args["path"] = _HOME_FOLDERS.get(path.lower(), path)
    return args


_READ_VERBS = r"cat|less|more|head|tail|bat|open|show|print|read|view|display|see"


def _read_file(query: str) -> dict[str, Any]:
    path = _path_token(query)
    if path is None:
        after = re.search(rf"\b(?:{_READ_VERBS})\b\s+(.*)$", query, re.I)
        if after:
            candidates = [t for t in _tokens(after.group(1)) if not t.startswith("-")]
            rest = [t for t in candidates if t.lower() not in _READ_STOP]
            if rest:
                path = rest[0]
    return {"path": path} if path is not None else {}


def _processes(query: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    lowered = query.lower()
    if re.search(r"\b(mem|memory|ram|rss|swap)\b|memory-", lowered):
        args["sort_by"] = "memory"
    count = re.search(r"\btop\s+(\d+|[a-z]+)\b|\b(\d+|[a-z]+)\s+(?:\w+\s+)?process", lowered)
    if count:
        word = count.group(1) or count.group(2)
        number = int(word) if word.isdigit() else _NUMBER_WORDS.get(word)
        if number:
            # Clamped rather than refused: "top 100" still deserves the largest list we give.
            args["limit"] = max(1, min(number, MAX_PROCESSES))
    name = _process_name(query)
    if name:
        args["name"] = name
    return args


def _process_name(query: str) -> str | None:
    patterns = (
        r"\bis\s+(?:the\s+)?(.+?)\s+(?:app\s+|process\s+)?(?:still\s+)?running\b",
        r"\bhow much (?:memory|ram|cpu)\s+(?:is|are|does|do)\s+(?:the\s+)?(.+?)\s+"
        r"(?:process(?:es)?\s+|app\s+)?(?:using|use|taking|eating|consuming)\b",
        r"\b(?:pgrep|pidof)\s+(?:-\w+\s+)*(\S+)",
        r"\bgrep\s+(?:-\w+\s+)*(\S+)",
        r"\b([\w.+-]+)\s+process(?:es)?\b",
    )
    for pattern in patterns:
        for match in re.finditer(pattern, query, re.I):
            name = _clean(match.group(1))
            words = name.lower().split()
            if (
                name
                and not name.isdigit()
                and name.lower() not in _NUMBER_WORDS
                and not any(w in _PROC_STOP or w.endswith("est") for w in words)
            ):
                return name
    return None


def _disk(query: str) -> dict[str, Any]:
    path = _path_token(query, rooted_only=True)
    if path is not None:
        return {"path": path}
    if re.search(r"\bhome\s+(?:folder|directory|dir)\b", query, re.I):
        return {"path": "~"}
    if re.match(r"\s*df\b", query) or re.search(
        r"\b(?:all|every|each)\s+(?:the\s+)?(?:disks?|drives?|partitions?|volumes?|mounts?)\b",
        query,
        re.I,
    ):
        return {"all_partitions": True}
    return {}


def _network(query: str) -> dict[str, Any]:
    match = _IFACE.search(query)
    return {"interface": match.group(1)} if match else {}


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # available_timezones() walks the tz database on every call; routing has a 2 ms budget.
    return frozenset(available_timezones())


@lru_cache(maxsize=1)
def _zones_by_city() -> dict[str, str]:
    # 'tokyo' -> 'Asia/Tokyo', 'new york' -> 'America/New_York', from the system's tz database.
    zones: dict[str, str] = {}
    for zone in sorted(_zone_names()):
        if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "posix/", "right/")):
            zones.setdefault(zone.rsplit("/", 1)[1].replace("_", " ").lower(), zone)
    return zones


def _time(query: str) -> dict[str, Any]:
    explicit = re.search(r"\b([A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_-]+)+)\b", query)
    if explicit and explicit.group(1) in _zone_names():
        return {"timezone": explicit.group(1)}
    if re.search(r"\b(UTC|GMT|Zulu)\b", query):
        return {"timezone": "UTC"}
    place = re.search(
        r"\b(?:in|at)\s+([A-Za-z][A-Za-z .'-]*?)\s*(?:\?|!|\.|$|\bright now\b|\bnow\b|\btoday\b)",
        query,
    )
    if place:
        zone = _zones_by_city().get(place.group(1).strip().lower())
        if zone:
            return {"timezone": zone}
    return {}


def _models(query: str) -> dict[str, Any]:
    match = re.search(r"\bis\s+(.+?)\s+(?:loaded|running|available|served|up)\b", query, re.I)
    if match:
        name = _clean(match.group(1))
        if name.lower() not in {"it", "anything", "something", "a model", "any model", "what"}:
            return {"name": name}
    return {}


def _none(query: str) -> dict[str, Any]:
    return {}


_EXTRACTORS: dict[str, Callable[[str], dict[str, Any]]] = {
    "cpu": _none,
    "memory": _none,
    "disk": _disk,
    "battery": _none,
    "uptime": _none,
    "processes": _processes,
    "network": _network,
    "list_directory": _list_directory,
    "read_file": _read_file,
    "time": _time,
    "models": _models,
    "telemetry": _none,
}


def arguments_from_query(tool_name: str, query: str) -> dict[str, Any]:
    """Arguments for a built-in tool call, read from the query; {} means the tool's defaults."""
    try:
        extract = _EXTRACTORS[tool_name]
    except KeyError:
        known = ", ".join(sorted(_EXTRACTORS))
        raise ValueError(
            f"no argument filler for tool {tool_name!r}; built-in tools: {known}"
        ) from None
    return extract(query.strip())
