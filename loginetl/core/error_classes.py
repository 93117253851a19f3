"""Classify failures the way a production consumer must: retry, isolate, or stop.

Pure: callers pass the SQLSTATE (PostgreSQL) or the error code (SQS) they found.

- transient: a retry can cure it (lost connection, deadlock, serialization failure, lock
  or statement timeout, admin shutdown, too many connections, out of resources). The batch
  stays hidden and is retried with jittered exponential back-off.
- data: the database refuses these rows (check or not-null violation, invalid byte
  sequence, value out of range). The batch is split to find the rows, which are
  dead-lettered; the rest load.
- fatal: anything else (permissions, a missing table): no retry can cure it, stop.
"""

from __future__ import annotations

from typing import Final, Literal

ErrorClass = Literal["transient", "data", "fatal"]

_TRANSIENT_CLASSES: Final = ("08", "53")  # connection exception, insufficient resources
_TRANSIENT_CODES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, shutting down)
        "58000",  # system_error
        "58030",  # io_error
    }
)
_DATA_CLASSES: Final = ("22", "23")  # data exception, integrity constraint violation


def classify_sqlstate(sqlstate: str | None) -> ErrorClass:
    """The class of a PostgreSQL error; None (no SQLSTATE: the link broke) is transient."""
    if sqlstate is None or sqlstate in _TRANSIENT_CODES or sqlstate[:2] in _TRANSIENT_CLASSES:
        return "transient"
    if sqlstate[:2] in _DATA_CLASSES:
        return "data"
    return "fatal"


# SQS (and STS/KMS behind it) error codes that no retry cures, with the fix.
_CREDENTIALS: Final = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile"
_PERMANENT_SQS: Final = {
    "AccessDenied": "grant {action} on the queue to this identity",
    "AccessDeniedException": "grant {action} on the queue to this identity",
    "KMS.AccessDeniedException": "grant kms:Decrypt and kms:GenerateDataKey on the queue's key",
    "KMS.DisabledException": "enable the queue's KMS key",
    "InvalidClientTokenId": f"the access key id is not known to AWS; {_CREDENTIALS}",
    "UnrecognizedClientException": f"the access key id is not known to AWS; {_CREDENTIALS}",
    "SignatureDoesNotMatch": f"the secret access key does not match; {_CREDENTIALS}",
    "IncompleteSignature": f"the request signature is incomplete; {_CREDENTIALS}",
    "MissingAuthenticationToken": f"no credentials were sent; {_CREDENTIALS}",
    "ExpiredToken": "the session token has expired; refresh the credentials",
    "ExpiredTokenException": "the session token has expired; refresh the credentials",
    "RequestExpired": "the request expired; check this host's clock",
    "InvalidParameterValue": "check --visibility-timeout, --wait-seconds and the queue settings",
    "InvalidAttributeName": "check the queue's attribute names",
    "InvalidAttributeValue": "check the queue's attribute values",
    "OptInRequired": "enable SQS for this account and region",
    "InvalidSecurity": "use an https endpoint the queue policy allows",
}


def permanent_sqs_fix(code: str, action: str) -> str | None:
    """The fix for an SQS error code no retry can cure, or None if it may be transient."""
    fix = _PERMANENT_SQS.get(code)
    return fix.format(action=action) if fix is not None else None
