"""What an unmask request must carry: a real reason, and not too many tokens at once."""

from __future__ import annotations

import re
from typing import Final

MIN_REASON_CHARS: Final = 12
_TRIVIAL = frozenset(
    {
        "test",
        "testing",
        "debug",
        "n/a",
        "na",
        "none",
        "no reason",
        "because",
        "asdf",
        "check",
        "investigation",
        "fraud",
        "ticket",
        "reason",
        "needed",
        "lookup",
    }
)

# Outcomes recorded in the audit log. The database writes REQUESTED first (it depends on
# nothing but the token), then, once that is committed and on disk, RELEASED (or erased,
# unknown, malformed) when it opens the vault; loginetl writes the rest.
REQUESTED: Final = "requested"
RELEASED: Final = "released"  # the database handed the ciphertext to this role
REVEALED: Final = "revealed"
UNKNOWN_TOKEN: Final = "unknown_token"  # noqa: S105 - an outcome name, not a secret
UNKNOWN_KEY_ID: Final = "unknown_key_id"
MALFORMED_TOKEN: Final = "malformed_token"  # noqa: S105 - an outcome name
ERASED: Final = "erased"  # forget or retention purged its vault entry (migration 0012)
DECRYPT_FAILED: Final = "decrypt_failed"
REFUSED_NO_VAULT_GRANT: Final = "refused_no_vault_grant"
REFUSED_NO_PRIVATE_KEY: Final = "refused_no_private_key"
REFUSED_NO_SIGNING_KEY: Final = "refused_no_signing_key"
# The value does not hash to the token (a planted vault entry), or cannot be checked.
REFUSED_TOKEN_MISMATCH: Final = "refused_token_mismatch"  # noqa: S105 - an outcome name
REFUSED_UNVERIFIABLE: Final = "refused_unverifiable"
REDERIVE: Final = "rederive"  # keys rederive: a bulk, in-memory decryption to map tokens


def reason_problem(reason: str) -> str | None:
    """Why a reason is not good enough, or None if it is.

    A reason must let an auditor find the case later: at least 12 characters, two words,
    and not a placeholder. "INC-4211 fraud investigation" passes; "test" does not.
    """
    text = " ".join(reason.split())
    if len(text) < MIN_REASON_CHARS:
        return f"a reason needs at least {MIN_REASON_CHARS} characters, e.g. a ticket and purpose"
    if len(text.split(" ")) < 2 or not re.search(r"[A-Za-z]", text):
        return "a reason needs words: say which case and why, e.g. 'INC-4211 fraud investigation'"
    if text.lower() in _TRIVIAL or len(set(text.lower()) - {" "}) < 4:
        return "that reason is a placeholder; name the case and the purpose"
    return None
