"""Architecture facts of the models the reference stack names, each figure with its source.

Only what memory depends on: parameter count (weights), and layers x KV heads x head_dim (KV
cache per token). Hybrid models (Qwen3-Next) keep a KV cache only in their full-attention
layers and a fixed-size recurrent state per sequence in the others.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

HF = "https://huggingface.co/"


class ModelSpec(BaseModel):
    """What the planner needs to size one model."""

    model_config = ConfigDict(frozen=True)

    key: str
    params: float  # total parameters (MoE: all experts; they are all resident)
    layers: int
    kv_layers: int  # layers that keep a KV cache (all of them unless the model is hybrid)
    q_heads: int
    kv_heads: int
    head_dim: int
    native_context: int
    # Per-sequence state that does not grow with the context (linear-attention layers).
    recurrent_state_bytes: int = 0
    aliases: tuple[str, ...] = ()
    sources: dict[str, str] = Field(default_factory=dict)  # figure -> where it is stated

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """2 (K and V) x layers with a cache x KV heads x head_dim x bytes per element."""
        return 2 * self.kv_layers * self.kv_heads * self.head_dim * bytes_per_element


def _qwen3(card: str) -> dict[str, str]:
    return {
        "params, layers, q_heads, kv_heads, native_context": f"{HF}{card} (Model Overview)",
        "head_dim": f"{HF}{card}/blob/main/config.json (head_dim)",
    }


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        key="Qwen3-4B-Instruct-2507",
        params=4.0e9, layers=36, kv_layers=36, q_heads=32, kv_heads=8, head_dim=128,
        native_context=262_144,
        aliases=("qwen/qwen3-4b-2507", "qwen3-4b-2507", "qwen3-4b", "qwen3-4b-instruct-2507"),
        sources=_qwen3("Qwen/Qwen3-4B-Instruct-2507"),
    ),
    ModelSpec(
        key="Qwen3-1.7B",
        params=1.7e9, layers=28, kv_layers=28, q_heads=16, kv_heads=8, head_dim=128,
        native_context=32_768,
        aliases=("qwen/qwen3-1.7b", "qwen3-1.7b"),
        sources=_qwen3("Qwen/Qwen3-1.7B"),
    ),
    ModelSpec(
        key="DeepSeek-R1-Distill-Qwen-14B",
        params=14.7e9, layers=48, kv_layers=48, q_heads=40, kv_heads=8, head_dim=128,
        native_context=131_072,
        aliases=("deepseek-ai/deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-qwen-14b"),
        sources={
            "base model": f"{HF}deepseek-ai/DeepSeek-R1-Distill-Qwen-14B (Distilled Models: "
            "base Qwen2.5-14B)",
            "params, layers, q_heads, kv_heads, native_context": f"{HF}Qwen/Qwen2.5-14B "
            "(14.7B parameters, 48 layers, 40 Q / 8 KV heads, 131,072 tokens)",
            "head_dim": f"{HF}deepseek-ai/DeepSeek-R1-Distill-Qwen-14B/blob/main/config.json "
            "(hidden_size 5120 / 40 heads)",
        },
    ),
    ModelSpec(
        key="Devstral-Small-2-24B-Instruct-2512",
        params=24.0e9, layers=40, kv_layers=40, q_heads=32, kv_heads=8, head_dim=128,
        native_context=262_144,
        aliases=("mistralai/devstral-small-2-2512", "devstral-small-2-2512",
                 "mistralai/devstral-small-2-24b-instruct-2512", "devstral-small-2"),
        sources={
            "params, native_context": f"{HF}mistralai/Devstral-Small-2-24B-Instruct-2512 "
            "(24B parameters, 256k context; includes the vision encoder LM Studio loads)",
            "layers, q_heads, kv_heads, head_dim": f"{HF}mistralai/Devstral-Small-2-24B-"
            "Instruct-2512/blob/main/config.json text_config; restated by "
            f"{HF}levara/Devstral-Small-2-24B-TextOnly-FP8",
        },
    ),
    ModelSpec(
        key="Qwen3-Coder-30B-A3B-Instruct",
        params=30.5e9, layers=48, kv_layers=48, q_heads=32, kv_heads=4, head_dim=128,
        native_context=262_144,
        aliases=("qwen/qwen3-coder-30b", "qwen3-coder-30b", "qwen3-coder-30b-a3b-instruct"),
        sources=_qwen3("Qwen/Qwen3-Coder-30B-A3B-Instruct"),
    ),
    ModelSpec(
        key="Qwen3-Next-80B-A3B-Instruct",
        params=80.0e9, layers=48, kv_layers=12, q_heads=16, kv_heads=2, head_dim=256,
        native_context=262_144,
        # 36 Gated DeltaNet layers x (32 V heads x 128 x 128 f32 state + 3 x 8192 f32 conv
        # state), as llama.cpp keeps them: est. from the config below.
        recurrent_state_bytes=36 * (32 * 128 * 128 * 4 + 3 * 8192 * 4),
        aliases=("qwen/qwen3-next-80b", "qwen3-next-80b", "qwen3-next-80b-a3b-instruct",
                 "qwen3-next-80b-a3b-thinking"),
        sources={
            "params, layers, kv_layers, q_heads, kv_heads, head_dim, native_context": f"{HF}"
            "Qwen/Qwen3-Next-80B-A3B-Instruct (Model Overview: 80B total, 48 layers, layout "
            "12 x (3 x Gated DeltaNet + 1 x Gated Attention), Gated Attention 16 Q / 2 KV "
            "heads, head dim 256; 262,144 tokens)",
            "recurrent_state_bytes": f"{HF}Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json"
            " (linear_num_value_heads 32, linear_key/value_head_dim 128, linear_conv_kernel_dim "
            "4); est.",
        },
    ),
    ModelSpec(
        key="SmolLM2-135M-Instruct",
        params=134.5e6, layers=30, kv_layers=30, q_heads=9, kv_heads=3, head_dim=64,
        native_context=8_192,
        aliases=("smollm2-135m-instruct.q4_1", "smollm2-135m", "smollm2",
                 "huggingfacetb/smollm2-135m-instruct"),
        sources={
            "params": f"{HF}HuggingFaceTB/SmolLM2-135M-Instruct (135M; 134.5M counted by "
            "llama.cpp's `model params`)",
            "layers, q_heads, kv_heads, head_dim, native_context": f"{HF}HuggingFaceTB/"
            "SmolLM2-135M-Instruct/blob/main/config.json (30 layers, 9 heads, 3 KV heads, "
            "hidden 576 / 9 = 64, 8192 positions)",
        },
    ),
)


def _norm(model_id: str) -> str:
    return model_id.strip().lower()


def lookup(model_id: str) -> ModelSpec | None:
    """The catalog entry for a model id as a server or models.yaml spells it, if any."""
    wanted = _norm(model_id)
    short = wanted.split("/")[-1]
    for spec in CATALOG:
        names = {_norm(spec.key), *(_norm(a) for a in spec.aliases)}
        if wanted in names or short in names:
            return spec
    return None


def catalog_keys() -> list[str]:
    return [spec.key for spec in CATALOG]
