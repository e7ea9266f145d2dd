"""The governor: sensors -> homeostasis -> effectors. One per long-running process (the server);
requests take its `mode` and pass its `admit()`.

Every rule trigger and clear, mode change, override, effector and refusal becomes a telemetry
event (names and fields in `localroute/telemetry/events.py`, the one schema) carrying the sensor
readings that caused it: kept in `Governor.events` for the status snapshot, logged with
structlog, and emitted to the telemetry store when one is given.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from localroute.client.gates import Gate
from localroute.client.llm_client import LLMClient
from localroute.config.modes import Mode, ModesConfig
from localroute.config.schema import ResolvedRole
from localroute.governance.effectors import Effectors, GateLimiter, RequestRefused
from localroute.governance.homeostasis import Homeostasis, Override, Step, Transition
from localroute.governance.sensors import Reading, SensorMonitor, Source
from localroute.governance.state_files import OverrideStore, RuntimeStore
from localroute.telemetry import events as ev
from localroute.telemetry.events import EventRow

log = structlog.get_logger("localroute.governance")
RECENT_EVENTS = 500


class EventSink(Protocol):
    """Where governance events go: `localroute.telemetry.emitter.Telemetry` in a real process."""

    def emit(self, row: EventRow) -> None: ...


class Governor:
    def __init__(
        self,
        modes: ModesConfig,
        *,
        sources: list[Source],
        gates: list[Gate] | None = None,
        roles: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        override_store: OverrideStore | None = None,
        runtime_store: RuntimeStore | None = None,
        telemetry: EventSink | None = None,
        interval_s: float | None = None,
        extra_snapshot: Callable[[], dict[str, Any]] | None = None,
        override: Override | None = None,
    ) -> None:
        """`override` pins the mode for this process only (`serve --mode`); without it the
        persisted override of `override_store` (`localroute mode set`) applies."""
        self.modes = modes
        self.settings = modes.homeostasis
        self.clock = clock
        self.override_store = override_store
        self.runtime_store = runtime_store
        self.telemetry = telemetry
        self.extra_snapshot = extra_snapshot
        if override is None and override_store is not None:
            override = override_store.load()
        self._override_mtime = override_store.mtime() if override_store else None
        self.homeostasis = Homeostasis(self.settings, initial=modes.default_mode, clock=clock,
                                       override=override)
        self.limiter = GateLimiter(gates) if gates else None
        self.effectors = Effectors(self.settings, modes, self.limiter, roles)
        # With homeostasis off the monitor still ticks: it picks up `localroute mode set` from
        # other processes and publishes the snapshot, but samples nothing.
        self.monitor = SensorMonitor(sources if self.settings.enabled else [],
                                     interval_s or self.settings.interval_s,
                                     on_reading=self.on_reading, clock=clock)
        self.events: deque[EventRow] = deque(maxlen=RECENT_EVENTS)
        self._blocked: str | None = None

    @property
    def mode(self) -> Mode:
        return self.homeostasis.mode

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        default = self.modes.default_mode
        if self.mode != default:  # started pinned by an override: that is a change too
            self.record(ev.mode_change(old=default.value, new=self.mode.value,
                                       reason=self.cause, manual=True, readings={}))
        if self.mode != Mode.NORMAL:
            self._apply(self.mode, {}, self.cause)
        self.publish()
        self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        if self.limiter is not None:
            await self.limiter.restore()
        if self.runtime_store is not None:
            self.runtime_store.clear()

    # ---- one reading ---------------------------------------------------------------------

    async def on_reading(self, reading: Reading) -> Step:
        self._sync_override()
        if not self.settings.enabled:
            self.publish()
            return Step()
        step = self.homeostasis.observe(reading.values, reading.at)
        before = (step.transition.from_mode if step.transition else self.mode).value
        for state, change, cause in (
                [(s, "triggered", s.describe()) for s in step.triggered]
                + [(s, "cleared", s.describe_clear()) for s in step.cleared]):
            self.record(ev.governance_rule(
                rule=state.rule.name, change=change, sensor=state.rule.sensor,
                value=state.value, cause=cause, mode=before, readings=reading.values))
        # A blocked change is seen on every sample until it resolves: record it once.
        if step.blocked and step.blocked != self._blocked:
            self.record(ev.mode_blocked(mode=self.mode.value,
                                        wanted=self.homeostasis.wanted().value,
                                        reason=step.blocked, readings=reading.values))
        self._blocked = step.blocked
        if step.transition is not None:
            self._transition(step.transition)
        self.publish()
        return step

    def _transition(self, t: Transition) -> None:
        self.record(ev.mode_change(old=t.from_mode.value, new=t.to_mode.value, reason=t.cause,
                                   manual=t.manual, readings=t.readings))
        self._apply(t.to_mode, t.readings, t.cause)

    def _apply(self, mode: Mode, readings: dict[str, float | None], cause: str) -> None:
        for effector, detail in self.effectors.apply(mode):
            self.record(ev.governance_effector(effector=effector, mode=mode.value, cause=cause,
                                               readings=readings, detail=detail))

    def record(self, row: EventRow) -> None:
        self.events.append(row)
        log.info(row["event"], **row["data"])
        if self.telemetry is not None:
            self.telemetry.emit(row)

    def publish(self) -> None:
        """Write the snapshot for `localroute status` in other processes."""
        if self.runtime_store is not None:
            self.runtime_store.publish(self.snapshot())

    # ---- override and admission ----------------------------------------------------------

    def _sync_override(self) -> None:
        """Pick up `localroute mode set` from another process (the override file changed)."""
        if self.override_store is None:
            return
        mtime = self.override_store.mtime()
        if mtime == self._override_mtime:
            return
        self._override_mtime = mtime
        override = self.override_store.load()
        if override is None:
            self.clear_override(persist=False)
        else:
            self.set_override(override.mode, override.reason, force=True, persist=False)

    def set_override(self, mode: Mode, reason: str, *, force: bool = False,
                     persist: bool = True) -> None:
        override = Override(mode=mode, reason=reason, set_at=time.time())
        before = self.mode
        transition = self.homeostasis.set_override(override, force=force)
        if persist and self.override_store is not None:
            self.override_store.save(override)
            self._override_mtime = self.override_store.mtime()
        self.record(ev.mode_override(action="set", mode=before.value, target=mode.value,
                                     reason=reason))
        if transition is not None:
            self._transition(transition)

    def clear_override(self, *, persist: bool = True) -> None:
        if self.homeostasis.override is None:
            return
        self.homeostasis.clear_override()
        if persist and self.override_store is not None:
            self.override_store.clear()
            self._override_mtime = None
        self.record(ev.mode_override(action="cleared", mode=self.mode.value, target=None,
                                     reason=None))

    def admit(self, *, prompt_tokens: int | None = None, role: str | None = None,
              trace_id: str | None = None) -> None:
        """Raise RequestRefused (and record it) when the current mode refuses this request."""
        try:
            self.effectors.check(self.mode, self.cause, prompt_tokens=prompt_tokens, role=role)
        except RequestRefused as exc:
            self.record(ev.governance_refusal(
                mode=self.mode.value, reason=str(exc), role=role, prompt_tokens=prompt_tokens,
                readings=dict(self.homeostasis.last_values), trace_id=trace_id))
            raise

    @property
    def cause(self) -> str:
        """Why the mode is what it is: the override's reason, or the last transition's cause."""
        if self.homeostasis.override is not None:
            return f"set by hand: {self.homeostasis.override.reason}"
        last = self.homeostasis.history[-1] if self.homeostasis.history else None
        return last.cause if last is not None else ""

    # ---- status --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        h = self.homeostasis
        override = h.override
        out: dict[str, Any] = {
            "mode": h.mode.value,
            "since": h.entered_at,
            "cause": self.cause,
            "override": None if override is None else
            {"mode": override.mode.value, "reason": override.reason, "set_at": override.set_at},
            "sensors": dict(h.last_values),
            "rules": [{"name": s.rule.name, "sensor": s.rule.sensor, "active": s.active,
                       "value": s.value, "mode": s.rule.mode.value} for s in h.rules],
            "gates": {},
            "events": list(self.events)[-20:],
        }
        if self.limiter is not None:
            out["gates"] = {name: {"configured": cap, "held_by_governor": held}
                            for (name, cap), held in zip(self.limiter.original.items(),
                                                         self.limiter.held().values(),
                                                         strict=True)}
        if self.extra_snapshot is not None:
            out.update(self.extra_snapshot())
        return out


def client_gates(client: LLMClient) -> list[Gate]:
    """Every distinct gate of a client (instance gates and sharing roles' own gates)."""
    seen: dict[str, Gate] = {}
    for role in client.profile.roles.values():
        for gate in client.gates.gates_for(role):
            seen.setdefault(gate.name, gate)
    return list(seen.values())


def build_governor(
    client: LLMClient,
    modes: ModesConfig,
    *,
    requests: Source | None = None,
    telemetry: EventSink | None = None,
    publish: bool = True,
    override: Override | None = None,
    extra_snapshot: Callable[[], dict[str, Any]] | None = None,
) -> Governor:
    """The standard governor for a process serving `client`: machine sensors, the client's
    gates (queue depth, in flight), backend health at its slower interval, and `requests`
    (error rate / p95 latency, e.g. a `RequestWindow`). Events go to `telemetry`; with
    `publish` the snapshot (plus `extra_snapshot()`) goes to the runtime file for `status`."""
    from localroute.backends.liveness import backend_health
    from localroute.governance.sensors import BackendHealthSensor, GateSensor, SystemSensors

    every_s = modes.homeostasis.health_interval_s

    def busy(role: ResolvedRole) -> bool:
        return any(g.in_flight for g in client.gates.gates_for(role))

    async def down() -> int:
        # The client's own pool, so its traffic counts: a backend busy with our calls (a gate
        # slot held, or a request in flight) or that answered one within the interval is not
        # probed (backends/liveness.py); llama.cpp with one slot answers nothing else meanwhile.
        judged = await backend_health(client.pool, client.profile, within_s=every_s,
                                      busy=busy)
        for h in judged:
            if not h.alive:
                log.info("backend.down", backend=h.backend, reason=h.reason, probed=h.probed)
        return sum(1 for h in judged if not h.alive)

    sources: list[Source] = [
        SystemSensors(),
        GateSensor(client.gates.snapshot),
        BackendHealthSensor(down, every_s),
    ]
    if requests is not None:
        sources.append(requests)

    def snapshot() -> dict[str, Any]:
        return {"gate_state": client.gates.snapshot(),
                **(extra_snapshot() if extra_snapshot is not None else {})}

    return Governor(
        modes, sources=sources, gates=client_gates(client), roles=tuple(client.profile.roles),
        override_store=OverrideStore(), runtime_store=RuntimeStore() if publish else None,
        telemetry=telemetry, extra_snapshot=snapshot, override=override,
    )
