"""Feature extraction for the route classifier: word and char TF-IDF plus structural signals.

TF-IDF captures wording ("summarize", "write a function"); the structural features capture what
wording cannot: that 40 lines of timestamps follow a one-line instruction, that a query is a bare
shell command, that it is LaTeX or a Python signature with a docstring. Long pasted texts would
drown the instruction in TF-IDF, so the text views look at the head and tail of the query, where
the instruction sits, and the structural features summarise the body.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from localroute.bounded_text import stage1_view

HEAD_CHARS = 400
TAIL_CHARS = 240

_SHELL_COMMANDS = frozenset(
    (
        "ls", "dir", "cat", "head", "tail", "less", "more", "df", "du", "free", "top", "htop",
        "uptime", "date", "cal", "ifconfig", "ip", "ipconfig", "netstat", "ps", "pmset",
        "vm_stat", "sysctl", "uname", "whoami", "hostname", "lsof", "iostat", "nproc", "lscpu",
        "w", "who", "open", "print", "show", "type", "sensors",
    )
)  # fmt: skip
_TIMESTAMP = re.compile(
    r"^\s*(\[?\d{2,4}[-/.]\d{1,2}[-/.]\d{1,2}|\[?\d{1,2}:\d{2}|[A-Z][a-z]{2}\s+\d{1,2}\s+\d{2}:|"
    r"\d{2}/\d{2}/\d{2}\s|\{\"|[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} |\d{1,3}(\.\d{1,3}){3} )"
)
_SPEAKER = re.compile(r"^\s*(\[[^\]]{1,12}\]\s*)?@?[A-Z][\w .'()&-]{0,28}(\s\(\d{1,2}:\d{2}\))?:\s")
_CODE_LINE = re.compile(
    r"^\s*(def |class |return\b|import |from \w+ import|if .*:$|for .*:$|while .*:$|"
    r"\}|\{|#include|public |private |function |const |let |var |SELECT |FROM |WHERE )"
)
_LATEX = re.compile(r"\$[^$]+\$|\\(frac|sqrt|cdot|times|le|ge|pi|sum|int|mathbf|begin|left|dots)")
_NUMBER = re.compile(r"(?<![\w.])[$£€]?\d[\d,]*(\.\d+)?%?")
# A file name's stem is bounded ({1,128}): unbounded, a long run of word characters and dashes
# would be scanned again from every dash.
_PATH = re.compile(
    r"(^|\s)(~|\.{1,2})?/[\w.~/-]+|\b[\w-]{1,128}\.(ya?ml|json|txt|md|toml|cfg|ini|log|py|csv)\b"
)
# One word character before the name is as good a signal as `\w+` and, unlike it, cannot be
# retried from every position of a long word.
_EXCEPTION_NAME = re.compile(r"\w(Error|Exception):")
_MONEY = re.compile(r"[$£€]\s?\d")
_SUMMARY_WORDS = re.compile(
    r"\b(summar\w*|tl;?dr|key points|main points|gist|condense|boil\w* (it|this)? ?down|"
    r"short version|sum (it |that |this )?up|recap|overview|main events|digest)\b",
    re.IGNORECASE,
)
_CODE_ASK = re.compile(
    r"\b(write|implement|create|make|give me|complete|fix|debug|refactor)\b.{0,40}\b"
    r"(function|script|program|class|method|query|regex|snippet|one-liner|command|code)\b",
    re.IGNORECASE,
)
# "Is my disk full?" is a reading of this machine; "what is a good amount of free disk?" or
# "how do I check my disk?" is a question about the world. Word n-grams see each word, but not
# the combination of a first-person/present-state cue with a system noun in a short query.
_SYSTEM_NOUN = re.compile(
    r"\b(cpu|processor|cores?|load|ram|memory|swap|disks?|drive|storage|space|ssd|volume|"
    r"partition|battery|charger|charging|plugged|power|uptime|boot(ed)?|restart|reboot|"
    r"process(es)?|programs?|apps?|running|ip|wi-?fi|ethernet|network|interfaces?|adapters?|"
    r"files?|folder|directory|models?|loaded|requests?|latency|time|date|day)\b",
    re.IGNORECASE,
)
_SELF_STATE = re.compile(
    r"\b(my|mine|i|i'm|am i|do i|this (machine|box|computer|laptop|mac)|right now|currently|"
    r"at the moment|left|free|in use|still)\b",
    re.IGNORECASE,
)
_WORLD_QUESTION = re.compile(
    r"^\s*(how (do|can|should|would|to|often)|what (is|are|does|do) (an? |the )?(good|normal|"
    r"healthy|difference|meaning)|what (is|are|does) an? |what does .* mean|why\b|should i\b|"
    r"is it (bad|ok|okay|safe|normal)|where (can|do) i|which is (better|faster)|explain\b|"
    r"describe\b|tell me about\b)",
    re.IGNORECASE,
)
# Numbers alone do not make a reasoning task ("write a 300-word story", "invoice #4471 for
# $2,300"); numbers plus a request to work something out do.
_COMPUTE_ASK = re.compile(
    r"\b(how (many|much|long|far|fast|old|high)|calculate|compute|solve|prove|show that|"
    r"work out|estimate|determine|find (the|all|x|y|n)|what (is|was|are) the (probability|"
    r"area|sum|total|value|remainder|average|speed|cost|price|ratio|number)|what fraction|"
    r"what percent(age)?|step by step|show (your|the) (work|steps|calculation))\b",
    re.IGNORECASE,
)
_STRUCT_NAMES = (
    "log_len",
    "log_lines",
    "short",
    "timestamp_lines",
    "speaker_lines",
    "code_lines",
    "indented_lines",
    "bullet_lines",
    "docstring",
    "traceback",
    "latex",
    "numbers",
    "digit_ratio",
    "money",
    "question_end",
    "shell_first_token",
    "path_token",
    "summary_word",
    "code_ask",
    "fence",
    "long_body",
    "self_state",
    "world_question",
    "compute_ask",
    "numbers_no_ask",
)


def text_view(query: str) -> str:
    """The part of a query that carries its instruction: all of it if short, else head + tail."""
    if len(query) <= HEAD_CHARS + TAIL_CHARS:
        return query
    return query[:HEAD_CHARS] + "\n…\n" + query[-TAIL_CHARS:]


def structural_features(query: str) -> list[float]:
    """Hand-made signals in roughly [0, 1], in the order of `_STRUCT_NAMES`, read from the
    query's bounded view (localroute/bounded_text.py)."""
    query = stage1_view(query)
    lines = [ln for ln in query.splitlines() if ln.strip()]
    n_lines = max(len(lines), 1)
    words = query.split()
    head_tail = text_view(query)
    first = words[0].lower() if words else ""
    numbers = len(_NUMBER.findall(query))
    digits = sum(ch.isdigit() for ch in query)
    compute_ask = bool(_COMPUTE_ASK.search(head_tail))
    return [
        math.log1p(len(query)) / 8.0,
        math.log1p(n_lines) / 4.0,
        1.0 if len(words) <= 4 else 0.0,
        sum(bool(_TIMESTAMP.match(ln)) for ln in lines) / n_lines,
        sum(bool(_SPEAKER.match(ln)) for ln in lines) / n_lines,
        sum(bool(_CODE_LINE.match(ln)) for ln in lines) / n_lines,
        sum(ln.startswith(("    ", "\t")) for ln in lines) / n_lines,
        sum(ln.lstrip().startswith(("- ", "* ", "#")) for ln in lines) / n_lines,
        1.0 if ('"""' in query or "'''" in query) else 0.0,
        1.0 if ("Traceback" in query or _EXCEPTION_NAME.search(query)) else 0.0,
        min(len(_LATEX.findall(query)), 5) / 5.0,
        min(numbers, 10) / 10.0,
        digits / max(len(query), 1),
        1.0 if _MONEY.search(query) else 0.0,
        1.0 if query.rstrip().endswith("?") else 0.0,
        1.0 if first in _SHELL_COMMANDS else 0.0,
        1.0 if _PATH.search(query) else 0.0,
        1.0 if _SUMMARY_WORDS.search(head_tail) else 0.0,
        1.0 if _CODE_ASK.search(head_tail) else 0.0,
        1.0 if "```" in query else 0.0,
        1.0 if len(query) > 700 else 0.0,
        1.0
        if len(words) <= 14 and _SYSTEM_NOUN.search(query) and _SELF_STATE.search(query)
        else 0.0,
        # Only next to a system noun: "how do I parse JSON in Go?" is a coding question.
        1.0
        if len(words) <= 30 and _WORLD_QUESTION.search(query) and _SYSTEM_NOUN.search(query)
        else 0.0,
        1.0 if compute_ask else 0.0,
        min(numbers, 10) / 10.0 if not compute_ask else 0.0,
    ]


class FeatureBuilder:
    """Fits and applies the three feature blocks; `struct_weight` scales the dense block."""

    def __init__(self, struct_weight: float = 1.0, **params: Any) -> None:
        self.struct_weight = struct_weight
        # Defaults chosen by leave-source-out on the dev set; `params` overrides them per block
        # ({"word": {...}, "char": {...}}) for tuning experiments.
        word: dict[str, Any] = {
            "lowercase": True,
            "ngram_range": (1, 2),
            "sublinear_tf": True,
            "min_df": 1,
            "token_pattern": r"(?u)\b\w+\b|[$\\{}()\[\]=:;#@`~/.%?!<>|-]",
        }
        char: dict[str, Any] = {
            "lowercase": True,
            "analyzer": "char_wb",
            "ngram_range": (2, 5),
            "sublinear_tf": True,
            "min_df": 2,
        }
        self.word = TfidfVectorizer(**{**word, **params.get("word", {})})
        self.char = TfidfVectorizer(**{**char, **params.get("char", {})})

    def vectorizers(self) -> tuple[TfidfVectorizer, TfidfVectorizer]:
        """The word and char TF-IDF blocks (the classifier cleans them before saving)."""
        return self.word, self.char

    def fit(self, queries: list[str]) -> FeatureBuilder:
        views = [text_view(q) for q in queries]
        self.word.fit(views)
        self.char.fit(views)
        return self

    def transform(self, queries: list[str]) -> sparse.csr_matrix:
        views = [text_view(q) for q in queries]
        dense: npt.NDArray[np.float64] = np.asarray(
            [structural_features(q) for q in queries], dtype=np.float64
        )
        return sparse.hstack(
            [
                self.word.transform(views),
                self.char.transform(views),
                sparse.csr_matrix(dense * self.struct_weight),
            ],
            format="csr",
        )
