"""The history of `models.yaml` changes: whole-file snapshots, so a rollback restores the file
exactly (comments and all), and an append-only log of each change with its evidence.

The history lives beside the config file, in `<file>.history/` (`history.jsonl` + snapshots).
Edits change only the text of the one value they touch: PyYAML's node marks give its exact
span, so every other byte of the file (comments, order, quoting) stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import sysconfig
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from localroute.config.loader import PACKAGED_MODELS, ConfigError, load_config
from localroute.evaluation.suites.store import now_iso


class HistoryError(ValueError):
    """The config cannot be changed or restored; the message says why and what to do."""


class HistoryEntry(BaseModel):
    seq: int
    at: str = Field(default_factory=now_iso)
    action: str  # promote | rollback
    profile: str
    role: str
    from_model: str
    to_model: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    snapshot: str  # file name (in the history dir) of the config as it was before the change
    sha256_before: str
    sha256_after: str
    reverts: int | None = None  # for a rollback: the seq of the change it undid


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _install_dirs() -> list[Path]:
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
            *site.getsitepackages()}
    return [Path(d).resolve() for d in dirs if d]


def check_editable(path: Path) -> str | None:
    """Refuse to edit an installed package's default; returns a note when editing the packaged
    default of a writable checkout (allowed, but worth saying)."""
    resolved = path.resolve()
    if not resolved.is_file():
        raise HistoryError(f"{path}: config file not found; pass --config PATH or set "
                           "LOCALROUTE_CONFIG")
    packaged = resolved == PACKAGED_MODELS.resolve()
    installed = any(resolved.is_relative_to(d) for d in _install_dirs())
    if packaged and installed:
        raise HistoryError(
            f"the active config is the packaged default inside the installed package ({path}); "
            "it would be lost on upgrade. Copy it (e.g. cp "
            f"{path} ~/.config/localroute/models.yaml) and point --config or LOCALROUTE_CONFIG "
            "at the copy"
        )
    if not os.access(resolved, os.W_OK) or not os.access(resolved.parent, os.W_OK):
        raise HistoryError(f"{path}: not writable (and its history lives beside it); use a copy "
                           "you can write, via --config or LOCALROUTE_CONFIG")
    if packaged:
        return (f"editing the packaged default in the source checkout ({path}); the change is "
                "part of the working tree")
    return None


def role_id_span(text: str, profile: str, role: str, file: str) -> tuple[int, int, str]:
    """Start and end offsets of `profiles.<profile>.roles.<role>.id`'s value, and the value."""
    root = yaml.compose(text)
    node: Any = root
    path = ["profiles", profile, "roles", role]
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            raise HistoryError(f"{file}: {'.'.join(path)} is not a mapping")
        found = next((v for k, v in node.value if k.value == key), None)
        if found is None:
            raise HistoryError(f"{file}: no {'.'.join(path[: path.index(key) + 1])}")
        node = found
    value = next((v for k, v in node.value if k.value == "id"), None)
    if value is None:
        shared = next((v.value for k, v in node.value if k.value == "shares_instance_with"), None)
        hint = f"; it shares the instance of '{shared}': promote that role" if shared else ""
        raise HistoryError(f"{file}: profiles.{profile}.roles.{role} has no 'id'{hint}")
    return value.start_mark.index, value.end_mark.index, str(value.value)


def set_role_model(text: str, profile: str, role: str, model: str, file: str) -> str:
    start, end, _ = role_id_span(text, profile, role, file)
    return text[:start] + _scalar(model) + text[end:]


def _scalar(value: str) -> str:
    # A plain scalar when YAML reads it back as the same string, else a JSON (= YAML) string.
    try:
        if yaml.safe_load(value) == value and "\n" not in value and "#" not in value:
            return value
    except yaml.YAMLError:
        pass
    return json.dumps(value)


class History:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.dir = config.parent / f"{config.name}.history"
        self.log = self.dir / "history.jsonl"

    def entries(self) -> list[HistoryEntry]:
        if not self.log.is_file():
            return []
        return [HistoryEntry.model_validate_json(line)
                for line in self.log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def record(self, before: bytes, after: bytes, **fields: Any) -> HistoryEntry:
        """Snapshot `before`, write `after` to the config (atomically), and log the change."""
        self.dir.mkdir(parents=True, exist_ok=True)
        seq = len(self.entries()) + 1
        snapshot = f"{seq:04d}-{fields['action']}-{fields['role']}.yaml"
        (self.dir / snapshot).write_bytes(before)
        entry = HistoryEntry(seq=seq, snapshot=snapshot, sha256_before=sha256(before),
                             sha256_after=sha256(after), **fields)
        tmp = self.config.with_name(self.config.name + ".tmp")
        tmp.write_bytes(after)
        os.replace(tmp, self.config)
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(entry.model_dump_json() + "\n")
        return entry

    def last_change(self, role: str, profile: str) -> HistoryEntry | None:
        """The latest promotion of the role that no rollback has undone yet."""
        entries = self.entries()
        undone = {e.reverts for e in entries if e.reverts is not None}
        for entry in reversed(entries):
            if entry.role == role and entry.profile == profile and entry.action == "promote" \
                    and entry.seq not in undone:
                return entry
        return None

    def snapshot_bytes(self, entry: HistoryEntry) -> bytes:
        return (self.dir / entry.snapshot).read_bytes()


def validate_text(text: bytes, like: Path) -> None:
    """The new file must still load; checked on a temporary copy before it replaces the real one."""
    tmp = like.with_name(like.name + ".check.yaml")
    try:
        tmp.write_bytes(text)
        load_config(tmp)
    except ConfigError as exc:
        raise HistoryError(f"the edited config would not load: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
