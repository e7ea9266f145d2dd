"""The governor: sensors -> homeostasis -> effectors, each change recorded as an event with the
readings that caused it. One per long-running process (the server); requests take its `mode`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from localroute.client.gates import Gate
from localroute.client.llm_client import LLMClient
from localroute.config.modes import Mode, ModesConfig
from localroute.governance import events
from localroute.governance.effectors import Effectors, GateLimiter, RequestRefused
from localroute.governance.homeostasis import Homeostasis, Override, Step, Transition
from localroute.governance.sensors import Reading, SensorMonitor, Source
from localroute.governance.state_files import OverrideStore, RuntimeStore

EventSink = Callable[[str, dict[str, Any]], None]
log = structlog.get_logger("localroute.governance")


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
        sink: EventSink | None = None,
        interval_s: float | None = None,
        extra_snapshot: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.modes = modes
        self.settings = modes.homeostasis
        self.clock = clock
        self.override_store = override_store
        self.runtime_store = runtime_store
        self.sink = sink
        self.extra_snapshot = extra_snapshot
        override = override_store.load() if override_store else None
        self._override_mtime = override_store.mtime() if override_store else None
        self.homeostasis = Homeostasis(self.settings, initial=modes.default_mode, clock=clock,
                                       override=override)
        self.limiter = GateLimiter(gates) if gates else None
        self.effectors = Effectors(self.settings, modes, self.limiter, roles)
        self.monitor = SensorMonitor(sources, interval_s or self.settings.interval_s,
                                     on_reading=self.on_reading, clock=clock)
        self.events: deque[dict[str, Any]] = deque(maxlen=500)

    @property
    def mode(self) -> Mode:
        return self.homeostasis.mode

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.mode != Mode.NORMAL:
            self._apply(self.mode, {})
        if self.settings.enabled:
            self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        if self.limiter is not None:
            await self.limiter.restore()

    # ---- one reading ---------------------------------------------------------------------

    async def on_reading(self, reading: Reading) -> Step:
        self._sync_override()
        step = self.homeostasis.observe(reading.values, reading.at)
        for state in step.triggered:
            self.record(events.RULE_TRIGGERED, rule=state.rule.name, cause=state.describe(),
                        readings=reading.values)
        for state in step.cleared:
            self.record(events.RULE_CLEARED, rule=state.rule.name, cause=state.describe_clear(),
                        readings=reading.values)
        if step.blocked:
            self.record(events.MODE_BLOCKED, cause=step.blocked, readings=reading.values)
        if step.transition is not None:
            self._transition(step.transition)
        if self.runtime_store is not None:
            self.runtime_store.publish(self.snapshot())
        return step

    def _transition(self, t: Transition) -> None:
        self.record(events.MODE_TRANSITION, **t.as_dict())
        self._apply(t.to_mode, t.readings, t.cause)

    def _apply(self, mode: Mode, readings: dict[str, float | None], cause: str = "") -> None:
        for name, data in self.effectors.apply(mode):
            self.record(name, cause=cause, readings=readings, **data)

    def record(self, name: str, **data: Any) -> None:
        event = {"event": name, "at": self.clock(), "wall_time": time.time(),
                 "mode": self.mode.value, **data}
        self.events.append(event)
        log.info(name, **{k: v for k, v in event.items() if k != "event"})
        if self.sink is not None:
            self.sink(name, event)

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
        transition = self.homeostasis.set_override(override, force=force)
        if persist and self.override_store is not None:
            self.override_store.save(override)
            self._override_mtime = self.override_store.mtime()
        self.record(events.MODE_OVERRIDE_SET, to=mode.value, reason=reason)
        if transition is not None:
            self._transition(transition)

    def clear_override(self, *, persist: bool = True) -> None:
        if self.homeostasis.override is None:
            return
        self.homeostasis.clear_override()
        if persist and self.override_store is not None:
            self.override_store.clear()
            self._override_mtime = None
        self.record(events.MODE_OVERRIDE_CLEARED)

    def admit(self, *, prompt_tokens: int | None = None, role: str | None = None) -> None:
        """Raise RequestRefused (and record it) when the current mode refuses this request."""
        try:
            self.effectors.check(self.mode, self._why(), prompt_tokens=prompt_tokens, role=role)
        except RequestRefused as exc:
            self.record(events.REQUEST_REFUSED, reason=str(exc), role=role,
                        prompt_tokens=prompt_tokens)
            raise

    def _why(self) -> str:
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
            "cause": self._why(),
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
    telemetry: Source | None = None,
    publish: bool = True,
    sink: EventSink | None = None,
) -> Governor:
    """The standard governor for a process serving `client`: machine sensors, the client's
    gates, backend health at its slower interval, and telemetry's error rate / latency."""
    from localroute.backends.health import role_statuses
    from localroute.governance.sensors import BackendHealthSensor, GateSensor, SystemSensors

    async def down() -> int:
        statuses = await role_statuses(client.profile)
        return len({(s.backend, s.endpoint) for s in statuses if not s.reachable})

    sources: list[Source] = [
        SystemSensors(),
        GateSensor(client.gates.snapshot),
        BackendHealthSensor(down, modes.homeostasis.health_interval_s),
    ]
    if telemetry is not None:
        sources.append(telemetry)
    return Governor(
        modes, sources=sources, gates=client_gates(client), roles=tuple(client.profile.roles),
        override_store=OverrideStore(), runtime_store=RuntimeStore() if publish else None,
        sink=sink, extra_snapshot=lambda: {"gate_state": client.gates.snapshot()},
    )
