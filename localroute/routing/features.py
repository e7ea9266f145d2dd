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
_PATH = re.compile(
    r"(^|\s)(~|\.{1,2})?/[\w.~/-]+|\b[\w-]+\.(ya?ml|json|txt|md|toml|cfg|ini|log|py|csv)\b"
)
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
)


def text_view(query: str) -> str:
    """The part of a query that carries its instruction: all of it if short, else head + tail."""
    if len(query) <= HEAD_CHARS + TAIL_CHARS:
        return query
    return query[:HEAD_CHARS] + "\n…\n" + query[-TAIL_CHARS:]


def structural_features(query: str) -> list[float]:
    """Hand-made signals in roughly [0, 1], in the order of `_STRUCT_NAMES`."""
    lines = [ln for ln in query.splitlines() if ln.strip()]
    n_lines = max(len(lines), 1)
    words = query.split()
    head_tail = text_view(query)
    first = words[0].lower() if words else ""
    numbers = len(_NUMBER.findall(query))
    digits = sum(ch.isdigit() for ch in query)
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
        1.0 if ("Traceback" in query or re.search(r"\w+(Error|Exception):", query)) else 0.0,
        min(len(_LATEX.findall(query)), 5) / 5.0,
        min(numbers, 10) / 10.0,
        digits / max(len(query), 1),
        1.0 if re.search(r"[$£€]\s?\d", query) else 0.0,
        1.0 if query.rstrip().endswith("?") else 0.0,
        1.0 if first in _SHELL_COMMANDS else 0.0,
        1.0 if _PATH.search(query) else 0.0,
        1.0 if _SUMMARY_WORDS.search(head_tail) else 0.0,
        1.0 if _CODE_ASK.search(head_tail) else 0.0,
        1.0 if "```" in query else 0.0,
        1.0 if len(query) > 700 else 0.0,
    ]


class FeatureBuilder:
    """Fits and applies the three feature blocks; `struct_weight` scales the dense block."""

    def __init__(self, struct_weight: float = 1.0, **params: Any) -> None:
        self.struct_weight = struct_weight
        self.word = TfidfVectorizer(
            lowercase=True,
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=1,
            token_pattern=r"(?u)\b\w+\b|[$\\{}()\[\]=:;#@`~/.%?!<>|-]",
            **params.get("word", {}),
        )
        self.char = TfidfVectorizer(
            lowercase=True,
            analyzer="char_wb",
            ngram_range=(2, 5),
            sublinear_tf=True,
            min_df=2,
            **params.get("char", {}),
        )

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
