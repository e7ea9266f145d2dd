"""Tool registry and built-in tools: real sensors, real files, confinement, validation, modes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import psutil
import pytest
from pydantic import BaseModel, ConfigDict

from localroute.tools import (
    GOVERNANCE_MODES,
    SideEffect,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    UnknownToolError,
    arguments_from_query,
    default_registry,
)
from localroute.tools.base import NoArgs
from tests.support.paths import DEV_SET

DEV_DATA = DEV_SET
BUILTIN = {
    "cpu", "memory", "disk", "battery", "uptime", "processes", "network",
    "list_directory", "read_file", "time", "models", "telemetry",
}  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return default_registry()


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    """A root with files in it and a sibling directory outside it holding a secret."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.txt").write_text("alpha\nbeta\n")
    (root / "sub" / "b.md").write_text("# bee\n")
    (outside / "secret.txt").write_text("TOP-SECRET-CONTENT")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def confined(root: Path, **kw: Any) -> ToolContext:
    return ToolContext(roots=[root], cwd=root, **kw)


async def run(
    registry: ToolRegistry, name: str, args: Any = None, ctx: ToolContext | None = None
) -> ToolResult:
    return await registry.invoke(name, args, ctx or ToolContext(), "NORMAL")


# --- every built-in runs here ------------------------------------------------------------


def test_default_registry_holds_exactly_the_builtins(registry: ToolRegistry) -> None:
    assert set(registry.names()) == BUILTIN
    assert all(tool.side_effect is SideEffect.READ_ONLY for tool in registry)


async def test_cpu(registry: ToolRegistry) -> None:
    res = await run(registry, "cpu")
    assert res.ok, res.error
    assert 0.0 <= res.data["percent"] <= 100.0
    assert res.data["logical_cores"] == psutil.cpu_count()
    assert len(res.data["per_core_percent"]) == psutil.cpu_count()
    assert "%" in res.text and f"{psutil.cpu_count()} logical cores" in res.text
    assert res.elapsed_ms > 0


async def test_memory(registry: ToolRegistry) -> None:
    res = await run(registry, "memory")
    vm = psutil.virtual_memory()
    assert res.ok, res.error
    assert res.data["virtual"]["total"] == vm.total
    assert 0 < res.data["virtual"]["used"] <= vm.total
    assert "iB" in res.text and "available" in res.text


async def test_disk_default_path_and_given_path(registry: ToolRegistry, tmp_path: Path) -> None:
    res = await run(registry, "disk")
    assert res.ok, res.error
    assert res.data["total"] == psutil.disk_usage("/").total
    assert 0 <= res.data["free"] <= res.data["total"]
    assert "free of" in res.text and "iB" in res.text

    # Inside a root the path itself is measured, shown relative to the root's working directory.
    here = await run(registry, "disk", {"path": str(tmp_path)}, confined(tmp_path))
    assert here.ok and here.data["path"] == "."
    assert here.data["total"] == psutil.disk_usage(str(tmp_path)).total
    assert "Disk holding . (mounted at " in here.text


async def test_disk_all_partitions_and_a_path_outside_the_roots(registry: ToolRegistry) -> None:
    res = await run(registry, "disk", {"all_partitions": True})
    assert res.ok, res.error
    mounts = {p["path"] for p in res.data["partitions"]}
    assert mounts and mounts <= {p.mountpoint for p in psutil.disk_partitions(all=False)}

    # Outside the roots a path is answered from the mount table, whether it exists or not.
    missing = await run(registry, "disk", {"path": "/no/such/volume-lr"})
    assert missing.ok and missing.data["mountpoint"] == "/"
    assert missing.text.startswith("Disk holding /no/such/volume-lr (mounted at /): ")


async def test_battery_matches_sensor(registry: ToolRegistry) -> None:
    res = await run(registry, "battery")
    assert res.ok, res.error
    sensor = psutil.sensors_battery()
    assert res.data["present"] is (sensor is not None)
    if sensor is None:
        assert "No battery" in res.text
    else:
        assert res.data["percent"] == sensor.percent
        assert f"{sensor.percent:.0f}%" in res.text


async def test_uptime(registry: ToolRegistry) -> None:
    res = await run(registry, "uptime")
    expected = time.time() - psutil.boot_time()
    assert res.ok, res.error
    assert abs(res.data["uptime_seconds"] - expected) < 5
    assert res.data["uptime_hours"] == pytest.approx(expected / 3600, abs=0.01)
    assert res.text.startswith("Up ")


async def test_processes_top_n_sorted(registry: ToolRegistry) -> None:
    res = await run(registry, "processes")
    assert res.ok, res.error
    assert len(res.data["processes"]) == min(5, res.data["total_processes"])
    cpu = [p["cpu_percent"] or 0 for p in res.data["processes"]]
    assert cpu == sorted(cpu, reverse=True)

    mem = await run(registry, "processes", {"limit": 3, "sort_by": "memory"})
    rss = [p["rss"] or 0 for p in mem.data["processes"]]
    assert len(rss) == 3 and rss == sorted(rss, reverse=True)
    assert "by memory" in mem.text


async def test_processes_by_name_finds_a_real_child(registry: ToolRegistry, tmp_path: Path) -> None:
    sleeper = tmp_path / "lrsleeperzq"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", sleeper)
    proc = await asyncio.create_subprocess_exec(str(sleeper), "30")
    try:
        res = await run(registry, "processes", {"name": "LRSleeperZQ"})
        assert res.ok, res.error
        assert [p["pid"] for p in res.data["processes"]] == [proc.pid]
        assert "1 process matches" in res.text and str(proc.pid) in res.text
    finally:
        proc.kill()
        await proc.wait()
    gone = await run(registry, "processes", {"name": "LRSleeperZQ"})
    assert gone.ok and gone.data["matching"] == 0
    assert "No running process matches" in gone.text


async def test_network(registry: ToolRegistry) -> None:
    res = await run(registry, "network")
    assert res.ok, res.error
    names = {i["name"] for i in res.data["interfaces"]}
    assert names == set(psutil.net_if_addrs()) | set(psutil.net_if_stats())
    loopback = next(
        name
        for name, addrs in psutil.net_if_addrs().items()
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addrs)
    )
    one = await run(registry, "network", {"interface": loopback})
    assert [i["name"] for i in one.data["interfaces"]] == [loopback]
    assert "127.0.0.1/8" in one.data["interfaces"][0]["ipv4"]
    assert "127.0.0.1/8" in one.text

    bad = await run(registry, "network", {"interface": "nope9"})
    assert not bad.ok and "nope9" in (bad.error or "") and loopback in (bad.error or "")


async def test_time(registry: ToolRegistry) -> None:
    res = await run(registry, "time")
    assert res.ok, res.error
    stamp = datetime.fromisoformat(res.data["iso"])
    assert abs(stamp.timestamp() - time.time()) < 5
    assert res.data["weekday"] in res.text

    tokyo = await run(registry, "time", {"timezone": "Asia/Tokyo"})
    assert tokyo.data["utc_offset"] == "UTC+09:00" and "Asia/Tokyo" in tokyo.text

    bad = await run(registry, "time", {"timezone": "Mars/Olympus"})
    assert not bad.ok and "Mars/Olympus" in (bad.error or "")


async def test_models_and_telemetry_use_injected_hooks(registry: ToolRegistry) -> None:
    async def list_models() -> list[dict[str, Any]]:
        return [
            {"id": "qwen/qwen3-4b-2507", "backend": "lmstudio", "state": "loaded"},
            {"id": "qwen/qwen3-14b", "backend": "lmstudio", "state": "not-loaded"},
            {"id": "deepseek-r1-distill-qwen-14b", "backend": "ollama", "loaded": True},
        ]

    async def summary() -> dict[str, Any]:
        return {"requests": 42, "errors": 3, "by_route": {"coding": 10, "tool": 7}}

    ctx = ToolContext(list_models=list_models, telemetry_summary=summary)
    res = await run(registry, "models", {}, ctx)
    assert res.ok, res.error
    assert res.data["loaded"] == 2 and res.data["matching"] == 3
    assert "qwen/qwen3-4b-2507: loaded" in res.text and "lmstudio:" in res.text

    one = await run(registry, "models", {"name": "qwen3 4b"}, ctx)
    assert [m["id"] for m in one.data["models"]] == ["qwen/qwen3-4b-2507"]
    none = await run(registry, "models", {"name": "llama 70b"}, ctx)
    assert none.ok and none.data["matching"] == 0 and "No served model" in none.text

    tel = await run(registry, "telemetry", {}, ctx)
    assert tel.ok and tel.data["requests"] == 42
    assert "requests: 42" in tel.text and "coding: 10" in tel.text


async def test_models_and_telemetry_without_hooks_say_so(registry: ToolRegistry) -> None:
    for name in ("models", "telemetry"):
        res = await run(registry, name)
        assert not res.ok
        assert "not available" in res.text


# --- registry: validation, modes, failures -----------------------------------------------


async def test_validation_errors_name_the_field(registry: ToolRegistry) -> None:
    too_many = await run(registry, "processes", {"limit": 100})
    assert not too_many.ok and "'limit'" in (too_many.error or "") and "50" in too_many.text
    bad_sort = await run(registry, "processes", {"sort_by": "disk"})
    assert "'sort_by'" in (bad_sort.error or "")
    missing = await run(registry, "read_file", {})
    assert "'path' is required" in (missing.error or "")
    extra = await run(registry, "cpu", {"verbose": True})
    assert "unexpected field 'verbose'" in (extra.error or "")


async def test_arguments_as_json_text(registry: ToolRegistry) -> None:
    res = await run(registry, "processes", '{"limit": 2, "sort_by": "memory"}')
    assert res.ok and len(res.data["processes"]) == 2
    broken = await run(registry, "processes", '{"limit": 2')
    assert not broken.ok and "not valid JSON" in (broken.error or "")
    listed = await run(registry, "processes", "[1, 2]")
    assert not listed.ok and "JSON object" in (listed.error or "")


async def test_unknown_tool(registry: ToolRegistry) -> None:
    with pytest.raises(UnknownToolError, match="known tools: battery, cpu"):
        registry.get("diskk")
    res = await run(registry, "diskk")
    assert not res.ok and "diskk" in (res.error or "") and "disk" in (res.error or "")


class Mode(Enum):
    LOCKDOWN = "lockdown"


async def test_mode_refusal(registry: ToolRegistry, sandbox: dict[str, Path]) -> None:
    ctx = confined(sandbox["root"])
    refused = await registry.invoke("read_file", {"path": "a.txt"}, ctx, "LOCKDOWN")
    assert not refused.ok and "LOCKDOWN" in (refused.error or "")
    assert "alpha" not in refused.text
    as_enum = await registry.invoke("list_directory", {}, ctx, Mode.LOCKDOWN)
    assert not as_enum.ok and "not allowed" in (as_enum.error or "")
    allowed = await registry.invoke("read_file", {"path": "a.txt"}, ctx, "degraded")
    assert allowed.ok and "alpha" in allowed.text
    assert (await registry.invoke("memory", None, ctx, "LOCKDOWN")).ok
    unknown = await registry.invoke("memory", None, ctx, "PANIC")
    assert not unknown.ok and "PANIC" in (unknown.error or "") and "NORMAL" in (unknown.error or "")


class _Boom(Tool[NoArgs]):
    name = "boom"
    description = "Always fails."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        raise RuntimeError("sensor exploded")


class _Refuses(Tool[NoArgs]):
    name = "refuses"
    description = "Fails the expected way."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        raise ToolError("nothing to report")


class _WriteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class _Writer(Tool[_WriteArgs]):
    name = "writer"
    description = "Pretends to write."
    Args = _WriteArgs
    side_effect: ClassVar[SideEffect] = SideEffect.WRITE

    async def run(self, args: _WriteArgs, ctx: ToolContext) -> ToolResult:
        return self.result({"written": args.text}, "written")


async def test_tool_exceptions_become_results() -> None:
    reg = ToolRegistry([_Boom(), _Refuses()])
    boom = await reg.invoke("boom", {}, ToolContext(), "NORMAL")
    assert not boom.ok and boom.tool == "boom"
    assert "RuntimeError" in (boom.error or "") and "sensor exploded" in (boom.error or "")
    assert boom.text.startswith("The boom tool could not answer")
    refused = await reg.invoke("refuses", {}, ToolContext(), "NORMAL")
    assert refused.error == "nothing to report"
    assert json.loads(refused.for_model()) == {"error": "nothing to report"}


async def test_write_tool_defaults_to_calm_modes() -> None:
    reg = ToolRegistry([_Writer()])
    assert reg.allowed("writer", "NORMAL") and not reg.allowed("writer", "DEGRADED")
    assert (await reg.invoke("writer", {"text": "x"}, ToolContext(), "NORMAL")).ok
    assert not (await reg.invoke("writer", {"text": "x"}, ToolContext(), "DEGRADED")).ok
    with pytest.raises(ValueError, match="already registered"):
        reg.register(_Writer())


def test_openai_schemas(registry: ToolRegistry) -> None:
    normal = registry.openai_schemas("NORMAL")
    assert {s["function"]["name"] for s in normal} == BUILTIN
    for schema in normal:
        assert schema["type"] == "function"
        fn = schema["function"]
        assert fn["description"]
        params = fn["parameters"]
        assert params["type"] == "object" and isinstance(params["properties"], dict)
        jsonschema.Draft202012Validator.check_schema(params)
        json.dumps(schema)
    by_name = {s["function"]["name"]: s["function"]["parameters"] for s in normal}
    assert by_name["read_file"]["required"] == ["path"]
    assert by_name["processes"]["properties"]["limit"]["maximum"] == 50
    jsonschema.validate({"limit": 3, "sort_by": "memory"}, by_name["processes"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"limit": 3, "bogus": 1}, by_name["processes"])

    lockdown = {s["function"]["name"] for s in registry.openai_schemas("LOCKDOWN")}
    assert lockdown == BUILTIN - {"list_directory", "read_file"}
    for mode in GOVERNANCE_MODES:
        assert registry.openai_schemas(mode.lower())
    with pytest.raises(ValueError, match="unknown governance mode"):
        registry.openai_schemas("CHAOS")


# --- files: confinement, caps, binary ----------------------------------------------------


async def test_read_and_list_inside_root(registry: ToolRegistry, sandbox: dict[str, Path]) -> None:
    ctx = confined(sandbox["root"])
    res = await run(registry, "read_file", {"path": "sub/../a.txt"}, ctx)
    assert res.ok, res.error
    assert res.data["content"] == "alpha\nbeta\n" and res.data["lines"] == 2
    assert "alpha" in res.text and not res.data["truncated"]

    listing = await run(registry, "list_directory", {}, ctx)
    assert listing.ok, listing.error
    assert [e["name"] for e in listing.data["entries"]] == ["sub", "a.txt"]
    assert "sub/" in listing.text


async def test_path_escapes_refused(
    registry: ToolRegistry, sandbox: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = sandbox["root"], sandbox["outside"]
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "door").symlink_to(outside, target_is_directory=True)
    home = sandbox["tmp"] / "home"
    home.mkdir()
    (home / "diary.txt").write_text("TOP-SECRET-CONTENT")
    monkeypatch.setenv("HOME", str(home))
    ctx = confined(root)

    attempts = [
        "../outside/secret.txt",
        "sub/../../outside/secret.txt",
        str(outside / "secret.txt"),
        "/etc/hostname",
        "~/diary.txt",
        "leak.txt",
        "door/secret.txt",
    ]
    for path in attempts:
        res = await run(registry, "read_file", {"path": path}, ctx)
        assert not res.ok, path
        # One answer for every refusal, the same as for a missing file (no existence oracle).
        assert res.error == f"{path!r} does not exist or is not open to the file tools (they " \
            "read only inside the configured roots, and never secret locations such as " \
            "~/.ssh, key files or .env files)", (path, res.error)
        assert "TOP-SECRET" not in res.text
    for path in ("..", "door", str(outside), "~"):
        res = await run(registry, "list_directory", {"path": path}, ctx)
        assert not res.ok and "secret.txt" not in res.text, path


async def test_home_and_inner_symlink_allowed_when_in_root(
    registry: ToolRegistry, sandbox: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = sandbox["root"]
    monkeypatch.setenv("HOME", str(root))
    (root / "alias.md").symlink_to(root / "sub" / "b.md")
    ctx = confined(root)
    res = await run(registry, "read_file", {"path": "~/alias.md"}, ctx)
    assert res.ok, res.error
    assert res.data["content"] == "# bee\n"
    listing = await run(registry, "list_directory", {"path": "~"}, ctx)
    assert listing.ok and listing.text.startswith("~ (")


async def test_read_cap_and_truncation(registry: ToolRegistry, sandbox: dict[str, Path]) -> None:
    root = sandbox["root"]
    (root / "big.log").write_text("x" * 1000)
    ctx = confined(root, max_read_bytes=100)
    res = await run(registry, "read_file", {"path": "big.log"}, ctx)
    assert res.ok and res.data["truncated"] and res.data["size"] == 1000
    assert res.data["content"] == "x" * 100
    assert "[truncated: showing the first 100 B of 1000 B]" in res.text
    asked_more = await run(registry, "read_file", {"path": "big.log", "max_bytes": 5000}, ctx)
    assert len(asked_more.data["content"]) == 100
    asked_less = await run(registry, "read_file", {"path": "big.log", "max_bytes": 10}, ctx)
    assert asked_less.data["content"] == "x" * 10

    # The cap lands inside a two-byte character: the half character is dropped, not an error.
    (root / "accents.txt").write_text("é" * 100, encoding="utf-8")
    cut = await run(
        registry, "read_file", {"path": "accents.txt"}, confined(root, max_read_bytes=101)
    )
    assert cut.ok and cut.data["content"] == "é" * 50


async def test_binary_and_non_files_refused(
    registry: ToolRegistry, sandbox: dict[str, Path]
) -> None:
    root = sandbox["root"]
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    os.mkfifo(root / "pipe")
    ctx = confined(root)
    binary = await run(registry, "read_file", {"path": "img.png"}, ctx)
    assert not binary.ok and "binary file" in (binary.error or "")
    latin = await run(registry, "read_file", {"path": "latin1.txt"}, ctx)
    assert not latin.ok and "not UTF-8" in (latin.error or "")
    pipe = await asyncio.wait_for(run(registry, "read_file", {"path": "pipe"}, ctx), 5)
    assert not pipe.ok and "not a regular file" in (pipe.error or "")
    folder = await run(registry, "read_file", {"path": "sub"}, ctx)
    assert not folder.ok and "list_directory" in (folder.error or "")
    missing = await run(registry, "read_file", {"path": "nope.txt"}, ctx)
    assert not missing.ok and "nope.txt" in (missing.error or "")


async def test_list_cap_and_hidden(registry: ToolRegistry, sandbox: dict[str, Path]) -> None:
    root = sandbox["root"] / "many"
    root.mkdir()
    for i in range(30):
        (root / f"f{i:02d}.txt").write_text("")
    (root / ".hidden").write_text("")
    ctx = confined(sandbox["root"], max_list_entries=10)
    res = await run(registry, "list_directory", {"path": "many"}, ctx)
    assert res.ok and len(res.data["entries"]) == 10
    assert res.data["total_entries"] == 30 and res.data["truncated"]
    assert "... and 20 more (limit 10)" in res.text and "1 hidden not shown" in res.text
    shown = await run(registry, "list_directory", {"path": "many", "show_hidden": True}, ctx)
    assert shown.data["total_entries"] == 31
    assert shown.data["entries"][0]["name"] == ".hidden"


# --- arguments from the person's words ---------------------------------------------------


def _dev_tool_rows() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in DEV_DATA.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["route"] == "tool"]


def test_dev_tool_queries_give_valid_arguments(registry: ToolRegistry) -> None:
    rows = _dev_tool_rows()
    assert len(rows) == 60 and {r["tool_hint"] for r in rows} == BUILTIN
    for row in rows:
        args = arguments_from_query(row["tool_hint"], row["query"])
        registry.get(row["tool_hint"]).Args.model_validate(args)


@pytest.mark.parametrize(
    ("tool", "query", "expected"),
    [
        ("list_directory", "list ~/projects", {"path": "~/projects"}),
        ("list_directory", "ls -la /tmp", {"path": "/tmp", "show_hidden": True}),
        ("list_directory", "ls", {}),
        ("list_directory", "what's inside the logs folder", {"path": "logs"}),
        ("list_directory", "what is in my downloads", {"path": "~/Downloads"}),
        ("read_file", "show me config/router.yaml", {"path": "config/router.yaml"}),
        ("read_file", "cat README.md", {"path": "README.md"}),
        ("read_file", "let me see what's in logs/latest.json.", {"path": "logs/latest.json"}),
        ("read_file", 'open "my notes.txt"', {"path": "my notes.txt"}),
        ("read_file", "cat Makefile", {"path": "Makefile"}),
        ("processes", "top 3 processes by memory", {"limit": 3, "sort_by": "memory"}),
        ("processes", "top five processes", {"limit": 5}),
        ("processes", "top 500 processes", {"limit": 50}),
        ("processes", "what process is using the most CPU", {}),
        ("processes", "is LM Studio still running?", {"name": "LM Studio"}),
        (
            "processes",
            "how much memory is the python process using",
            {"name": "python", "sort_by": "memory"},
        ),
        ("disk", "how much free space on /home", {"path": "/home"}),
        ("disk", "space left on the external SSD at /Volumes/T7", {"path": "/Volumes/T7"}),
        ("disk", "df -h", {"all_partitions": True}),
        ("disk", "am i about to run out of disk", {}),
        ("network", "what's my IPv6 address on en0", {"interface": "en0"}),
        ("time", "what time is it in Tokyo?", {"timezone": "Asia/Tokyo"}),
        ("time", "what's the date today", {}),
        ("models", "is qwen3 4b loaded", {"name": "qwen3 4b"}),
        ("cpu", "how loaded is my processor", {}),
    ],
)
def test_arguments_from_query(tool: str, query: str, expected: dict[str, Any]) -> None:
    assert arguments_from_query(tool, query) == expected


def test_arguments_from_query_unknown_tool() -> None:
    with pytest.raises(ValueError, match="built-in tools: battery, cpu"):
        arguments_from_query("weather", "is it raining")


async def test_query_to_reply_end_to_end(registry: ToolRegistry, sandbox: dict[str, Path]) -> None:
    ctx = confined(sandbox["root"])
    args = arguments_from_query("read_file", "cat sub/b.md")
    res = await registry.invoke("read_file", args, ctx, "NORMAL")
    assert res.ok and "# bee" in res.text
    missing = await registry.invoke(
        "read_file", arguments_from_query("read_file", "show me that"), ctx, "NORMAL"
    )
    assert not missing.ok and "'path' is required" in (missing.error or "")
