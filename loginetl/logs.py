"""Logging rules every entry point shares (the CLI and the Lambda handler)."""

from __future__ import annotations

import logging

# Libraries whose debug output contains request bodies, i.e. plaintext PII: never below WARNING.
CHATTY = ("botocore", "boto3", "urllib3", "s3transfer", "sqlalchemy.engine")


def quiet_chatty_libraries() -> None:
    """Keep the libraries that log request and response bodies at WARNING, whatever the
    root level: a DLQ send's body is a login, plaintext ip and device_id included."""
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
