"""The memory planner against figures computed by hand from the model cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from localroute.cli.common import UsageError
from localroute.cli.main import app
from localroute.config.loader import load_config, resolve_profile
from localroute.config.schema import ResidencyKind
from localroute.resources.catalog import CATALOG, lookup
from localroute.resources.gguf_header import GGUFError, read_gguf
from localroute.resources.planner import (
    GIB,
    PlanError,
    fitting_combinations,
    plan_profile,
    size_for,
)
from localroute.resources.quant import QuantizationError, bits_per_weight
from localroute.resources.residency_plan import ResidencyError, check_residency, plan_residency
from tests.support.servers import gguf_path

# (id as models.yaml names it, quantization, weights in bytes, KV bytes per f16 token), by hand:
# weights = params x bpw / 8, KV/token = 2 x kv_layers x kv_heads x head_dim x 2.
HAND = [
    ("qwen/qwen3-4b-2507", "8bit", 4.0e9 * 8.5 / 8, 2 * 36 * 8 * 128 * 2),  # 4.25e9, 147456
    ("qwen/qwen3-1.7b", "8bit", 1_806_250_000, 114_688),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "8bit", 15_618_750_000, 196_608),
    ("mistralai/devstral-small-2-2512", "8bit", 25_500_000_000, 163_840),
    ("qwen/qwen3-coder-30b", "Q4_K_M", 30.5e9 * 4.89 / 8, 98_304),
    ("qwen/qwen3-next-80b", "5bit", 55_000_000_000, 2 * 12 * 2 * 256 * 2),  # 24576
    ("SmolLM2-135M", "Q4_1", 84_062_500, 23_040),
]


@pytest.mark.parametrize(("model", "quant", "weights", "kv_per_token"), HAND)
def test_catalog_figures_match_hand_computation(
    model: str, quant: str, weights: float, kv_per_token: int
) -> None:
    m = size_for("r", model, quant, context_length=32_768, slots=2)
    assert m.weight_bytes == int(weights)
    assert m.kv_bytes_per_token == kv_per_token
    assert m.kv_bytes == kv_per_token * 32_768 * 2
    assert m.total_bytes == m.weight_bytes + m.kv_bytes + m.state_bytes + m.overhead_bytes
    assert m.citations, f"{model}: every catalog figure needs a source"


def test_every_catalog_model_is_covered_and_cited() -> None:
    covered = {lookup(model).key for model, *_ in HAND}  # type: ignore[union-attr]
    assert covered == {spec.key for spec in CATALOG}
    for spec in CATALOG:
        cited = " ".join(spec.sources)
        for figure in ("params", "layers", "kv_heads", "head_dim"):
            assert figure in cited, f"{spec.key}: no source for {figure}"


def test_backends_md_table_is_reproduced() -> None:
    # docs/backends.md, memory facts: KV f16 at 32K = 4.5 GiB (Qwen3-4B), 6.0 GiB (R1-14B),
    # 3.0 (Coder).
    for model, gib in (("qwen/qwen3-4b-2507", 4.5), ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
                                                      6.0), ("qwen/qwen3-coder-30b", 3.0)):
        assert size_for("r", model, "8bit", 32_768, 1).kv_bytes == gib * GIB


def test_hybrid_model_counts_its_recurrent_state_per_slot() -> None:
    m = size_for("r", "qwen/qwen3-next-80b", "8bit", 1000, 3)
    assert m.state_bytes == 3 * 36 * (32 * 128 * 128 * 4 + 3 * 8192 * 4)


def test_quantized_kv_cache_and_quant_names() -> None:
    q8 = size_for("r", "qwen/qwen3-4b-2507", "8bit", 1000, 1, kv_cache_type="q8_0")
    assert q8.kv_bytes_per_token == 2 * 36 * 8 * 128 * 34 / 32
    assert bits_per_weight("MLX 4bit") == 4.5 and bits_per_weight("q8_0") == 8.5
    assert bits_per_weight("bf16") == 16.0
    with pytest.raises(QuantizationError, match=r"'9bit' is not known.*Q4_K_M"):
        bits_per_weight("9bit")


def test_gguf_header_gives_exact_tensor_bytes() -> None:
    facts = read_gguf(gguf_path())
    assert facts.file_type == "Q4_1"
    assert facts.spec.layers == 30 and facts.spec.kv_heads == 3 and facts.spec.head_dim == 64
    # The file is the header plus the tensors: the tensors are nearly all of it.
    assert 0.95 < facts.weight_bytes / gguf_path().stat().st_size < 1.0


def test_gguf_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="does not exist"):
        read_gguf(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFError, match=r"junk\.gguf' is not a readable GGUF file"):
        read_gguf(junk)


def test_shared_instances_are_counted_once_and_unknown_models_named() -> None:
    config, source = load_config()
    m4max = resolve_profile(config, "m4max", source, env={})
    plan = plan_profile(m4max, budget_bytes=128 * GIB)
    validation = next(r for r in plan.roles if r.role == "validation")
    assert validation.memory is None and validation.shares_instance_with == "router"
    assert plan.total_bytes == sum(m.total_bytes for m in plan.instances().values())
    assert len(plan.instances()) == 6
    with pytest.raises(PlanError, match="'no/such-model' is not in the planner's catalog"):
        size_for("coding", "no/such-model", "8bit", 1000, 1)


def test_combinations_are_maximal_sets_that_fit() -> None:
    combos = fitting_combinations({"a": 60, "b": 50, "c": 30, "d": 100}, budget=100)
    assert combos == [["a", "c"], ["b", "c"], ["d"]]  # largest sets first, then biggest total
    assert all(sum({"a": 60, "b": 50, "c": 30, "d": 100}[x] for x in c) <= 100 for c in combos)
    assert ["a", "b"] not in combos  # 110 > 100


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localroute", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ})


def test_plan_json_for_m4max_lists_every_role_against_its_96_gib_budget() -> None:
    done = cli("plan", "--profile", "m4max", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["budget_bytes"] == 96 * GIB
    roles = {r["role"]: r for r in data["roles"]}
    assert set(roles) == {"router", "validation", "reasoning", "reasoning_heavy", "coding",
                          "coding_large_context", "summarization"}
    router = roles["router"]["memory"]
    assert router["weight_bytes"] == 4_250_000_000
    assert router["kv_bytes"] == 147_456 * 16_384 * 4
    assert data["total_bytes"] == sum(r["memory"]["total_bytes"] for r in roles.values()
                                      if r["memory"])
    assert data["headroom_bytes"] == 96 * GIB - data["total_bytes"]
    # The whole stack does not fit at once; the residency plan does: the router pinned, every
    # other role on demand and each of them able to load beside it.
    assert data["fits"] is False and data["combinations"]
    residency = data["residency"]
    assert residency["problems"] == []
    assert residency["pinned"] == {"router": router["total_bytes"]}
    assert residency["sharing"]["router"] == ["validation"]
    assert set(residency["on_demand"]) == {"reasoning", "reasoning_heavy", "coding",
                                           "coding_large_context", "summarization"}
    room = 96 * GIB - router["total_bytes"]
    assert residency["room_bytes"] == room
    assert max(residency["on_demand"].values()) <= room
    assert ["reasoning_heavy"] in residency["together"]
    for combo in residency["together"]:
        assert sum(residency["on_demand"][x] for x in combo) <= room


def test_plan_refuses_a_pinned_set_that_does_not_fit_with_the_numbers() -> None:
    config, source = load_config()
    m4max = resolve_profile(config, "m4max", source, env={})
    pinned_all = m4max.model_copy(update={"roles": {
        n: r.model_copy(update={"residency": ResidencyKind.pinned, "idle_ttl": None})
        for n, r in m4max.roles.items()}})
    plan = plan_residency(pinned_all)
    (problem,) = plan.problems
    assert problem.startswith("profile 'm4max': the pinned set does not fit: router 13.08 GiB + ")
    assert "> budget 96.00 GiB (profile 'm4max' memory_budget_gb 96)" in problem
    with pytest.raises(ResidencyError, match="the pinned set does not fit"):
        check_residency(pinned_all)
    small = plan_residency(m4max, budget_bytes=20 * GIB, budget_source="--budget 20")
    assert "'reasoning_heavy' (81.99 GiB)" in small.problems[0]
    assert "leaving 6.92 GiB" in small.problems[0]


def test_compare_shows_reasoning_memory_falling_from_80b_5bit_to_14b_8bit() -> None:
    done = CliRunner().invoke(app, ["plan", "--profile", "m4max", "--json", "--compare",
                                    "reasoning=qwen/qwen3-next-80b@5bit",
                                    "reasoning=deepseek-ai/DeepSeek-R1-Distill-Qwen-14B@8bit"])
    assert done.exit_code == 0, done.output
    big, small = json.loads(done.output)["rows"]
    assert big["weights_bytes"] == 55_000_000_000 and small["weights_bytes"] == 15_618_750_000
    assert big["role_total_bytes"] > small["role_total_bytes"]
    assert big["stack_total_bytes"] - small["stack_total_bytes"] == (
        big["role_total_bytes"] - small["role_total_bytes"])


def test_compare_bad_variant_is_a_usage_error() -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["plan", "--compare", "reasoning"])
    assert isinstance(done.exception, UsageError)
    assert "is not ROLE=MODEL or ROLE=MODEL@QUANT" in str(done.exception)
    done = runner.invoke(app, ["plan", "--compare", "nosuchrole=qwen/qwen3-4b-2507@8bit"])
    assert "role 'nosuchrole' is not defined" in str(done.exception)
