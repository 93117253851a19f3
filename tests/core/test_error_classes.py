"""Error classes: retry, isolate, or stop (pure)."""

from __future__ import annotations

import random
import time

import pytest

from loginetl.actions.retry_policy import CAP_SECONDS, Fatal, Outage, backoff_seconds
from loginetl.core.error_classes import classify_sqlstate, permanent_sqs_fix
from loginetl.errors import ServiceUnavailable


@pytest.mark.parametrize(
    "code",
    [
        None,  # the connection broke before the server answered
        "08006",  # connection_failure
        "08003",
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",
        "57P03",
        "53300",  # too_many_connections
        "53100",  # disk_full
        "53200",  # out_of_memory
    ],
)
def test_transient(code: str | None) -> None:
    assert classify_sqlstate(code) == "transient"


@pytest.mark.parametrize("code", ["23514", "23502", "22021", "22001", "22003", "23505"])
def test_data(code: str) -> None:
    assert classify_sqlstate(code) == "data"


@pytest.mark.parametrize("code", ["42501", "42P01", "42703", "XX000", "25P02"])
def test_fatal(code: str) -> None:
    assert classify_sqlstate(code) == "fatal"


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("AccessDenied", "sqs:ReceiveMessage"),
        ("AccessDeniedException", "sqs:ReceiveMessage"),
        ("InvalidClientTokenId", "AWS_ACCESS_KEY_ID"),
        ("UnrecognizedClientException", "AWS_ACCESS_KEY_ID"),
        ("ExpiredToken", "refresh"),
        ("SignatureDoesNotMatch", "secret access key"),
        ("InvalidParameterValue", "--visibility-timeout"),
        ("KMS.AccessDeniedException", "kms:Decrypt"),
    ],
)
def test_permanent_sqs_errors_name_the_fix(code: str, needle: str) -> None:
    fix = permanent_sqs_fix(code, "sqs:ReceiveMessage")
    assert fix is not None
    assert needle in fix


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailable", "InternalError", ""])
def test_retryable_sqs_errors_are_not_permanent(code: str) -> None:
    assert permanent_sqs_fix(code, "sqs:ReceiveMessage") is None


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(7)
    first = [backoff_seconds(1, rng) for _ in range(200)]
    assert min(first) >= 0.5
    assert max(first) <= 1.0
    assert len(set(first)) > 150
    assert all(2.0 <= backoff_seconds(3, rng) <= 4.0 for _ in range(100))
    assert all(CAP_SECONDS / 2 <= backoff_seconds(40, rng) <= CAP_SECONDS for _ in range(100))


def test_an_outage_gives_up_after_its_budget_unless_following() -> None:
    error = ServiceUnavailable("down")
    assert Outage(retry_seconds=60, follow=False).next_delay(error) <= 1.0
    with pytest.raises(Fatal) as stopped:
        Outage(retry_seconds=0, follow=False, since=time.monotonic() - 1).next_delay(error)
    assert stopped.value.error is error
    following = Outage(retry_seconds=0, follow=True, since=time.monotonic() - 3600)
    assert [following.next_delay(error) <= CAP_SECONDS for _ in range(50)] == [True] * 50
