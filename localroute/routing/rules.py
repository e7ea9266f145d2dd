"""High-precision rules for the unambiguous stage-1 cases, tried before the classifier.

Each rule must never be wrong on the labelled dev set (tests/test_routing_classifier.py checks
this); anything doubtful is left to the classifier. Rules are regular expressions over the raw
query because the cases they catch are syntactic: a bare shell command, a Python signature with
a docstring, LaTeX, a one-line instruction in front of a long pasted text.

Every pattern is linear in the length of the query (docs/security.md, "Routing on hostile
input"): a line's leading indentation is `[ \\t]*`, never `\\s*` (which, under MULTILINE, would
run over every following blank line from every line start), and what a pattern scans after a
keyword is bounded or cannot be retried from each later position. `apply_rules` reads the
query's bounded view (localroute/bounded_text.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from localroute.bounded_text import stage1_view
from localroute.routing.types import RuleHit, ToolHint

# A bare command line: the whole query is one short line that a shell would accept.
_FLAG = r"-{1,2}[\w=.,%+-]*"
_PATH = r"(~|\.{1,2}|[\w.@-]*)(/[\w.@~+-]*)*|[\w@+-]+\.[A-Za-z0-9]{1,6}"
_ARG_PATH = re.compile(rf"^(?:{_PATH})$")
_FILE_LIKE = re.compile(r"[/~]|\.[A-Za-z0-9]{1,6}$")
_FLAG_RE = re.compile(rf"^{_FLAG}$")
_NUMBER_RE = re.compile(r"^\d+$")

# command -> (tool_hint, argument kind): "none" takes only flags/numbers, "path" needs a file
# argument, "dir" takes an optional directory argument.
_COMMANDS: dict[str, tuple[ToolHint, str]] = {
    "vm_stat": ("memory", "none"),
    "free": ("memory", "none"),
    "df": ("disk", "dir"),
    "uptime": ("uptime", "none"),
    "date": ("time", "none"),
    "ifconfig": ("network", "none"),
    "ps": ("processes", "none"),
    "top": ("processes", "none"),
    "htop": ("processes", "none"),
    "ls": ("list_directory", "dir"),
    "dir": ("list_directory", "dir"),
    "cat": ("read_file", "path"),
    "head": ("read_file", "path"),
    "tail": ("read_file", "path"),
    "less": ("read_file", "path"),
    "more": ("read_file", "path"),
}
# Two-word commands whose second word is fixed.
_PHRASE_COMMANDS: tuple[tuple[re.Pattern[str], ToolHint], ...] = (
    (re.compile(r"^pmset -g (batt|ps)$"), "battery"),
    (re.compile(r"^ip (-\w+ )*(a|addr|address|link|route)( show)?$"), "network"),
    (re.compile(r"^ipconfig( getifaddr \w+| /all)?$"), "network"),
    (re.compile(r"^netstat( -\w+)*$"), "network"),
    (re.compile(r"^(ollama|lms) ps$"), "models"),
    (re.compile(r"^nproc$|^sysctl( -n)? (hw\.ncpu|machdep\.cpu\.[\w.]+|vm\.loadavg)$"), "cpu"),
    (re.compile(r"^sysctl( -n)? (hw\.memsize|vm\.swapusage)$"), "memory"),
)


def _shell_command(query: str) -> RuleHit | None:
    text = query.strip()
    if "\n" in text or len(text) > 120:
        return None
    for pattern, phrase_hint in _PHRASE_COMMANDS:
        if pattern.match(text):
            return RuleHit(route="tool", tool_hint=phrase_hint, reason="shell-command")
    tokens = text.split()
    if not tokens or tokens[0] not in _COMMANDS:
        return None
    hint, kind = _COMMANDS[tokens[0]]
    args = tokens[1:]
    paths = [a for a in args if not _FLAG_RE.match(a) and not _NUMBER_RE.match(a)]
    if kind == "none" and paths:
        return None
    if any(not _ARG_PATH.match(p) for p in paths):
        return None
    if kind == "path" and (len(paths) != 1 or not _FILE_LIKE.search(paths[0])):
        return None
    # "dir" / "free" / "date" alone are words too; a lone word only counts for real commands.
    if kind == "dir" and len(paths) > 1:
        return None
    if kind == "dir" and paths and not _FILE_LIKE.search(paths[0]) and tokens[0] == "dir":
        return None
    return RuleHit(route="tool", tool_hint=hint, reason="shell-command")


_SHOW_FILE = re.compile(
    r"^(show|open|print|read|display|cat)( me)?( the)?( file| contents of)? "
    r"(?P<path>[\w.~/@-]*\.[A-Za-z0-9]{1,6})\s*\??$",
    re.IGNORECASE,
)
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,6}$")
_LIST_DIR = re.compile(
    r"^(list|ls|dir)( me)?( the)?( contents of| files in)? (?P<path>~?[\w.@-]*/[\w.~/@-]*)\s*\??$",
    re.IGNORECASE,
)


def _show_path(query: str) -> RuleHit | None:
    text = query.strip()
    if _SHOW_FILE.match(text):
        return RuleHit(route="tool", tool_hint="read_file", reason="show-file-path")
    match = _LIST_DIR.match(text)
    if match and not _EXTENSION.search(match["path"]):
        return RuleHit(route="tool", tool_hint="list_directory", reason="list-directory-path")
    return None


# The parameter list may span lines but is bounded: unbounded, every `def f(` of a paste without
# a closing parenthesis would scan the rest of the text.
_SIGNATURE_DOCSTRING = re.compile(
    r"^[ \t]*def \w+\([^)]{0,1000}\)[^:\n]*:[ \t]*\r?\n[ \t]+(\"\"\"|''')", re.MULTILINE
)


def _signature_with_docstring(query: str) -> RuleHit | None:
    if _SIGNATURE_DOCSTRING.search(query):
        return RuleHit(route="coding", reason="python-signature-docstring")
    return None


_PY_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):\s*$", re.MULTILINE)


def _short_traceback(query: str) -> RuleHit | None:
    # Inside a long log a traceback is one event among many (summarization); on its own it is
    # a debugging request.
    if len(query) <= 1500 and _PY_TRACEBACK.search(query):
        return RuleHit(route="coding", reason="python-traceback")
    return None


_WRITE_CODE = re.compile(
    r"^(please )?(write|implement|create) (a |an )?(\w+ ){0,2}"
    r"(function|method|program|class|script)s?\b",
    re.IGNORECASE,
)
# "Write a script for a 60-second radio ad" is prose: a script, play or programme for people.
_PROSE_ARTIFACT = re.compile(
    r"\b(story|poem|essay|letter|email|speech|song|ad|advert|advertisement|commercial|play|"
    r"skit|sketch|film|movie|screenplay|video|scene|podcast|episode|radio|tv|trailer|"
    r"dialogue|toast|presentation|comic|show)\b",
    re.IGNORECASE,
)


def _write_code(query: str) -> RuleHit | None:
    head = query.strip().splitlines()[0] if query.strip() else ""
    if _WRITE_CODE.match(head) and not _PROSE_ARTIFACT.search(head):
        return RuleHit(route="coding", reason="write-code-request")
    return None


# Tried only on queries of at most 1500 characters (`_latex_math`): a scan between delimiters
# may be retried from each command or `\[` of a line, which that bound keeps under a few
# hundred thousand steps. The superscript branch stops at the first `^` or `_`, so it cannot.
_LATEX_MATH = re.compile(
    r"\\boxed|\$[^$\n]*\\(frac|sqrt|cdot|times|le|ge|neq|pi|sum|prod|int|binom|mathbf|"
    r"overline|left|right|dots|ldots|theta|alpha|log|sin|cos|tan)\b[^$\n]*\$|"
    r"\\\[[^\n]*\\\]|\$[^$\n^_]*[\^_][^$\n]*\$"
)
LATEX_MAX_CHARS = 1500
_CODE_MARKERS = re.compile(r"```|^[ \t]*(def|class|import|for|while|return)\b", re.MULTILINE)


def _latex_math(query: str) -> RuleHit | None:
    if (len(query) <= LATEX_MAX_CHARS and _LATEX_MATH.search(query)
            and not _CODE_MARKERS.search(query)):
        return RuleHit(route="reasoning", reason="latex-math")
    return None


_SUMMARY_ASK = re.compile(
    r"\b(summar(y|ize|ise|ies)|tl;?dr|key points|main points|gist|condense|boil .{0,12}down|"
    r"short version|sum (it |that |this )?up|recap|main events|main takeaways)\b",
    re.IGNORECASE,
)
_CODE_BODY = re.compile(
    r"^[ \t]*(def |class |import |from \w+ import|function |const |public |#include)|"
    r"Traceback \(most recent|^[ \t]+at [\w.$]{1,200}\(|\berror\[E\d+\]",
    re.MULTILINE,
)


# Below ~500 characters a pasted text is only a few sentences, and asking about it is usually
# question answering or a rewrite (router). The floor was checked against dev + packaged rows.
_SUMMARY_MIN_CHARS = 500


def _summarize_pasted(query: str) -> RuleHit | None:
    lines = query.strip().splitlines()
    if len(query) < _SUMMARY_MIN_CHARS or len(lines) < 3:
        return None
    first, last = lines[0], lines[-1]
    ask_first = len(first) <= 160 and _SUMMARY_ASK.search(first)
    ask_last = len(last) <= 160 and _SUMMARY_ASK.search(last)
    if not (ask_first or ask_last) or _CODE_BODY.search(query):
        return None
    return RuleHit(route="summarization", reason="summarize-pasted-text")


# A release heading: "## 1.4", "### [0.3.35]", "v5.0.0", "2.7.1 (2025-02-11)"; not "1.5 cups".
_VERSION_HEADER = re.compile(
    r"^[ \t]*(#{1,4}[ \t]*\[?v?\d+\.\d+|\[?v\d+\.\d+|\d+\.\d+\.\d+\b)", re.MULTILINE
)
_CHANGE_LINE = re.compile(
    r"^[ \t]*([-*][ \t]*)?(\*\*)?(added|fixed|fix|changed|removed|deprecated|new|improved|breaking|"
    r"security|feat|chore|perf|docs)\b(\*\*)?\s*[:(-]?",
    re.IGNORECASE | re.MULTILINE,
)
_BULLET_LINE = re.compile(r"^[ \t]*[-*][ \t]+\S", re.MULTILINE)


def _pasted_changelog(query: str) -> RuleHit | None:
    # Release notes pasted in (with or without an instruction) are condensed, whatever the ask
    # is worded as ("what matters for users?"). Code in the body means a coding question instead.
    if len(query) < _SUMMARY_MIN_CHARS or _CODE_BODY.search(query) or "```" in query:
        return None
    if not _VERSION_HEADER.search(query):
        return None
    changes = len(_CHANGE_LINE.findall(query))
    bullets = len(_BULLET_LINE.findall(query))
    if changes >= 3 or bullets >= 4:
        return RuleHit(route="summarization", reason="pasted-changelog")
    return None


_RULES: tuple[Callable[[str], RuleHit | None], ...] = (
    _shell_command,
    _show_path,
    _signature_with_docstring,
    _short_traceback,
    _write_code,
    _latex_math,
    _summarize_pasted,
    _pasted_changelog,
)


def apply_rules(query: str) -> RuleHit | None:
    """The first rule that fires on `query`, or None when the case is not unambiguous."""
    query = stage1_view(query)
    for rule in _RULES:
        hit = rule(query)
        if hit is not None:
            return hit
    return None


def rule_names() -> tuple[str, ...]:
    """Names of the rules in evaluation order (for reports and tests)."""
    return tuple(rule.__name__.lstrip("_") for rule in _RULES)
