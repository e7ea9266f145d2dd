"""The one retry policy (client/retry.py) both the plain and the streaming paths use. The real
paths against a fault proxy are in test_client_faults.py (a stream cut before any text is
retried, one cut mid-answer is not; a 429's Retry-After is honoured)."""

from __future__ import annotations

import pytest

from localroute.client.retry import BACKOFF_CAP_S, backoff_delay, delay_after, should_retry
from localroute.types import LLMConnectionError, LLMContextOverflow, LLMServerError, LLMTimeout


@pytest.mark.parametrize("failure", [LLMTimeout("t"), LLMConnectionError("c"),
                                     LLMServerError("s", status=503),
                                     LLMServerError("s", status=429)])
def test_transient_failures_are_retried_while_attempts_last(failure: Exception) -> None:
    assert should_retry(failure, attempt=1, retries=2)  # type: ignore[arg-type]
    assert should_retry(failure, attempt=2, retries=2)  # type: ignore[arg-type]
    assert not should_retry(failure, attempt=3, retries=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("failure", [LLMServerError("bad request", status=400),
                                     LLMContextOverflow("o", prompt_tokens=9, context_length=8)])
def test_failures_a_retry_cannot_mend_are_not_retried(failure: Exception) -> None:
    assert not should_retry(failure, attempt=1, retries=5)  # type: ignore[arg-type]


def test_a_stream_that_sent_text_is_never_retried() -> None:
    failure = LLMConnectionError("cut")
    assert should_retry(failure, attempt=1, retries=3, emitted=False)
    assert not should_retry(failure, attempt=1, retries=3, emitted=True)


def test_retry_after_wins_and_is_capped() -> None:
    assert delay_after(LLMServerError("slow down", status=429, retry_after=1.5), 1) == 1.5
    assert delay_after(LLMServerError("slow down", status=429, retry_after=600), 1) == BACKOFF_CAP_S
    assert backoff_delay(0, retry_after=-3) == 0.0


def test_backoff_is_jittered_within_a_growing_window() -> None:
    for attempt in range(8):
        window = min(BACKOFF_CAP_S, 0.2 * 2**attempt)
        delays = [backoff_delay(attempt) for _ in range(200)]
        assert all(0 <= d <= window for d in delays)
        assert len(set(delays)) > 100  # jitter, not one fixed wait
