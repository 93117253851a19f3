"""The invariants, each checked by the soak's own clients (psycopg2 as the cluster's
superuser, boto3), never by loginetl's counters; each returns a list of violations."""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from tests.rollups import rollup_mismatches
from tests.soak.producer import Sent

NAMES = (
    "loaded-exactly-once",
    "dlq-with-reason",
    "nothing-in-flight",
    "fifo-order",
    "rollups-recount",
    "vault-referenced",
    "erased-gone",
    "audit-chain",
    "no-plaintext-pii",
    "rss-flat",
)


@dataclass
class Violation:
    invariant: str
    what: str
    messages: list[Sent] = field(default_factory=list)


@dataclass
class DeadLetters:
    """Every DLQ message the soak has received (and deleted), by its original id."""

    reasons: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    received: int = 0

    def drain(self, client: Any, url: str, timeout: float = 200) -> int:
        """Receive and delete until SQS reports nothing visible or in flight; return how many.

        In flight waits out the hold of a replay-dlq whose release an SQS cut refused (120 s
        by default, after which loginetl promises the message is visible again).
        """
        got = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                depth = client.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )["Attributes"]
                if sum(int(v) for v in depth.values()) == 0:
                    return got
                continue
            for message in batch:
                attributes = message.get("MessageAttributes", {})
                original = attributes.get("loginetl-original-message-id", {}).get("StringValue")
                reason = attributes.get("loginetl-reason", {}).get("StringValue", "")
                self.reasons[original or "sqs:" + message["MessageId"]].append(reason)
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
            got += len(batch)
            self.received += len(batch)
        return got  # what is left is reported as nothing-in-flight


def queue_left(client: Any, urls: Iterable[str]) -> dict[str, int]:
    """Visible + in flight + delayed, per queue, by SQS."""
    left = {}
    for url in urls:
        a = client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        left[url.rsplit("/", 1)[-1]] = sum(int(v) for v in a.values())
    return left


def loaded_exactly_once(
    conn: Connection, sent: list[Sent], erased: set[str]
) -> tuple[list[Violation], dict[str, int]]:
    """Every valid message sent has one row (its user erased: none); no row nobody sent."""
    rows = Counter(
        {
            key: n
            for key, n in conn.execute(
                text("SELECT idempotency_key, count(*) FROM user_logins GROUP BY 1")
            ).all()
        }
    )
    valid = [s for s in sent if s.valid]
    expected = {s.keys[0]: s for s in valid if s.user_id not in erased}
    missing = [s for k, s in expected.items() if rows.get(k, 0) == 0]
    doubled = [s for k, s in expected.items() if rows.get(k, 0) > 1]
    known = {s.keys[0] for s in valid}
    unknown = sorted(k for k in rows if k not in known)
    out = []
    if missing:
        out.append(
            Violation("loaded-exactly-once", f"{len(missing)} valid messages have no row", missing)
        )
    if doubled:
        out.append(
            Violation(
                "loaded-exactly-once",
                f"{len(doubled)} valid messages have more than one row",
                doubled,
            )
        )
    if unknown:
        out.append(
            Violation(
                "loaded-exactly-once",
                f"{len(unknown)} rows under a key no valid message was sent with, e.g. "
                + ", ".join(k[:40] for k in unknown[:3]),
            )
        )
    figures = {
        "valid sent": len(valid),
        "loaded once": sum(1 for k in expected if rows.get(k, 0) == 1),
        "erased (expected gone)": len(valid) - len(expected),
    }
    return out, figures


def dlq_with_reason(sent: list[Sent], dead: DeadLetters) -> tuple[list[Violation], dict[str, int]]:
    """Every invalid message has a DLQ copy with a reason; no valid message is dead-lettered."""
    invalid = [s for s in sent if not s.valid]
    missing = [s for s in invalid if not any(dead.reasons.get(k) for k in s.keys)]
    reasonless = [s for s in invalid if any("" in dead.reasons.get(k, []) for k in s.keys)]
    valid_dead = [s for s in sent if s.valid and any(k in dead.reasons for k in s.keys)]
    copies = sum(max((len(dead.reasons.get(k, [])) for k in s.keys), default=0) for s in invalid)
    out = []
    if missing:
        out.append(
            Violation(
                "dlq-with-reason", f"{len(missing)} invalid messages never reached the DLQ", missing
            )
        )
    if reasonless:
        out.append(
            Violation(
                "dlq-with-reason", f"{len(reasonless)} DLQ copies carry no reason", reasonless
            )
        )
    if valid_dead:
        out.append(
            Violation(
                "dlq-with-reason",
                f"{len(valid_dead)} valid messages were dead-lettered",
                valid_dead,
            )
        )
    figures = {
        "invalid sent": len(invalid),
        "in the DLQ": len(invalid) - len(missing),
        "extra DLQ copies": max(0, copies - (len(invalid) - len(missing))),
    }
    return out, figures


def fifo_order(conn: Connection, sent: list[Sent]) -> list[Violation]:
    """Within a group, a later message is never committed before an earlier one.

    Judged by each row's commit time (the cluster tracks commit timestamps), not by
    loaded_at: a transaction that started first can commit last, after waiting on another's
    rows, and then the order of loaded_at says nothing of the order of commits.
    """
    loaded = {
        key: (at, row_id)
        for key, at, row_id in conn.execute(
            text("SELECT idempotency_key, pg_xact_commit_timestamp(xmin), id FROM user_logins")
        ).all()
    }
    groups: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        if s.valid and s.group is not None and loaded.get(s.keys[0], (None,))[0] is not None:
            groups[s.group].append(s)
    out = []
    for group, messages in sorted(groups.items()):
        messages.sort(key=lambda s: s.group_seq or 0)
        for before, after in itertools.pairwise(messages):
            if loaded[after.keys[0]][0] < loaded[before.keys[0]][0]:
                out.append(
                    Violation(
                        "fifo-order",
                        f"group {group}: message {after.group_seq} committed before "
                        f"{before.group_seq} (at {loaded[after.keys[0]][0]} id "
                        f"{loaded[after.keys[0]][1]}, before {loaded[before.keys[0]][0]} id "
                        f"{loaded[before.keys[0]][1]})",
                        [before, after],
                    )
                )
                break
    return out


def rollups_recount(conn: Connection) -> list[Violation]:
    pending = conn.execute(text("SELECT count(*) FROM rollup_pending")).scalar_one()
    wrong = {t: n for t, n in rollup_mismatches(conn).items() if n}
    out = []
    if pending:
        out.append(Violation("rollups-recount", f"{pending} rows still pending after the drain"))
    if wrong:
        out.append(Violation("rollups-recount", f"rollups differ from a recount: {wrong}"))
    return out


def vault_referenced(conn: Connection) -> list[Violation]:
    """Every vault entry is some row's token, and every row's token has its entry."""
    orphans, missing, inbox = conn.execute(
        text(
            """
            WITH used AS (SELECT masked_ip AS t FROM user_logins
                          UNION SELECT masked_device_id FROM user_logins)
            SELECT (SELECT count(*) FROM pii_vault v
                     WHERE NOT EXISTS (SELECT 1 FROM used WHERE used.t = v.token)),
                   (SELECT count(*) FROM used
                     WHERE NOT EXISTS (SELECT 1 FROM pii_vault v WHERE v.token = used.t)),
                   (SELECT count(*) FROM vault_inbox)
            """
        )
    ).one()
    out = []
    if orphans:
        out.append(Violation("vault-referenced", f"{orphans} vault entries no row references"))
    if missing:
        out.append(Violation("vault-referenced", f"{missing} row tokens have no vault entry"))
    if inbox:
        out.append(
            Violation("vault-referenced", f"{inbox} entries still in the inbox after the drain")
        )
    return out


def erased_gone(conn: Connection, erased: set[str]) -> list[Violation]:
    if not erased:
        return []
    users = list(erased)
    found = conn.execute(
        text(
            "SELECT (SELECT count(*) FROM user_logins WHERE user_id = ANY(:u)) "
            "+ (SELECT count(*) FROM user_stats WHERE user_id = ANY(:u)) "
            "+ (SELECT count(*) FROM token_users WHERE user_id = ANY(:u))"
        ),
        {"u": users},
    ).scalar_one()
    if found:
        return [
            Violation(
                "erased-gone", f"{found} rows of erased users in user_logins/user_stats/token_users"
            )
        ]
    return []


def audit_chain(conn: Connection, forgets: int, unmasks: int) -> list[Violation]:
    """Each row links to the one before; every audited call the soak made is logged."""
    rows = conn.execute(
        text("SELECT seq, prev_hash, row_hash, outcome FROM unmask_audit ORDER BY seq")
    ).all()
    out = []
    for before, after in itertools.pairwise(rows):
        if after.prev_hash != before.row_hash or after.seq != before.seq + 1:
            out.append(Violation("audit-chain", f"the chain breaks at seq {after.seq}"))
            break
    outcomes = Counter(r.outcome for r in rows)
    if outcomes["forgotten"] < forgets:
        out.append(Violation("audit-chain", f"{forgets} forgets, {outcomes['forgotten']} logged"))
    if outcomes["revealed"] < unmasks:
        out.append(Violation("audit-chain", f"{unmasks} unmasks, {outcomes['revealed']} logged"))
    return out


def pii_pattern(values: Iterable[str]) -> re.Pattern[str]:
    """One regex for every plaintext value, never matching inside a longer number."""
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![0-9A-Za-z.:-])(?:{alternatives})(?![0-9A-Za-z.:-])")


def plaintext_in_tables(dump: str, pattern: re.Pattern[str]) -> list[Violation]:
    hits = {m.group(0) for m in pattern.finditer(dump)}
    if hits:
        return [
            Violation(
                "no-plaintext-pii", f"{len(hits)} plaintext values in a table's data (pg_dump)"
            )
        ]
    return []


def plaintext_in_files(files: Iterable[Path], pattern: re.Pattern[str]) -> list[Violation]:
    out = []
    for path in files:
        found = pattern.search(path.read_text(errors="replace"))
        if found:
            out.append(Violation("no-plaintext-pii", f"a plaintext value in {path.name}"))
    return out


def dump_data(pg_dump: str, database_url: str, as_owner: list[str]) -> str:
    """Every table's data but the vault's (and its inbox, which holds only sealed entries)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return subprocess.run(
        [
            *as_owner,
            pg_dump,
            "--data-only",
            "--exclude-table-data=public.pii_vault",
            "--exclude-table-data=public.vault_inbox",
            "-h",
            str(url.host),
            "-p",
            str(url.port),
            "-U",
            str(url.username),
            str(url.database),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def rss_flat(
    samples: list[tuple[float, str, float, int]], seconds: float
) -> tuple[list[Violation], str]:
    """Median RSS of settled consumers in the last window against the first.

    Settled: a process at least 20 s old (start-up is not a trend), so the first window
    starts at 20 s. The windows are a minute each, or a third of the remaining run when it
    is shorter than 3 minutes (the 2-minute CI soak). Only growth is a violation: a consumer
    restarted late in the run is smaller, not leaking.
    """
    warm = 20.0
    window = 60.0 if seconds - warm >= 180 else (seconds - warm) / 3
    settled = [(at, kb) for at, _, age, kb in samples if age >= warm]
    first = sorted(kb for at, kb in settled if at <= warm + window)
    last = sorted(kb for at, kb in settled if at >= seconds - window)
    if not first or not last:
        return [], f"not measured (first {len(first)}, last {len(last)} samples)"
    a, b = first[len(first) // 2], last[len(last) // 2]
    what = (
        f"median {a / 1024:.0f} MiB in {warm:.0f}-{warm + window:.0f} s, "
        f"{b / 1024:.0f} MiB in the last {window:.0f} s"
    )
    if b > a * 1.2:
        return [Violation("rss-flat", what + ": grew more than 20%")], what
    return [], what
