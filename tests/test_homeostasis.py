"""Homeostasis on recorded sensor series: durations, hysteresis, allowed edges, override."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from localroute.config.loader import ConfigError
from localroute.config.modes import HomeostasisSettings, Mode, ThresholdRule, load_modes
from localroute.governance import events
from localroute.governance.effectors import Effectors, RequestRefused
from localroute.governance.governor import Governor
from localroute.governance.homeostasis import ForbiddenTransition, Homeostasis, Override
from localroute.governance.sensors import Reading
from localroute.governance.state_files import OverrideStore


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


async def test_governor_records_events_with_readings_and_persists_override(
        tmp_path: Path) -> None:
    clock = Clock()
    modes = load_modes().model_copy(update={"homeostasis": settings(
        refuse_prompt_tokens_above={Mode.ALERT: 100})})
    store = OverrideStore(tmp_path / "override.json")
    gov = Governor(modes, sources=[], clock=clock, override_store=store,
                   roles=("router", "coding"))
    for at in (0.0, 30.0):
        clock.t = at
        await gov.on_reading(Reading(at, {"cpu_percent": 97.0}))
    assert gov.mode == Mode.ALERT
    names = [e["event"] for e in gov.events]
    assert names[:2] == [events.RULE_TRIGGERED, events.MODE_TRANSITION]
    transition = gov.events[1]
    assert transition["readings"] == {"cpu_percent": 97.0} and transition["to"] == "ALERT"
    roles = next(e for e in gov.events if e["event"] == events.EFFECTOR_ROLES)
    assert roles["downgraded_or_refused"] == ["coding"] and roles["readings"]["cpu_percent"] == 97
    with pytest.raises(RequestRefused, match=r"mode ALERT \(cpu_high: .*over 100 prompt tokens"):
        gov.admit(prompt_tokens=500)
    with pytest.raises(RequestRefused, match="heavy role 'reasoning_heavy'"):
        gov.admit(role="reasoning_heavy")
    assert gov.events[-1]["event"] == events.REQUEST_REFUSED
    gov.set_override(Mode.LOCKDOWN, "incident 42")
    assert store.load() == Override(Mode.LOCKDOWN, "incident 42", store.load().set_at)  # type: ignore[union-attr]
    # A new governor (another process) starts in the persisted override.
    again = Governor(modes, sources=[], clock=clock, override_store=store)
    assert again.mode == Mode.LOCKDOWN and again.snapshot()["override"]["reason"] == "incident 42"


def test_effectors_admit_normal_requests() -> None:
    eff = Effectors(settings(refuse_prompt_tokens_above={Mode.ALERT: 100}), load_modes())
    eff.check(Mode.NORMAL, "", prompt_tokens=10_000, role="reasoning_heavy")  # no refusal
    with pytest.raises(RequestRefused):
        eff.check(Mode.ALERT, "", prompt_tokens=101)
