"""The planner's figures for the embedded model against what llama.cpp itself reports.

llama.cpp logs its buffers on stderr when it loads a model with verbose=True; a subprocess
loads the embedded SmolLM2 GGUF and the test compares its model buffer and KV cache sizes with
the planner's, within 5%.
"""

from __future__ import annotations

import re
import subprocess
import sys

from localroute.resources.planner import MIB, plan_profile
from tests.conftest import make_profile
from tests.support.servers import gguf_path

N_CTX = 2048  # a multiple of 256, so llama.cpp does not pad the KV cache
LOADER = """
import sys
from llama_cpp import Llama
Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=1, verbose=True)
"""
MODEL_BUFFER = re.compile(r"(?:model buffer size|model size)\s*=\s*([\d.]+) MiB")
KV_BUFFER = re.compile(r"(?:llama_kv_cache(?:_unified)?: size|KV self size)\s*=\s*([\d.]+) MiB")


def llama_cpp_report() -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", LOADER, str(gguf_path()), str(N_CTX)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    weights = [float(x) for x in MODEL_BUFFER.findall(done.stderr)]
    kv = [float(x) for x in KV_BUFFER.findall(done.stderr)]
    assert weights and kv, f"llama.cpp printed no buffer sizes:\n{done.stderr[-3000:]}"
    # Several lines can name the same buffer (file and mapped size); the mapped one is last.
    return weights[-1], kv[-1]


def test_planner_matches_llama_cpp_for_the_embedded_model() -> None:
    profile = make_profile({"router": {"id": "SmolLM2-135M-Instruct.Q4_1", "backend": "embedded",
                                       "context_length": N_CTX}})
    plan = plan_profile(profile, budget_bytes=2**40)
    memory = plan.instances()["router"]
    reported_weights, reported_kv = llama_cpp_report()
    planned_weights = memory.weight_bytes / MIB
    planned_kv = memory.kv_bytes / MIB
    assert abs(planned_weights - reported_weights) / reported_weights < 0.05, (
        planned_weights, reported_weights)
    assert abs(planned_kv - reported_kv) / reported_kv < 0.05, (planned_kv, reported_kv)
