"""Homeostasis on recorded sensor series: durations, hysteresis, allowed edges, override."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from localroute.client.llm_client import LLMClient
from localroute.config.loader import ConfigError
from localroute.config.modes import HomeostasisSettings, Mode, ThresholdRule, load_modes
from localroute.config.telemetry import StoreSettings
from localroute.governance.effectors import Effectors, RequestRefused
from localroute.governance.governor import Governor, build_governor
from localroute.governance.homeostasis import ForbiddenTransition, Homeostasis, Override
from localroute.governance.sensors import BackendHealthSensor, Reading
from localroute.governance.state_files import OverrideStore
from localroute.telemetry.emitter import Telemetry
from localroute.telemetry.events import EventName
from tests.conftest import make_profile, server_role
from tests.support.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def settings(**kw: object) -> HomeostasisSettings:
    rules = (
        ThresholdRule(name="cpu_high", sensor="cpu_percent", above=85, for_s=30, clear_below=70,
                      clear_for_s=30, mode=Mode.ALERT),
        ThresholdRule(name="backend_down", sensor="backends_down", above=0, for_s=10,
                      clear_for_s=20, mode=Mode.DEGRADED),
    )
    return HomeostasisSettings(rules=rules, min_dwell_s={Mode.RECOVERY: 60}, **kw)  # type: ignore[arg-type]


def replay(h: Homeostasis,
           series: Sequence[tuple[float, Mapping[str, float | None]]]) -> list[Mode]:
    """Mode after each recorded sample."""
    out = []
    for at, values in series:
        h.observe(values, now=at)
        out.append(h.mode)
    return out


def test_cpu_must_stay_high_for_the_whole_duration() -> None:
    h = Homeostasis(settings(), clock=Clock())
    # High at 0-20 s, a dip at 25 s restarts the clock, high again 30-60 s.
    series = [(t, {"cpu_percent": 95.0}) for t in (0, 10, 20)] + [(25, {"cpu_percent": 50.0})]
    series += [(t, {"cpu_percent": 95.0}) for t in (30, 40, 50, 59, 60)]
    modes = replay(h, series)
    assert modes[:8] == [Mode.NORMAL] * 8  # 20 s high, dip, then 29 s high: not yet
    assert modes[8] == Mode.ALERT  # 30 s continuously above 85
    assert h.history[-1].readings == {"cpu_percent": 95.0}
    assert "cpu_high: cpu_percent 95 > 85 for 30 s" in h.history[-1].cause


def test_hysteresis_recovery_needs_the_clear_threshold_for_its_duration() -> None:
    h = Homeostasis(settings(), clock=Clock())
    replay(h, [(0, {"cpu_percent": 90.0}), (30, {"cpu_percent": 90.0})])
    assert h.mode == Mode.ALERT
    # 80 % is below the trigger (85) but above the clear threshold (70): stays ALERT.
    assert replay(h, [(t, {"cpu_percent": 80.0}) for t in range(40, 200, 20)])[-1] == Mode.ALERT
    # Below 70 for 29 s: still ALERT; at 30 s: back to NORMAL (ALERT -> NORMAL is allowed).
    modes = replay(h, [(200, {"cpu_percent": 60.0}), (229, {"cpu_percent": 60.0}),
                       (230, {"cpu_percent": 60.0})])
    assert modes == [Mode.ALERT, Mode.ALERT, Mode.NORMAL]
    assert "cpu_high cleared" in h.history[-1].cause


def test_degraded_recovers_only_through_recovery_after_its_dwell() -> None:
    h = Homeostasis(settings(), clock=Clock())
    modes = replay(h, [(0, {"backends_down": 1.0}), (10, {"backends_down": 1.0})])
    assert modes == [Mode.NORMAL, Mode.DEGRADED]
    # Server back: clears after 20 s, then DEGRADED -> RECOVERY (never straight to NORMAL).
    modes = replay(h, [(20, {"backends_down": 0.0}), (40, {"backends_down": 0.0})])
    assert modes == [Mode.DEGRADED, Mode.RECOVERY]
    # RECOVERY's minimum dwell is 60 s before stepping down to NORMAL.
    modes = replay(h, [(70, {"backends_down": 0.0}), (100, {"backends_down": 0.0})])
    assert modes == [Mode.RECOVERY, Mode.NORMAL]
    assert [(t.from_mode, t.to_mode) for t in h.history] == [
        (Mode.NORMAL, Mode.DEGRADED), (Mode.DEGRADED, Mode.RECOVERY),
        (Mode.RECOVERY, Mode.NORMAL)]


def test_most_severe_rule_wins_and_missing_readings_prove_nothing() -> None:
    h = Homeostasis(settings(), clock=Clock())
    replay(h, [(0, {"cpu_percent": 99.0, "backends_down": 1.0}),
               (10, {"cpu_percent": 99.0, "backends_down": 1.0})])
    assert h.mode == Mode.DEGRADED
    # The sensor stops answering: no progress toward clearing.
    replay(h, [(t, {"cpu_percent": None, "backends_down": None}) for t in range(20, 300, 20)])
    assert h.mode == Mode.DEGRADED


def test_forbidden_edges_are_refused_for_manual_changes() -> None:
    h = Homeostasis(settings(), clock=Clock())
    replay(h, [(0, {"backends_down": 1.0}), (10, {"backends_down": 1.0})])
    with pytest.raises(ForbiddenTransition, match=r"DEGRADED -> NORMAL .*from DEGRADED: "
                                                  r"RECOVERY, LOCKDOWN"):
        h.set_override(Override(Mode.NORMAL, "try", 0.0))
    assert h.mode == Mode.DEGRADED
    forced = h.set_override(Override(Mode.NORMAL, "operator knows", 0.0), force=True)
    assert forced is not None and forced.manual and forced.to_mode == Mode.NORMAL
    assert h.history[-1] is forced


def test_automatic_changes_never_take_a_forbidden_edge() -> None:
    edges = {Mode.NORMAL: (Mode.ALERT,), Mode.ALERT: (Mode.NORMAL,), Mode.DEGRADED: (),
             Mode.RECOVERY: (), Mode.LOCKDOWN: ()}
    h = Homeostasis(settings(edges=edges), clock=Clock())
    step = None
    for at in (0, 10, 20):
        step = h.observe({"backends_down": 2.0}, now=at)
    assert h.mode == Mode.NORMAL  # DEGRADED is unreachable from NORMAL in this graph
    assert step is not None and step.blocked is not None and "toward DEGRADED" in step.blocked


def test_override_pins_the_mode_until_cleared() -> None:
    h = Homeostasis(settings(), clock=Clock())
    h.set_override(Override(Mode.ALERT, "maintenance", 0.0))
    replay(h, [(t, {"cpu_percent": 10.0}) for t in range(0, 300, 30)])
    assert h.mode == Mode.ALERT
    h.clear_override()
    step = h.observe({"cpu_percent": 10.0}, now=301)
    assert step.transition is not None and step.transition.to_mode == Mode.NORMAL


def test_rule_schema_errors_name_the_problem(tmp_path: Path) -> None:
    text = Path(load_modes.__globals__["PACKAGED_MODES"]).read_text()
    bad = tmp_path / "modes.yaml"
    bad.write_text(text.replace("sensor: cpu_percent", "sensor: cpu_pct"))
    with pytest.raises(ConfigError, match="unknown sensor 'cpu_pct'"):
        load_modes(bad)
    with pytest.raises(ValueError, match="exactly one of 'above' or 'below'"):
        ThresholdRule(name="x", sensor="cpu_percent", mode=Mode.ALERT)
    with pytest.raises(ValueError, match="clear_below' must be <= above"):
        ThresholdRule(name="x", sensor="cpu_percent", above=50, clear_below=60, mode=Mode.ALERT)


async def test_governor_records_events_with_readings_in_the_telemetry_store(
        tmp_path: Path) -> None:
    clock = Clock()
    modes = load_modes().model_copy(update={"homeostasis": settings(
        refuse_prompt_tokens_above={Mode.ALERT: 100})})
    store = OverrideStore(tmp_path / "override.json")
    telemetry = Telemetry(StoreSettings(url=f"sqlite:///{tmp_path / 'events.db'}"))
    try:
        gov = Governor(modes, sources=[], clock=clock, override_store=store,
                       roles=("router", "coding"), telemetry=telemetry)
        for at in (0.0, 30.0):
            clock.t = at
            await gov.on_reading(Reading(at, {"cpu_percent": 97.0}))
        assert gov.mode == Mode.ALERT
        with pytest.raises(RequestRefused,
                           match=r"mode ALERT \(cpu_high: .*over 100 prompt tokens"):
            gov.admit(prompt_tokens=500, trace_id="ab" * 16)
        with pytest.raises(RequestRefused, match="heavy role 'reasoning_heavy'"):
            gov.admit(role="reasoning_heavy")
        gov.set_override(Mode.LOCKDOWN, "incident 42")
        assert telemetry.flush()
        rows = telemetry.store.select()
    finally:
        telemetry.close()
    # Every event is in the store, under the schema's names, in the order it happened.
    assert [r["event"] for r in rows] == [
        EventName.GOVERNANCE_RULE, EventName.MODE_CHANGE,
        EventName.GOVERNANCE_EFFECTOR, EventName.GOVERNANCE_EFFECTOR,
        EventName.GOVERNANCE_REFUSAL, EventName.GOVERNANCE_REFUSAL,
        EventName.MODE_OVERRIDE, EventName.MODE_CHANGE,
        EventName.GOVERNANCE_EFFECTOR, EventName.GOVERNANCE_EFFECTOR]
    assert [r["event"] for r in rows] == [e["event"] for e in gov.events]
    rule, change = rows[0]["data"], rows[1]["data"]
    assert (rule["rule"], rule["change"], rule["readings"]) == (
        "cpu_high", "triggered", {"cpu_percent": 97.0})
    assert (change["from"], change["to"], change["manual"]) == ("NORMAL", "ALERT", False)
    assert change["readings"] == {"cpu_percent": 97.0} and "cpu_high" in change["reason"]
    roles = rows[2]["data"]
    assert roles["effector"] == "roles" and roles["downgraded_or_refused"] == ["coding"]
    assert roles["readings"]["cpu_percent"] == 97 and roles["mode"] == "ALERT"
    assert rows[3]["data"]["prompt_tokens_above"] == 100
    refused = rows[4]
    assert refused["ok"] is False and refused["trace_id"] == "ab" * 16
    assert refused["data"]["prompt_tokens"] == 500
    assert refused["data"]["readings"] == {"cpu_percent": 97.0}
    assert rows[5]["role"] == "reasoning_heavy"
    assert rows[6]["data"] == {"action": "set", "mode": "ALERT", "target": "LOCKDOWN",
                               "reason": "incident 42"}
    manual = rows[7]["data"]
    assert (manual["from"], manual["to"], manual["manual"]) == ("ALERT", "LOCKDOWN", True)
    assert manual["reason"] == "manual: incident 42"
    assert store.load() == Override(Mode.LOCKDOWN, "incident 42", store.load().set_at)  # type: ignore[union-attr]
    # A new governor (another process) starts in the persisted override and says so.
    again = Governor(modes, sources=[], clock=clock, override_store=store)
    assert again.mode == Mode.LOCKDOWN and again.snapshot()["override"]["reason"] == "incident 42"
    await again.start()
    await again.stop()
    started = again.events[0]
    assert started["event"] == EventName.MODE_CHANGE
    assert (started["data"]["from"], started["data"]["to"]) == ("NORMAL", "LOCKDOWN")


async def test_a_blocked_change_is_recorded_once_and_overrides_sync_from_the_file(
        tmp_path: Path) -> None:
    clock = Clock()
    edges = {Mode.NORMAL: (Mode.ALERT,), Mode.ALERT: (Mode.NORMAL,), Mode.DEGRADED: (),
             Mode.RECOVERY: (), Mode.LOCKDOWN: ()}
    modes = load_modes().model_copy(update={"homeostasis": settings(edges=edges)})
    store = OverrideStore(tmp_path / "override.json")
    gov = Governor(modes, sources=[], clock=clock, override_store=store)
    for at in (0.0, 10.0, 20.0, 30.0):
        await gov.on_reading(Reading(at, {"backends_down": 1.0}))
    blocked = [e for e in gov.events if e["event"] == EventName.MODE_BLOCKED]
    assert len(blocked) == 1 and blocked[0]["data"]["wanted"] == "DEGRADED"
    # `localroute mode set` in another process writes the file; the next reading applies it.
    store.save(Override(Mode.ALERT, "from the CLI", 1.0))
    await gov.on_reading(Reading(40.0, {"backends_down": 1.0}))
    assert gov.mode == Mode.ALERT and gov.cause == "set by hand: from the CLI"
    store.clear()
    await gov.on_reading(Reading(50.0, {"backends_down": 0.0}))
    cleared = [e for e in gov.events if e["event"] == EventName.MODE_OVERRIDE]
    assert [e["data"]["action"] for e in cleared] == ["set", "cleared"]
    assert gov.homeostasis.override is None


def test_effectors_admit_normal_requests() -> None:
    eff = Effectors(settings(refuse_prompt_tokens_above={Mode.ALERT: 100}), load_modes())
    eff.check(Mode.NORMAL, "", prompt_tokens=10_000, role="reasoning_heavy")  # no refusal
    with pytest.raises(RequestRefused):
        eff.check(Mode.ALERT, "", prompt_tokens=101)


async def test_a_backend_busy_with_our_calls_is_not_counted_down(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                ) -> None:
    monkeypatch.setenv("LOCALROUTE_STATE_DIR", str(tmp_path))
    dead = f"http://127.0.0.1:{free_port()}/v1"  # misses every probe, as a busy server does
    client = LLMClient(make_profile({"router": server_role(dead)}))
    gov = build_governor(client, load_modes(), publish=False)
    (health,) = [s for s in gov.monitor.sources if isinstance(s, BackendHealthSensor)]
    health.every_s = 0.0  # probe on every sample
    try:
        assert await health() == {"backends_down": 1.0}
        async with client.gates.slot(client.profile.role("router")):
            assert await health() == {"backends_down": 0.0}  # one of our calls holds it
        assert await health() == {"backends_down": 1.0}
    finally:
        await client.aclose()
