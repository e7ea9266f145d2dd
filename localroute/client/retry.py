"""The one retry policy of model calls, for the plain and the streaming paths alike.

What is retryable is the error's own verdict (`LLMError.retryable`: connection failures,
timeouts, 429 and 5xx); how long to wait is exponential backoff with full jitter, unless the
server said how long (`Retry-After`, capped). A stream that has sent text to its reader is never
retried: the reader has already seen part of an answer that a retry would not repeat.
"""

from __future__ import annotations

import random

from localroute.types import LLMError

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt + 1` (0-based): a server's Retry-After wins
    when given (capped), else full jitter over an exponential window."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), BACKOFF_CAP_S)
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def should_retry(failure: LLMError, attempt: int, retries: int, *, emitted: bool = False) -> bool:
    """Whether attempt number `attempt` (1-based), which failed with `failure`, gets another:
    a retryable error, attempts left, and (streams) nothing sent yet."""
    return failure.retryable and attempt <= retries and not emitted


def delay_after(failure: LLMError, attempt: int) -> float:
    """The wait before the attempt after `attempt` (1-based)."""
    return backoff_delay(attempt - 1, getattr(failure, "retry_after", None))
