"""Effectors: what a mode does to the running stack.

- concurrency: each gate is narrowed to `gate_scale[mode]` of its configured slots;
- roles: the mode's policy (allowed roles, token caps) -- the orchestrator downgrades by it when
  a request runs with the governor's mode;
- refusal: new requests over the mode's prompt-token limit, or naming a heavy role outside
  NORMAL, are refused with a message that says why and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable
from typing import Any

from localroute.client.gates import Gate
from localroute.config.modes import HomeostasisSettings, Mode, ModesConfig


class RequestRefused(Exception):
    """A request the current mode does not admit."""

    def __init__(self, message: str, *, mode: Mode) -> None:
        super().__init__(message)
        self.mode = mode


class GateLimiter:
    """Narrows `client.gates` without replacing them: holding k permits of an
    asyncio.Semaphore is the only way to shrink one that callers already wait on."""

    def __init__(self, gates: Iterable[Gate]) -> None:
        self._gates = {g.name: g for g in gates}
        self.original = {name: g.capacity for name, g in self._gates.items()}
        self._held = dict.fromkeys(self._gates, 0)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def apply(self, scale: float) -> dict[str, dict[str, int]]:
        """Set every gate to max(1, floor(slots x scale)); permits are taken as in-flight
        calls finish, never from under them. Returns {gate: {from, to}} for changed gates."""
        changed: dict[str, dict[str, int]] = {}
        for name, gate in self._gates.items():
            target = max(1, math.floor(self.original[name] * scale))
            if target != gate.capacity:
                changed[name] = {"from": gate.capacity, "to": target}
            # Gate.capacity is what snapshot() and busy() report: keep it the effective limit.
            gate.capacity = target
            old = self._tasks.pop(name, None)
            if old is not None:
                old.cancel()
            self._tasks[name] = asyncio.get_running_loop().create_task(
                self._adjust(name, self.original[name] - target))
        return changed

    async def _adjust(self, name: str, hold: int) -> None:
        gate = self._gates[name]
        while self._held[name] > hold:
            gate.semaphore.release()
            self._held[name] -= 1
        while self._held[name] < hold:
            await gate.semaphore.acquire()
            self._held[name] += 1

    def held(self) -> dict[str, int]:
        return dict(self._held)

    async def settle(self) -> None:
        """Wait until every gate holds its target (tests, shutdown)."""
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def restore(self) -> None:
        self.apply(1.0)
        await self.settle()


class Effectors:
    def __init__(self, settings: HomeostasisSettings, modes: ModesConfig,
                 limiter: GateLimiter | None = None, roles: Iterable[str] = ()) -> None:
        self.settings = settings
        self.modes = modes
        self.limiter = limiter
        self.roles = tuple(roles)

    def apply(self, mode: Mode) -> list[tuple[str, dict[str, Any]]]:
        """Put `mode` into effect; returns (effector, its figures) for each effector that acted:
        `gates`, `roles` and `refusal`."""
        actions: list[tuple[str, dict[str, Any]]] = []
        if self.limiter is not None:
            scale = self.settings.gate_scale.get(mode, 1.0)
            changed = self.limiter.apply(scale)
            if changed:
                actions.append(("gates", {"scale": scale, "gates": changed}))
        policy = self.modes.policy(mode)
        blocked = [r for r in self.roles if r not in policy.allowed_roles]
        actions.append(("roles", {
            "allowed_roles": list(policy.allowed_roles), "downgraded_or_refused": blocked,
            "max_tokens": dict(policy.max_tokens),
            "max_concurrent_tasks": policy.max_concurrent_tasks,
        }))
        limit = self.settings.refuse_prompt_tokens_above.get(mode)
        heavy = list(self.settings.heavy_roles) if mode != Mode.NORMAL else []
        if limit is not None or heavy:
            actions.append(("refusal", {"prompt_tokens_above": limit, "heavy_roles": heavy}))
        return actions

    def check(self, mode: Mode, cause: str, *, prompt_tokens: int | None = None,
              role: str | None = None) -> None:
        """Raise RequestRefused when `mode` does not admit this request."""
        why = f" ({cause})" if cause else ""
        if role is not None and mode != Mode.NORMAL and role in self.settings.heavy_roles:
            raise RequestRefused(
                f"localroute is in mode {mode.value}{why}: new requests for the heavy role "
                f"'{role}' are refused until it recovers; use a lighter role, retry later, or "
                "see `localroute status`", mode=mode)
        limit = self.settings.refuse_prompt_tokens_above.get(mode)
        if limit is not None and prompt_tokens is not None and prompt_tokens > limit:
            raise RequestRefused(
                f"localroute is in mode {mode.value}{why}: requests over {limit} prompt tokens "
                f"are refused (this one has {prompt_tokens}); shorten the input or retry when "
                "the mode is back to NORMAL (`localroute status`)", mode=mode)
