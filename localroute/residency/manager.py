"""The residency manager: one per profile and process, between the client and the backends.

The client asks it for a ready instance of a role before every call (`enter(role)`) and gives
it back when the call ends. It runs the scheduler (residency/scheduler.py, the decision tree)
on the event loop: every event -- a request, a release, a finished load or unload, a timer --
is one synchronous `_kick()` that feeds the scheduler and starts what it says; the slow work
(starting a server, loading, unloading) runs in tasks that report back with another kick. It
never awaits between reading and changing the scheduler's state, so that state has one writer.

It sizes instances with the planner (resources/), and loads and unloads them through each
backend's control plane (backends/control.py, backends/managed.py). Routing and status read its
snapshot (residency/view.py); they never change residency.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psutil
import structlog

from localroute.backends.control import InstanceControl, StaticControl
from localroute.backends.loading import control_for
from localroute.backends.managed import ManagedLlamaCpp
from localroute.backends.pool import BackendPool
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.residency.scheduler import (
    Action,
    Fail,
    Grant,
    InstanceSpec,
    Load,
    Policy,
    Scheduler,
    State,
    Unload,
)
from localroute.residency.tickets import Lease, ResidencyEvent, Ticket, wait_for_memory
from localroute.resources.planner import GIB
from localroute.resources.residency_plan import ResidencyPlan, check_residency
from localroute.types import LLMLoadError, LLMLoadTimeout

log = structlog.get_logger("localroute.residency")
PROBE_INTERVAL_S = 15.0  # how often ready instances on LM Studio / Ollama are checked
MAX_TIMER_S = 5.0


class Residency:
    def __init__(self, profile: ResolvedProfile, pool: BackendPool, *,
                 policy: Policy = Policy.cost, budget_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 available_memory: Callable[[], int] | None = None) -> None:
        self.profile = profile
        self.settings = profile.residency
        self.plan: ResidencyPlan = check_residency(profile, budget_bytes)
        self.clock = clock
        self.available = available_memory or (lambda: int(psutil.virtual_memory().available))
        self.owners = {r.name: r for r in profile.roles.values() if r.instance == r.name}
        self.controls: dict[str, InstanceControl] = {}
        specs = []
        for name, role in self.owners.items():
            self.controls[name] = self._control(role, pool)
            size = self.plan.pinned.get(name) or self.plan.on_demand.get(name) or 0
            specs.append(InstanceSpec(
                name=name, model=role.id, footprint=size, pinned=not role.on_demand,
                idle_ttl=role.idle_ttl,
                load_estimate_s=size / (self.settings.load_bandwidth_gb_s * GIB)
                + self.settings.load_overhead_s))
        self.scheduler = Scheduler(
            specs, budget=self.plan.budget_bytes, min_residency=profile.min_residency,
            max_overtake_s=self.settings.max_overtake_s,
            queue_timeout_s=self.settings.queue_timeout_s,
            horizon_s=self.settings.usage_horizon_s, policy=policy)
        now = clock()
        for name, control in self.controls.items():
            if isinstance(control, StaticControl):
                self.scheduler.adopt(name, now)  # loads its model itself
        self.on_event: Callable[[ResidencyEvent], None] | None = None
        self.events: list[ResidencyEvent] = []  # the last ones, for the snapshot
        self.wait_s: dict[str, tuple[float, int]] = {}  # queue wait per instance: sum, count
        self.load_s: dict[str, tuple[float, int]] = {}  # load seconds per instance: sum, count
        self.eviction_counts: Counter[tuple[str, str, str]] = Counter()  # instance, model, cause
        self._futures: dict[int, asyncio.Future[Lease]] = {}
        self._notes: dict[str, list[str]] = {}  # what the next grants of an instance hear
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._timer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._probed: dict[str, float] = {}
        self.closed = False

    @staticmethod
    def _control(role: ResolvedRole, pool: BackendPool) -> InstanceControl:
        if role.managed:
            backend = pool.for_role(role)  # the owner first: the server is sized by it
            assert isinstance(backend, ManagedLlamaCpp)
            return backend
        return control_for(role) or StaticControl()

    # ---- requests ------------------------------------------------------------------------

    def enter(self, role: ResolvedRole) -> Ticket:
        """A ticket for the role's instance; granted at once when it is ready (the fast path)."""
        if self.closed:
            raise LLMLoadError(f"role '{role.name}': localroute is shutting down", role=role.name,
                               model=role.id)
        self._start_timer()
        name = role.instance
        inst = self.scheduler.instances[name]
        died = self.controls[name].died() if inst.state == State.ready else None
        if died:
            self._lost(name, died)
        waiter = next(self._ids)
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._futures[waiter] = future
        now = self.clock()
        eta = self.scheduler.expected_wait(name, now)
        self.scheduler.arrive(waiter, name, now)
        self._kick()
        return Ticket(self, waiter, name, future, eta)

    def _release(self, instance: str) -> None:
        self.scheduler.release(instance, self.clock())
        self._kick()

    def _cancel(self, waiter: int, future: asyncio.Future[Lease]) -> None:
        self.scheduler.cancel(waiter)
        self._futures.pop(waiter, None)
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().release()  # granted just as the caller left
        self._kick()

    def _lost(self, name: str, reason: str) -> None:
        inst = self.scheduler.instances[name]
        note = f"{name}: {reason}; restarting it"
        log.warning("residency.lost", instance=name, reason=reason)
        self._emit(ResidencyEvent("eviction", name, inst.spec.model, "died", ok=False,
                                  error=reason, footprint_bytes=inst.spec.footprint))
        self.scheduler.lost(name, reason)
        self._notes.setdefault(name, []).append(note)

    # ---- the one writer --------------------------------------------------------------------

    def _kick(self) -> None:
        self._apply(self.scheduler.step(self.clock()))
        if self._wake is not None:
            self._wake.set()

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Grant):
                future = self._futures.pop(action.waiter, None)
                if future is None or future.done():
                    self.scheduler.release(action.instance, self.clock())  # nobody to hold it
                    continue
                total, count = self.wait_s.get(action.instance, (0.0, 0))
                self.wait_s[action.instance] = (total + action.waited_s, count + 1)
                notes = list(self._notes.get(action.instance, [])) if action.waited_s > 0 else []
                future.set_result(Lease(self, action.instance, action.waited_s, notes))
            elif isinstance(action, Fail):
                future = self._futures.pop(action.waiter, None)
                if future is not None and not future.done():
                    role = self.owners[action.instance]
                    kind = LLMLoadTimeout if action.timeout else LLMLoadError
                    future.set_exception(kind(
                        f"role '{role.name}' (model '{role.id}'): {action.reason}",
                        role=role.name, model=role.id))
            elif isinstance(action, Load):
                self._spawn(self._load(action))
            elif isinstance(action, Unload):
                self._spawn(self._unload(action))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, action: Load) -> None:
        name = action.instance
        role, inst = self.owners[name], self.scheduler.instances[name]
        notes = self._notes.setdefault(name, [])
        try:
            if action.after_unloads and self.settings.memory_recovery_s > 0:
                ok, waited = await wait_for_memory(inst.spec.footprint,
                                                   self.settings.memory_recovery_s,
                                                   self.available)
                if not ok:
                    notes.append(f"free memory had not recovered after {waited:.1f} s; "
                                 "loading anyway")
            seconds = await asyncio.wait_for(self.controls[name].load(role.load_timeout),
                                             role.load_timeout + 5)
        except (LLMLoadError, TimeoutError) as exc:
            timed_out = not isinstance(exc, LLMLoadError) or isinstance(exc, LLMLoadTimeout)
            reason = (str(exc) if isinstance(exc, LLMLoadError) else
                      f"the load did not finish within load_timeout {role.load_timeout:g} s")
            if inst.spec.pinned and not role.managed:
                # A server that loads on first use (JIT) may still answer: let the call try.
                notes.append(f"could not load '{role.id}' explicitly ({reason}); the server "
                             "loads it on the call")
                self.scheduler.adopt(name, self.clock())
            else:
                self._emit(ResidencyEvent("load", name, role.id, action.cause, ok=False,
                                          error=reason, evicted=action.after_unloads,
                                          footprint_bytes=inst.spec.footprint))
                self._apply(self.scheduler.load_failed(name, reason, timed_out))
                self._notes.pop(name, None)
        except asyncio.CancelledError:
            return
        else:
            restart = inst.restart_reason
            self.scheduler.load_done(name, self.clock(), seconds)
            what = (f"found '{role.id}' already loaded on its server" if seconds is None
                    else f"loaded '{role.id}' in {seconds:.1f} s")
            if action.after_unloads:
                what += f" after unloading {', '.join(action.after_unloads)} for memory"
            notes.append(what if not restart else f"{what} (restart)")
            self._emit(ResidencyEvent("load", name, role.id, action.cause, seconds=seconds,
                                      evicted=action.after_unloads, adopted=seconds is None,
                                      footprint_bytes=inst.spec.footprint))
            self._probed[name] = self.clock()
        self._kick()
        self._notes.pop(name, None)  # the grants of this kick took them

    async def _unload(self, action: Unload) -> None:
        name = action.instance
        inst = self.scheduler.instances[name]
        error = None
        try:
            await self.controls[name].unload(self.settings.stop_grace_s)
        except LLMLoadError as exc:  # the server refused: its memory may still be held
            error = str(exc)
            log.warning("residency.unload_failed", instance=name, error=error)
        except asyncio.CancelledError:
            return
        self.scheduler.unload_done(name, self.clock())
        self._emit(ResidencyEvent("eviction", name, inst.spec.model, action.cause,
                                  ok=error is None, error=error, for_instance=action.for_instance,
                                  idle_s=action.idle_s, expected_cost_s=action.expected_cost_s,
                                  footprint_bytes=inst.spec.footprint))
        self._kick()

    def _emit(self, event: ResidencyEvent) -> None:
        self.events = [*self.events[-49:], event]
        if event.kind == "eviction":
            self.eviction_counts[(event.instance, event.model, event.cause)] += 1
        elif event.ok and event.seconds is not None:
            total, count = self.load_s.get(event.instance, (0.0, 0))
            self.load_s[event.instance] = (total + event.seconds, count + 1)
        # No log line per load or eviction: `ask --json` prints results on stdout, where
        # structlog writes by default; the answer's notes, the snapshot and telemetry say it.
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as exc:  # telemetry must never break residency
                log.warning("residency.event_hook_failed", error=str(exc))

    # ---- timers, probes, lifecycle ---------------------------------------------------------

    def _start_timer(self) -> None:
        loop = asyncio.get_running_loop()
        # A client may outlive one event loop (asyncio.run per command): a timer of an old
        # loop never runs again, so each loop gets its own.
        if self._timer is None or self._timer.done() or self._timer.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._timer = loop.create_task(self._run_timer())

    async def _run_timer(self) -> None:
        assert self._wake is not None
        while not self.closed:
            now = self.clock()
            wake = self.scheduler.next_wakeup(now)
            delay = MAX_TIMER_S if wake is None else min(MAX_TIMER_S, max(0.01, wake - now))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                self._kick()
            await self._probe_ready()

    async def _probe_ready(self) -> None:
        """Ready instances on servers we do not own may be unloaded behind our back: check them
        now and then (never on the request path, never loading anything)."""
        now = self.clock()
        for name, control in self.controls.items():
            inst = self.scheduler.instances[name]
            if (isinstance(control, StaticControl) or inst.state != State.ready
                    or now - self._probed.get(name, 0.0) < PROBE_INTERVAL_S):
                continue
            self._probed[name] = now
            died = control.died()
            loaded = False if died else await control.probe()
            if loaded is False and inst.state == State.ready:
                self._lost(name, died or "no longer loaded on its server")

    def snapshot(self) -> dict[str, Any]:
        """Per instance: state, footprint, resident since, last used, TTL expiry, in flight,
        queued, loads and load times (residency/view.py)."""
        from localroute.residency.view import snapshot

        return snapshot(self)

    def expected_wait(self, role: str) -> float:
        """Seconds until the role's instance can take a call (0: resident now); routing reads
        it to pick a warm substitute."""
        return self.scheduler.expected_wait(self.profile.role(role).instance, self.clock())

    def preload(self) -> None:
        """Start loading the pinned instances now (server start), without a request."""
        self._start_timer()
        for name in self.owners:
            self._apply(self.scheduler.preload(name, self.clock()))

    def unload(self, role: str) -> bool:
        """Unload an on-demand role's instance once its calls end; False when pinned or idle."""
        name = self.profile.role(role).instance
        ok = self.scheduler.unload(name, "manual")
        self._kick()
        return ok

    async def aclose(self) -> None:
        """Stop: waiting requests fail, tasks end, managed servers stop. Models loaded into LM
        Studio or Ollama stay loaded (the next process adopts them)."""
        self.closed = True
        for waiter, future in list(self._futures.items()):
            if not future.done():
                role = self.owners[self.scheduler.waiters[waiter].instance] \
                    if waiter in self.scheduler.waiters else None
                future.set_exception(LLMLoadError(
                    "localroute is shutting down", role=role.name if role else None))
        self._futures.clear()
        loop = asyncio.get_running_loop()
        tasks = [t for t in (*self._tasks, self._timer) if t is not None and t.get_loop() is loop]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for control in self.controls.values():
            if isinstance(control, ManagedLlamaCpp):
                await control.unload(self.settings.stop_grace_s)
            await control.aclose()
