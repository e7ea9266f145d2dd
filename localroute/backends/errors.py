"""Turning what a server or the network did into one of the client's typed errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx

from localroute.types import (
    LLMConnectionError,
    LLMContextOverflow,
    LLMError,
    LLMServerError,
    LLMTimeout,
)

# Phrases servers use for a prompt that does not fit: OpenAI/llama-cpp-python ("maximum context
# length"), llama-server (exceed_context_size_error), LM Studio ("n_keep", "context the overflows").
_OVERFLOW = re.compile(
    r"maximum context length|context length|exceed_context_size|context size|n_keep|"
    r"context the overflows|context window|too many tokens|prompt is too long",
    re.IGNORECASE,
)
_NUMBERS = re.compile(r"\d[\d,]*")
# httpcore's words for a connection accepted and closed before any answer: as good as refused.
NO_RESPONSE = "without sending a response"


@dataclass(frozen=True)
class CallSite:
    """Who was being called, so every error can name role, model and URL."""

    role: str
    model: str
    url: str
    hint: str = ""

    def where(self) -> str:
        return f"role '{self.role}' (model '{self.model}' at {self.url})"


def is_overflow_message(text: str) -> bool:
    return bool(_OVERFLOW.search(text))


def overflow_error(site: CallSite, text: str) -> LLMContextOverflow:
    numbers = [int(n.replace(",", "")) for n in _NUMBERS.findall(text)][:2]
    prompt, ctx = [*numbers, 0, 0][:2]
    return LLMContextOverflow(
        f"{site.where()}: the server says the prompt does not fit its context: "
        f"{text.strip()[:300]}",
        prompt_tokens=prompt,
        context_length=ctx,
        role=site.role,
        model=site.model,
        url=site.url,
    )


def body_error(site: CallSite, error: object) -> LLMError:
    """An error object inside an HTTP 200 body (LM Studio reports overflow this way)."""
    message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    if is_overflow_message(str(message)):
        return overflow_error(site, str(message))
    return LLMServerError(
        f"{site.where()}: the server answered HTTP 200 with an error: {str(message)[:300]}",
        status=None,
        role=site.role,
        model=site.model,
        url=site.url,
    )


def map_exception(site: CallSite, exc: BaseException) -> LLMError:
    """Map a network exception (httpx's, or a timeout) to the client's error types."""
    kw = {"role": site.role, "model": site.model, "url": site.url}
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return LLMTimeout(f"{site.where()}: no answer within the timeout", **kw)
    if isinstance(exc, httpx.ConnectError) or (
            isinstance(exc, httpx.RemoteProtocolError) and NO_RESPONSE in str(exc)):
        hint = f" {site.hint}" if site.hint else ""
        return LLMConnectionError(f"{site.where()}: cannot connect ({exc}).{hint}", **kw)
    if isinstance(exc, httpx.TransportError):  # a connection that broke mid-answer
        return LLMConnectionError(
            f"{site.where()}: the connection broke ({type(exc).__name__}: {exc})", **kw)
    return LLMConnectionError(f"{site.where()}: {type(exc).__name__}: {exc}", **kw)


def status_error(site: CallSite, status: int, body: bytes,
                 headers: httpx.Headers | None = None) -> LLMError:
    """An HTTP error answer: overflow when the text says so, else a server error with its
    status (429 and 5xx are retryable) and the server's Retry-After."""
    text = _status_text(body)
    if status in (400, 413) and is_overflow_message(text):
        return overflow_error(site, text)
    return LLMServerError(
        f"{site.where()}: HTTP {status}: {text[:300]}",
        status=status,
        retry_after=_retry_after(headers),
        role=site.role,
        model=site.model,
        url=site.url,
    )


def _status_text(body: bytes) -> str:
    """The server's message: `error.message` of an OpenAI-shaped body, else the body itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:600].decode("utf-8", errors="replace").strip() or "(empty body)"
    if isinstance(data, dict):
        inner = data.get("error", data.get("detail", data))
        if isinstance(inner, dict):
            return str(inner.get("message", inner))
        return str(inner)
    return str(data)


def _retry_after(headers: httpx.Headers | None) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
