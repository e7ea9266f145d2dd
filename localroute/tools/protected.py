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
from fnmatch import fnmatchcase
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


def _lower_parts(path: Path) -> list[str]:
    return [p.lower() for p in path.parts]


def _matches_run(parts: Sequence[str], pattern: tuple[str, ...]) -> bool:
    width = len(pattern)
    return any(
        all(fnmatchcase(parts[i + k], pattern[k]) for k in range(width))
        for i in range(len(parts) - width + 1)
    )


def _state_dirs() -> tuple[Path, ...]:
    # As written and as resolved: the state dir may sit behind a symlink (macOS /var -> /private).
    written = Path(os.path.normpath(state_dir().expanduser().absolute()))
    return tuple({written, written.resolve()})


class Protection:
    """The refused locations: the built-in list, localroute's state directory and the person's
    extra `deny` globs (`tools.deny` in modes.yaml)."""

    def __init__(self, deny: Iterable[str] = ()) -> None:
        self.state_dirs = _state_dirs()
        self.anchored: list[str] = []  # absolute globs: the path or one of its parents matches
        self.names: list[str] = []  # globs without '/': any component matches
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
                self.anchored.append(os.path.normpath(expanded).lower())
            else:
                self.names.append(text.lower())

    def refuses(self, path: Path) -> bool:
        """Whether `path` (absolute, normalised) is or lies inside a protected location."""
        parts = _lower_parts(path)
        if any(_matches_run(parts, pattern) for pattern in SECRET_COMPONENTS):
            return True
        if _SSH_KEY_NAME.fullmatch(path.name):
            return True
        if any(path.is_relative_to(d) for d in self.state_dirs):
            return True
        if any(fnmatchcase(part, glob) for part in parts for glob in self.names):
            return True
        text = str(path).lower()
        return any(
            fnmatchcase(candidate, glob)
            for glob in self.anchored
            for candidate in _self_and_parents(text)
        )

    def hides_entry(self, directory: Path, name: str) -> bool:
        """Whether a listing of `directory` leaves out its entry `name`: protected by location,
        or a key file (`*.pem`, `*.key`...) holding a private key."""
        entry = directory / name
        if self.refuses(entry):
            return True
        return name.lower().endswith(KEY_SUFFIXES) and _peek_private_key(entry)


def _self_and_parents(text: str) -> Iterable[str]:
    path = Path(text)
    yield text
    for parent in path.parents:
        yield str(parent)


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
