"""One backend object per server endpoint (or per embedded model, or per managed llama.cpp
instance), shared by the roles on it."""

from __future__ import annotations

from localroute.backends.base import Backend
from localroute.backends.embedded import EmbeddedBackend
from localroute.backends.managed import ManagedLlamaCpp
from localroute.backends.openai_compat import OpenAICompatBackend
from localroute.config.schema import BackendKind, ResolvedRole


class BackendPool:
    def __init__(self) -> None:
        self._backends: dict[tuple[str, str], Backend] = {}

    def for_role(self, role: ResolvedRole) -> Backend:
        if role.backend == BackendKind.embedded:
            key = ("embedded", f"{role.id}@{role.instance_context_length}")
        elif role.managed:
            # One server per instance, sized by the first role asking: the residency manager
            # asks for every instance's owner before anything else does.
            key = ("managed", role.instance)
        else:
            if not role.endpoint:
                raise ValueError(
                    f"role '{role.name}' uses backend '{role.backend.value}' but has no endpoint; "
                    f"set it in models.yaml or LOCALROUTE_{role.name.upper()}_ENDPOINT"
                )
            key = (role.backend.value, role.endpoint)
        if key not in self._backends:
            self._backends[key] = self._make(role)
        return self._backends[key]

    @staticmethod
    def _make(role: ResolvedRole) -> Backend:
        if role.backend == BackendKind.embedded:
            return EmbeddedBackend(role.id, role.instance_context_length)
        if role.managed:
            return ManagedLlamaCpp(role)
        assert role.endpoint is not None
        return OpenAICompatBackend(role.backend.value, role.endpoint, role.api_key)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()
