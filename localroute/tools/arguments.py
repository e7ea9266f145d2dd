"""Stage 1's argument filler: a tool call's arguments from the person's words, with no model.

Hand-written patterns because the phrasings are short and few (see the tool rows of
routing_dev.jsonl) and this runs inside the 2 ms routing budget; anything not recognised is left
to the tool's defaults, and a required argument that is missing fails validation with a message
naming the field.

Every pattern is linear in the length of the query (docs/security.md, "Routing on hostile
input"): a name captured after a keyword (`is X running`, `how much memory is X using`) is at
most NAME_CHARS long instead of `.+?`, which would scan the rest of the line from every `is`;
and `arguments_from_query` reads the query's bounded view (localroute/bounded_text.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from localroute.bounded_text import stage1_view
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
    r"\d[\w.-]{0,32}|lo)\b"
)
# The longest process, folder or model name read from a query. Model ids such as
# "bartowski/Qwen2.5-Coder-32B-Instruct-GGUF:Q4_K_M" stay under it.
NAME_CHARS = 128
_N = f"{{1,{NAME_CHARS}}}"
_FLAG = re.compile(r"-[A-Za-z]+")
_HIDDEN = re.compile(r"\b(hidden|dot-?files|including dot)\b", re.I)
_NAMED_FOLDER = re.compile(rf"\b(?:the\s+|my\s+)?([\w.-]{_N})\s+(?:folder|directory|dir)\b", re.I)
_HOME_FOLDER = re.compile(r"\bhome\s+(?:folder|directory|dir)\b", re.I)
_INSIDE = re.compile(rf"\b(?:in|of|inside|under)\s+(?:my\s+|the\s+)?([\w.-]{_N})", re.I)
_MEMORY_WORD = re.compile(r"\b(mem|memory|ram|rss|swap)\b|memory-")
_COUNT = re.compile(r"\btop\s+(\d+|[a-z]+)\b|\b(\d+|[a-z]+)\s+(?:\w+\s+)?process")
_PROCESS_NAMES = tuple(re.compile(p, re.I) for p in (
    rf"\bis\s+(?:the\s+)?(.{_N}?)\s+(?:app\s+|process\s+)?(?:still\s+)?running\b",
    r"\bhow much (?:memory|ram|cpu)\s+(?:is|are|does|do)\s+(?:the\s+)?"
    rf"(.{_N}?)\s+(?:process(?:es)?\s+|app\s+)?(?:using|use|taking|eating|consuming)\b",
    r"\b(?:pgrep|pidof)\s+(?:-\w+\s+)*(\S+)",
    r"\bgrep\s+(?:-\w+\s+)*(\S+)",
    rf"\b([\w.+-]{_N})\s+process(?:es)?\b",
))
_DF = re.compile(r"^\s*df\b")  # `^`: tried at the start only, even by a search
_ALL_DISKS = re.compile(
    r"\b(?:all|every|each)\s+(?:the\s+)?(?:disks?|drives?|partitions?|volumes?|mounts?)\b", re.I)
# Zone names have at most three parts (America/Argentina/Buenos_Aires), none over 32 characters.
_ZONE = re.compile(r"\b([A-Z][A-Za-z_]{1,32}(?:/[A-Z][A-Za-z_-]{1,32}){1,3})\b")
_UTC = re.compile(r"\b(UTC|GMT|Zulu)\b")
# A place is looked up by the last part of a zone name, at most 14 characters
# ("Port-au-Prince"); 32 is ample and keeps `in ...` from being scanned to the end of the text
# from every `in`.
_PLACE = re.compile(
    r"\b(?:in|at)\s+([A-Za-z][A-Za-z .'-]{0,31}?)\s*(?:\?|!|\.|$|\bright now\b|\bnow\b|\btoday\b)"
)
_MODEL_NAME = re.compile(rf"\bis\s+(.{_N}?)\s+(?:loaded|running|available|served|up)\b", re.I)


def _clean(token: str) -> str:
    token = token.strip(_EDGE)
    if token in {".", ".."} or token.endswith("/.."):
        return token
    # Full stops come off in one slice (one at a time would copy a long run of dots once per
    # dot), but '..' and a trailing '/..' survive as above.
    bare = token.rstrip(".")
    if bare.endswith("/") and token.endswith(".."):
        return bare + ".."
    if not bare and token:
        return ".."
    return bare


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
    flags = [t for t in query.split() if _FLAG.fullmatch(t)]
    if any("a" in f.lower() for f in flags) or _HIDDEN.search(query):
        args["show_hidden"] = True
    path = _path_token(query)
    if path is None:
        folder = _NAMED_FOLDER.search(query)
        if folder and folder.group(1).lower() not in _LIST_STOP | {"home"}:
            path = folder.group(1)
        elif _HOME_FOLDER.search(query):
            path = "~"
    if path is None:
        inside = _INSIDE.search(query)
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
_READ_AFTER_VERB = re.compile(rf"\b(?:{_READ_VERBS})\b\s+(.*)$", re.I)


def _read_file(query: str) -> dict[str, Any]:
    path = _path_token(query)
    if path is None:
        # `(.*)$` asks for the verb on the last line; searching only that line keeps `.*` from
        # scanning to the end of an earlier line from every verb on it.
        after = _READ_AFTER_VERB.search(query.rsplit("\n", 1)[-1])
        if after:
            candidates = [t for t in _tokens(after.group(1)) if not t.startswith("-")]
            rest = [t for t in candidates if t.lower() not in _READ_STOP]
            if rest:
                path = rest[0]
    return {"path": path} if path is not None else {}


def _processes(query: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    lowered = query.lower()
    if _MEMORY_WORD.search(lowered):
        args["sort_by"] = "memory"
    count = _COUNT.search(lowered)
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
    for pattern in _PROCESS_NAMES:
        for match in pattern.finditer(query):
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
    if _HOME_FOLDER.search(query):
        return {"path": "~"}
    if _DF.match(query) or _ALL_DISKS.search(query):
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
    explicit = _ZONE.search(query)
    if explicit and explicit.group(1) in _zone_names():
        return {"timezone": explicit.group(1)}
    if _UTC.search(query):
        return {"timezone": "UTC"}
    place = _PLACE.search(query)
    if place:
        zone = _zones_by_city().get(place.group(1).strip().lower())
        if zone:
            return {"timezone": zone}
    return {}


def _models(query: str) -> dict[str, Any]:
    match = _MODEL_NAME.search(query)
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
    return extract(stage1_view(query).strip())
