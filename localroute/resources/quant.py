"""Bits per weight of each quantization, and bytes per element of each KV-cache type.

GGUF figures are the block layouts of ggml (`ggml/src/ggml-common.h`): e.g. Q8_0 stores 32 int8
weights plus one f16 scale = 34 bytes / 32 weights = 8.5 bits. K-quant "_M"/"_S" mixes keep some
tensors at a higher type; their figures are llama.cpp's own whole-model averages as printed by
`llama-quantize` (tools/quantize/README.md, Llama-3.1-8B column). MLX quantizes in groups of 64
with an fp16 scale and bias per group (mlx `nn.quantize`, default group_size=64), so n-bit MLX
costs n + 32/64 = n + 0.5 bits.
"""

from __future__ import annotations

import re

# Exact block layouts (bits per weight) and llama.cpp's whole-model averages for mixes.
GGUF_BPW: dict[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,  # 32 x int8 + f16 scale
    "Q6_K": 6.5625,  # 256 weights in 210 bytes
    "Q5_1": 6.0,  # 32 x 5 bit + f16 scale + f16 min
    "Q5_0": 5.5,
    "Q5_K_M": 5.70,  # mix: most tensors Q5_K (5.5), some Q6_K
    "Q5_K_S": 5.57,
    "Q4_1": 5.0,  # 32 x 4 bit + f16 scale + f16 min
    "Q4_0": 4.5,
    "Q4_K_M": 4.89,  # mix: most tensors Q4_K (4.5), some Q6_K
    "Q4_K_S": 4.67,
    "Q3_K_M": 4.00,
    "Q2_K": 3.16,
}
MLX_GROUP_OVERHEAD_BITS = 0.5  # fp16 scale + fp16 bias per group of 64 weights

# KV cache element sizes: f16 by default; llama.cpp's q8_0 / q4_0 cache types use the block
# layouts above (34 bytes per 32, 18 bytes per 32).
KV_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_MLX = re.compile(r"^(?:mlx[-_ ]?)?([2-8])[-_ ]?bits?$")


class QuantizationError(ValueError):
    """A quantization name the planner cannot size."""


def allowed_quantizations() -> str:
    return ", ".join([*GGUF_BPW, "2bit..8bit (MLX)"])


def bits_per_weight(quantization: str) -> float:
    """Bits per weight of a quantization name as models.yaml and servers spell it
    (`Q4_K_M`, `q8_0`, `8bit`, `MLX 4bit`, `f16`...)."""
    name = quantization.strip()
    upper = name.upper().replace("-", "_").replace(" ", "_")
    if upper in GGUF_BPW:
        return GGUF_BPW[upper]
    match = _MLX.match(name.lower())
    if match:
        return int(match.group(1)) + MLX_GROUP_OVERHEAD_BITS
    raise QuantizationError(
        f"quantization '{quantization}' is not known to the planner; use one of "
        f"{allowed_quantizations()}"
    )


def kv_bytes_per_element(cache_type: str) -> float:
    try:
        return KV_BYTES[cache_type.lower()]
    except KeyError:
        raise QuantizationError(
            f"KV cache type '{cache_type}' is not known; use one of {', '.join(KV_BYTES)}"
        ) from None
