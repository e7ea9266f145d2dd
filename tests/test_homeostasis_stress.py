"""Stress: many concurrent requests against the real llama.cpp server through small gates drive
the mode to ALERT (queue depth) and back to NORMAL, with every change recorded in the telemetry
store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from localroute.client.llm_client import LLMClient
from localroute.config.modes import HomeostasisSettings, Mode, ThresholdRule, load_modes
from localroute.config.telemetry import StoreSettings
from localroute.governance.governor import Governor, client_gates
from localroute.governance.sensors import GateSensor, RequestWindow
from localroute.telemetry.emitter import Telemetry
from localroute.telemetry.events import EventName
from localroute.types import LLMError
from tests.conftest import make_profile, server_role
from tests.support.servers import LlamaServer

REQUESTS = 12


async def test_queue_pressure_drives_alert_and_recovery(llama_server: LlamaServer,
                                                        tmp_path: Path) -> None:
    profile = make_profile({"router": server_role(llama_server.base_url, max_concurrency=2,
                                                  max_tokens=4)})
    client = LLMClient(profile)
    window = RequestWindow(window_s=60)
    settings = HomeostasisSettings(
        rules=(ThresholdRule(name="queue_deep", sensor="queue_depth", above=3, for_s=0.1,
                             clear_below=0, clear_for_s=0.2, mode=Mode.ALERT),),
        gate_scale={Mode.ALERT: 0.5},
    )
    modes = load_modes().model_copy(update={"homeostasis": settings})
    seen_capacity: list[tuple[Mode, int]] = []

    def watch() -> dict[str, float | None]:
        seen_capacity.append((gov.mode, client.gates.snapshot()["router"]["capacity"]))
        return {}

    telemetry = Telemetry(StoreSettings(url=f"sqlite:///{tmp_path / 'events.db'}"))
    gov = Governor(modes, sources=[GateSensor(client.gates.snapshot), window, watch],
                   gates=client_gates(client), roles=tuple(profile.roles), interval_s=0.05,
                   telemetry=telemetry)

    async def one(i: int) -> None:
        started = time.perf_counter()
        try:
            await client.respond("router", [{"role": "user", "content": f"Say {i}."}],
                                 max_tokens=4)
            ok = True
        except LLMError:
            ok = False
        window.record(time.perf_counter() - started, ok)

    await gov.start()
    try:
        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        deadline = time.monotonic() + 30
        while gov.mode != Mode.NORMAL and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await gov.stop()
        await client.aclose()
        telemetry.flush()
        changes = telemetry.store.select(names=[EventName.MODE_CHANGE])
        effectors = telemetry.store.select(names=[EventName.GOVERNANCE_EFFECTOR])
        telemetry.close()

    transitions = [c["data"] for c in changes]
    assert [(t["from"], t["to"]) for t in transitions] == [("NORMAL", "ALERT"),
                                                           ("ALERT", "NORMAL")]
    up, down = transitions
    assert up["readings"]["queue_depth"] > 3 and "queue_deep" in up["reason"]
    assert down["readings"]["queue_depth"] == 0 and "cleared" in down["reason"]
    gates = [e["data"] for e in effectors if e["data"]["effector"] == "gates"]
    assert [g["gates"]["router"] for g in gates] == [{"from": 2, "to": 1}, {"from": 1, "to": 2}]
    assert gates[0]["readings"]["queue_depth"] > 3  # the effector names what caused it
    assert (Mode.ALERT, 1) in seen_capacity  # the gate really was narrowed during ALERT
    assert client.gates.snapshot()["router"]["capacity"] == 2  # and restored
    assert window()["error_rate"] == 0.0  # every request was served
