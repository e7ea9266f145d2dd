"""Locations the file tools refuse even inside a root: credentials, keys, browser profiles,
password stores, `.env` files and localroute's own state.

A path is protected when any run of its components matches one of the patterns below, so
`~/.ssh/id_rsa`, `/mnt/backup/home/ann/.ssh/id_rsa` and a root that *is* `~/.ssh` are all caught,
and the check is applied to the path as written and to its resolved real path (a symlink or
`..` cannot walk around it). Matching ignores case: macOS file systems do, so `~/library/
keychains` reaches the keychains.

Hand-written because no maintained library lists secret locations for this purpose (gitleaks
and detect-secrets scan contents, not paths); the list follows the default paths of each tool.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from localroute.config.telemetry import state_dir

# Runs of path components (shell globs, matched case-insensitively) that hold secrets.
SECRET_COMPONENTS: tuple[tuple[str, ...], ...] = (
    # Keys and cloud or cluster credentials.
    (".ssh",), (".gnupg",), (".aws",), (".azure",), (".kube",), (".config", "gcloud"),
    (".docker", "config.json"), (".netrc",), ("_netrc",), (".pgpass",), (".git-credentials",),
    (".npmrc",), (".pypirc",), (".vault-token",), (".config", "gh"), (".cargo", "credentials*"),
    # Environment files anywhere (`.env`, `.env.local`, `.env.production`, direnv's `.envrc`).
    (".env",), (".env.*",), (".envrc",),
    # Keychains and password managers.
    ("library", "keychains"), ("*.keychain",), ("*.keychain-db",), (".local", "share", "keyrings"),
    (".password-store",), ("*.kdbx",), ("*.p12",), ("*.pfx",), (".config", "1password"),
    ("library", "group containers", "*1password*"),
    ("library", "application support", "1password*"), (".config", "bitwarden"),
    ("library", "application support", "bitwarden"), (".config", "keepassxc"),
    # Browser profiles (cookies, saved passwords, sessions) on Linux and macOS.
    (".mozilla",), (".config", "google-chrome*"), (".config", "chromium"),
    (".config", "bravesoftware"), (".config", "microsoft-edge*"), ("library", "safari"),
    ("library", "cookies"), ("library", "containers", "com.apple.safari"),
    ("library", "application support", "google", "chrome*"),
    ("library", "application support", "chromium"), ("library", "application support", "firefox"),
    ("library", "application support", "bravesoftware"),
    ("library", "application support", "microsoft edge*"),
)  # fmt: skip

# SSH key files by name (`id_rsa`, `id_ed25519_sk`, `id_rsa_work`, their `.pub`), which need no
# content check; `*.pem` and `*.key` are refused when they hold a private-key header.
_SSH_KEY_NAME = re.compile(r"id_[A-Za-z0-9_-]+(\.pub)?", re.IGNORECASE)
KEY_SUFFIXES = (".pem", ".key", ".ppk")
# PEM private keys of every kind (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK) and PuTTY keys.
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|PuTTY-User-Key-File-")
# How much of a key-named file is read to look for the header (headers are on the first line).
KEY_PEEK_BYTES = 4096


def holds_private_key(data: bytes) -> bool:
    """Whether these bytes contain a private-key header (PEM, OpenSSH, PGP, PuTTY)."""
    return _PRIVATE_KEY.search(data) is not None


def _glob_regex(glob: str) -> str:
    """A shell glob as a regex over '/'-joined paths: `*` and `?` stay inside one component,
    `**` crosses components. (fnmatch's `*` would cross '/'.)"""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i])))
        i += 1
    return "".join(out)


def _runs_regex(runs: Iterable[Sequence[str]]) -> re.Pattern[str]:
    """One regex matching a path (lower-case, '/'-joined) that contains any run of components."""
    alternatives = ["/".join(_glob_regex(part) for part in run) for run in runs]
    return re.compile(r"(?:^|/)(?:" + "|".join(alternatives) + r")(?:/|$)")


# Compiled once: a listing checks every entry, so one search per path instead of a loop over
# patterns and components.
_SECRET_RUNS = _runs_regex(SECRET_COMPONENTS)


def _state_dirs() -> tuple[Path, ...]:
    # As written and as resolved: the state dir may sit behind a symlink (macOS /var -> /private).
    written = Path(os.path.normpath(state_dir().expanduser().absolute()))
    return tuple({written, written.resolve()})


class Protection:
    """The refused locations: the built-in list, localroute's state directory and the person's
    extra `deny` globs (`tools.deny` in modes.yaml)."""

    def __init__(self, deny: Iterable[str] = ()) -> None:
        self.state_dirs = _state_dirs()
        anchored: list[str] = []  # absolute globs: the path or one of its parents matches
        names: list[str] = []  # globs without '/': any component matches
        for raw in deny:
            text = raw.strip()
            if not text:
                raise ValueError("tools.deny: an empty pattern; remove it or give a path or glob")
            if "/" in text or text.startswith("~"):
                expanded = os.path.expanduser(text)
                if not os.path.isabs(expanded):
                    raise ValueError(
                        f"tools.deny: {raw!r} has a '/' but is not absolute; write it as "
                        "'~/dir', '/abs/dir', or a bare name glob such as '*.sqlite'"
                    )
                anchored.append(_glob_regex(os.path.normpath(expanded).lower()))
            else:
                names.append(text.lower())
        self._names = _runs_regex([(n,) for n in names]) if names else None
        self._anchored = (re.compile("^(?:" + "|".join(anchored) + r")(?:/|$)")
                          if anchored else None)

    def refuses(self, path: Path) -> bool:
        """Whether `path` (absolute, normalised) is or lies inside a protected location."""
        text = str(path).lower()
        if _SECRET_RUNS.search(text) or _SSH_KEY_NAME.fullmatch(path.name):
            return True
        if any(path.is_relative_to(d) for d in self.state_dirs):
            return True
        if self._names is not None and self._names.search(text):
            return True
        return self._anchored is not None and self._anchored.match(text) is not None

    def hides_entry(self, directory: Path, name: str) -> bool:
        """Whether a listing of `directory` leaves out its entry `name`: protected by location,
        or a key file (`*.pem`, `*.key`...) holding a private key."""
        entry = directory / name
        if self.refuses(entry):
            return True
        return name.lower().endswith(KEY_SUFFIXES) and _peek_private_key(entry)


def _peek_private_key(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # unreadable or a link: reading it fails anyway
    try:
        return holds_private_key(os.read(fd, KEY_PEEK_BYTES))
    except OSError:
        return False
    finally:
        os.close(fd)
