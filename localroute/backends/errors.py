"""Turning what a server or the network did into one of the client's typed errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

import openai

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
    """Map an `openai` SDK or network exception to the client's error types."""
    kw = {"role": site.role, "model": site.model, "url": site.url}
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return LLMTimeout(f"{site.where()}: no answer within the timeout", **kw)
    if isinstance(exc, openai.APIConnectionError):
        hint = f" {site.hint}" if site.hint else ""
        cause = exc.__cause__ or exc
        return LLMConnectionError(f"{site.where()}: cannot connect ({cause}).{hint}", **kw)
    if isinstance(exc, openai.APIStatusError):
        text = _status_text(exc)
        if exc.status_code in (400, 413) and is_overflow_message(text):
            return overflow_error(site, text)
        retry_after = _retry_after(exc)
        return LLMServerError(
            f"{site.where()}: HTTP {exc.status_code}: {text[:300]}",
            status=exc.status_code,
            retry_after=retry_after,
            **kw,
        )
    return LLMConnectionError(f"{site.where()}: {type(exc).__name__}: {exc}", **kw)


def _status_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message", inner))
        return str(inner)
    return str(exc.message)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
