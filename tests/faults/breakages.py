"""A test of the tests: break each promise with a one-line change and watch its proof fail.

For every promise in docs/guarantees.md (and docs/proofs.md, which lists these), a
one-line change to the code that would break it, and the scenario that must then fail.
Each breakage is applied to a throwaway copy of the tree (never to this one) and the
scenario is run there against the copy's code:

  .venv/bin/python -m tests.faults.breakages            # all of them (~10-15 minutes)
  .venv/bin/python -m tests.faults.breakages follow     # those whose name contains "follow"
  .venv/bin/python -m tests.faults.breakages --control delete-before   # unbroken: must pass

It prints one line a breakage, "fails as expected" or "DID NOT FAIL", and exits 1 if any
scenario passed with its promise broken.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAULTS = "tests/faults/test_faults.py::"


@dataclass(frozen=True)
class Breakage:
    name: str
    promise: str
    test: str  # pytest node id, relative to the tree's root
    path: str
    old: str  # occurs exactly once in path; differs from ``new`` on one line
    new: str


CONSUME = "loginetl/actions/consume.py"
FUNCTIONS = "loginetl/sql/functions/"
PIPELINE = "loginetl/actions/pipeline.py"
RECEIPT_AS_KEY = (
    "core/batch.py",
    "        return self.envelope_id or self.attributes.get(ATTR_ORIGINAL_MESSAGE_ID) or self.message_id\n",
    "        return self.receipt_handle\n",
)

OURS = "tests/faults/test_ours.py::"
LOAD = "loginetl/actions/load.py"
ALL_REFUSED = (
    "        if refused and len(refused) == len(batch.rows):  # not isolated: nothing was accepted\n",
    "        if False:\n",
)
HELD_BEHIND = (
    "            held = [m for m in behind(trusted, early.unsent) if m.message_id not in taken]\n",
    "            held: list[InboundMessage] = []\n",
)

BREAKAGES = [
    Breakage(
        "delete-before-commit",
        "deleted only after its row is committed",
        FAULTS + "test_kill_9_mid_batch_then_rerun[crash_before_commit]",
        PIPELINE,
        "        loaded = self.loader.load(batch, cache=cache, reseal=prepare)\n",
        "        self.acknowledger.sqs.delete(self.acknowledger.queue_url, batch.loadable); "
        "loaded = self.loader.load(batch, cache=cache, reseal=prepare)\n",
    ),
    Breakage(
        "key-per-delivery:after-commit",
        "a crash between commit and delete duplicates nothing",
        FAULTS + "test_kill_9_mid_batch_then_rerun[crash_after_commit]",
        "loginetl/" + RECEIPT_AS_KEY[0],
        RECEIPT_AS_KEY[1],
        RECEIPT_AS_KEY[2],
    ),
    Breakage(
        "follow-ignored",
        "--follow rides out an outage longer than --retry-seconds",
        FAULTS + "test_database_cut_off_then_down_longer_than_retry_seconds_while_following",
        "loginetl/actions/retry_policy.py",
        "        if not self.follow and time.monotonic() - self.since > self.retry_seconds:\n",
        "        if time.monotonic() - self.since > self.retry_seconds:\n",
    ),
    Breakage(
        "no-release-on-give-up",
        "past --retry-seconds the batch is released, exit 2, a rerun loads all",
        FAULTS + "test_database_down_longer_than_retry_seconds_without_follow",
        CONSUME,
        "            hold.release()\n            self._release(messages)\n            if isinstance",
        "            hold.release()\n            if isinstance",
    ),
    Breakage(
        "sqs-outage-fatal",
        "SQS unreachable mid-run is retried",
        FAULTS + "test_sqs_unreachable_at_start_and_restarted_mid_run",
        CONSUME,
        "                self._wait_out(outage, error)\n",
        "                raise Fatal(error) from None\n",
    ),
    Breakage(
        "reject-deleted-without-dlq",
        "a reject is never deleted unless the DLQ accepted it",
        FAULTS + "test_dlq_unavailable_keeps_the_invalid_message_in_the_queue",
        "loginetl/actions/acknowledge.py",
        "        accepted = [r for i, r in enumerate(rejected) if i not in failed]\n",
        "        accepted = list(rejected)\n",
    ),
    Breakage(
        "key-per-delivery:redelivery",
        "redelivery and concurrent consumers duplicate nothing",
        FAULTS + "test_four_processes_with_redeliveries",
        "loginetl/" + RECEIPT_AS_KEY[0],
        RECEIPT_AS_KEY[1],
        RECEIPT_AS_KEY[2],
    ),
    Breakage(
        "replay-drops-original-id",
        "an interrupted replay loses and duplicates nothing",
        FAULTS + "test_replay_interrupted_and_rerun",
        "loginetl/core/batch.py",
        "    attributes = {\n        **_identity_attributes(message),\n        ATTR_REPLAYS",
        "    attributes = {\n        ATTR_REPLAYS",
    ),
    Breakage(
        "sigterm-no-release",
        "SIGTERM commits the batch in hand and releases what came after",
        FAULTS + "test_sigterm_with_a_batch_open_and_a_receive_in_flight",
        CONSUME,
        # Two stop checks guard a batch received after the signal (the receive loop's and
        # the prefetched batch's), each enough here: break what both call, the release.
        "        failed = self.acknowledger.release(messages)\n        self._tally.add(released=",
        "        failed = 0  # broken: never released\n        self._tally.add(released=",
    ),
    Breakage(
        "delete-rejects-before-dlq-send",
        "a crash between a DLQ send and the delete loses nothing (DLQ copy again)",
        FAULTS + "test_kill_9_between_a_dlq_send_and_the_delete",
        "loginetl/actions/acknowledge.py",
        "        now = datetime.now(UTC)\n        outbound",
        "        now = datetime.now(UTC); self.sqs.delete(self.queue_url, [r.message for r in rejected])\n        outbound",
    ),
    Breakage(
        "fold-keeps-pending",
        "a crash inside the fold counts every row once (the fold deletes what it folds)",
        FAULTS + "test_kill_9_inside_the_fold_worker[crash_in_fold]",
        FUNCTIONS + "loginetl_fold_rollups.sql",
        "        DELETE FROM public.rollup_pending\n        WHERE ctid = ANY",
        "        UPDATE public.rollup_pending SET sign = sign\n        WHERE ctid = ANY",
    ),
    Breakage(
        "key-per-delivery:mid-delete",
        "a crash in the middle of a delete batch duplicates nothing",
        FAULTS + "test_kill_9_in_the_middle_of_a_delete_batch",
        "loginetl/" + RECEIPT_AS_KEY[0],
        RECEIPT_AS_KEY[1],
        RECEIPT_AS_KEY[2],
    ),
    Breakage(
        "fold-counts-skipped-rows",
        "the rollups count every loaded row once (never a skipped redelivery)",
        FAULTS + "test_kill_9_mid_batch_then_rerun[crash_after_commit]",
        FUNCTIONS + "loginetl_move_staged.sql",
        "               app_version_raw, create_date, loaded_at, 1 FROM new\n    )",
        "               app_version_raw, create_date, pg_catalog.now(), 1\n        FROM pg_temp.loginetl_staged_logins\n    )",
    ),
    Breakage(
        "nul-stored",
        "every hostile body lands in exactly one place, none crashes consume",
        "tests/e2e/test_hostile_input.py",
        "loginetl/core/messages.py",
        '    if "\\x00" in value:\n        return False',
        "    if False:\n        return False",
    ),
    Breakage(
        "parse-raises",
        "parse/validate/mask never raise anything but the domain's reject",
        "tests/core/test_messages.py",
        "loginetl/core/messages.py",
        "    except ValueError:  # JSONDecodeError",
        "    except KeyError:  # JSONDecodeError",
    ),
    Breakage(
        "body-in-dlq-detail",
        "no plaintext ip or device_id escapes",
        "tests/e2e/test_pii_canary.py::test_no_canary_escapes_anywhere_but_unmask_stdout",
        "loginetl/core/batch.py",
        "        ATTR_DETAIL: rejected.rejection.detail,\n",
        "        ATTR_DETAIL: rejected.message.body[:200],\n",
    ),
    Breakage(
        "password-in-errors",
        "secrets stay out of command lines, --help and errors",
        "tests/e2e/test_pii_canary.py",
        "loginetl/services/db.py",
        "        url = engine.url.render_as_string(hide_password=True)\n",
        "        url = engine.url.render_as_string(hide_password=False)\n",
    ),
    Breakage(
        "envelope-key-ignored",
        "an SNS/EventBridge redelivery (same envelope id, new SQS MessageId) loads once",
        "tests/e2e/test_envelopes.py::test_an_sns_redelivery_with_a_new_sqs_message_id_loads_once",
        "loginetl/" + RECEIPT_AS_KEY[0],
        RECEIPT_AS_KEY[1],
        "        return self.attributes.get(ATTR_ORIGINAL_MESSAGE_ID) or self.message_id\n",
    ),
    Breakage(
        "envelope-day-from-sqs",
        "an envelope loads once whatever day a redelivery arrives (its day is its own time)",
        "tests/core/test_envelope.py::"
        "test_a_redelivery_however_late_never_makes_a_second_row_on_another_day",
        "loginetl/core/batch.py",
        "        elif outcome.envelope_id is not None and not message.envelope_time_fits:\n",
        "        elif False:\n",
    ),
    Breakage(
        "lambda-debug-logs-bodies",
        "no entry point logs a body or plaintext PII at any level, the Lambda's DEBUG included",
        "tests/e2e/test_pii_canary.py::test_the_lambda_at_debug_logs_no_canary",
        "loginetl/lambda_handler.py",
        "    quiet_chatty_libraries()  # botocore at DEBUG would log a DLQ send's body: plaintext PII\n",
        "    pass\n",
    ),
    Breakage(
        "lambda-default-database",
        "the Lambda refuses to start without an explicit database setting",
        "tests/e2e/test_lambda.py::test_the_handler_refuses_to_start_without_a_database_setting",
        "loginetl/lambda_handler.py",
        "    if not database_url:\n",
        "    if False:\n",
    ),
    Breakage(
        "controls-printed-raw",
        "everything printed from data is inert",
        "tests/e2e/test_hostile_output.py",
        "loginetl/cli/output.py",
        "        elif unicodedata.category(char) in _HOSTILE_CATEGORIES:\n",
        "        elif False:\n",
    ),
    Breakage(
        "fifo-commits-behind-stuck",
        "a FIFO group's later message is never committed while an earlier one is retried",
        "tests/e2e/test_fifo.py::test_a_reject_the_fifo_dlq_cannot_take_holds_its_group_back",
        PIPELINE,
        *HELD_BEHIND,
    ),
    Breakage(
        "lambda-fifo-drops-held-back",
        "a FIFO Lambda reports a stuck record and everything it holds back in its group",
        "tests/e2e/test_lambda.py::"
        "test_on_fifo_a_stuck_record_holds_its_group_back_and_is_reported_with_all_after_it",
        "loginetl/lambda_handler.py",
        "    failed = outcome.retry  # on FIFO: a stuck record and what it held back in its group\n",
        "    failed = outcome.retry[:1]\n",
    ),
    *(
        Breakage(
            f"ours-dead-lettered:{name}",
            "a failure that is ours stops the line: exit 1, nothing dead-lettered, nothing lost",
            OURS + f"test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing[{fault}]",
            path,
            old,
            new,
        )
        for name, fault, path, old, new in (
            ("constraint", "a constraint that refuses every row", LOAD, *ALL_REFUSED),
            ("trigger", "a trigger that raises", LOAD, *ALL_REFUSED),
            (
                "sealer",
                "a sealer that fails",
                "loginetl/actions/prepare.py",
                "    if not failed or batch.rows:\n",
                "    if True:\n",
            ),
            (
                "write",
                "an unexpected exception in the write",
                LOAD,
                "                    raise _unexpected(error) from None\n",
                "                    raise _RowsRejected(Rejection(REJECTED_BY_DATABASE, "
                "type(error).__name__)) from None\n",
            ),
        )
    ),
    Breakage(
        "ours-lambda-answers-instead-of-raising",
        "a failure that is ours fails the Lambda invocation: every record comes back",
        OURS + "test_a_failure_that_is_ours_fails_the_lambda_invocation_and_dead_letters_nothing"
        "[a constraint that refuses every row]",
        "loginetl/lambda_handler.py",
        "        raise fatal.error from None\n",
        "        return batch_response(messages)\n",
    ),
    *(
        Breakage(
            f"fifo-dlq-gone-commits-behind:{entry}",
            "a FIFO group's later message is never committed while an earlier one is retried",
            OURS + f"test_fifo_dlq_taken_away_mid_run_holds_the_group_back_in_{entry}",
            PIPELINE,
            HELD_BEHIND[0],
            HELD_BEHIND[1],
        )
        for entry in ("consume", "the_lambda")
    ),
    Breakage(
        "fifo-dedup-per-send",
        "a FIFO DLQ copy resent after a crash is dropped (deduplication id from the original)",
        "tests/e2e/test_fifo.py::test_a_dead_letter_resent_after_a_crash_is_dropped_by_the_fifo_dlq",
        "loginetl/actions/acknowledge.py",
        '            deduplication_id=deduplication_id("dead-letter", message),\n',
        "            deduplication_id=deduplication_id(str(now), message),\n",
    ),
    Breakage(
        "forget-without-minus",
        "forget leaves the rollups exact: removed rows leave the counts, killed or not",
        "tests/faults/test_lifecycle_faults.py::test_kill_9_inside_forget_and_retention_then_rerun",
        FUNCTIONS + "loginetl_forget.sql",
        "               g.locale, g.app_version_raw, g.create_date, g.loaded_at, -1 FROM gone g\n",
        "               g.locale, g.app_version_raw, g.create_date, g.loaded_at, -1 FROM gone g WHERE false\n",
    ),
    Breakage(
        "retention-without-minus",
        "retention leaves the rollups exact: a dropped month leaves the counts",
        "tests/faults/test_lifecycle_faults.py::test_kill_9_inside_forget_and_retention_then_rerun",
        FUNCTIONS + "loginetl_retention_drop.sql",
        "        'SELECT *, -1 FROM gone), '\n",
        "        'SELECT *, -1 FROM gone WHERE false), '\n",
    ),
    Breakage(
        "writer-branches-on-the-vault",
        "the writer's statements do the same work for a stored and a new value",
        "tests/security/test_writer_learns_nothing.py::"
        "test_every_statement_of_the_writer_works_alike_for_a_stored_and_a_new_value",
        FUNCTIONS + "loginetl_move_staged.sql",
        "        FROM pg_temp.loginetl_staged_vault\n",
        "        FROM pg_temp.loginetl_staged_vault s WHERE NOT EXISTS "
        "(SELECT 1 FROM public.pii_vault v WHERE v.token = s.token)\n",
    ),
    Breakage(
        "statistics-keep-user-ids",
        "no loginetl role reads an erased user id or a purged token in the statistics",
        "tests/security/test_writer_learns_nothing.py::"
        "test_no_role_reads_an_erased_user_or_a_purged_token_in_the_statistics",
        "loginetl/sql/tables/user_logins.sql",
        "ALTER TABLE public.user_logins ALTER COLUMN user_id SET STATISTICS 0,\n",
        "ALTER TABLE public.user_logins ALTER COLUMN device_type SET STATISTICS 0,\n",
    ),
    Breakage(
        "purge-ignores-the-table",
        "the purge deletes a vault entry only when no row of user_logins holds its token",
        "tests/e2e/test_lifecycle.py::"
        "test_forget_keeps_the_vault_entry_of_a_row_written_around_the_rollups",
        FUNCTIONS + "loginetl_purge_candidates.sql",
        "                                      WHERE l.masked_ip = b.token)\n",
        "                                      WHERE l.masked_ip = b.token AND false)\n",
    ),
]


def tree_copy() -> Path:
    """This tree's tracked and untracked (not ignored) files, in a temporary directory."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = Path(tempfile.mkdtemp(prefix="loginetl-breakage-"))
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".localstack-venv").symlink_to(ROOT / ".localstack-venv")  # tools/localstack.py
    return copy


def check(breakage: Breakage) -> bool:
    """Apply the breakage to a copy, run its scenario there; True if the scenario failed."""
    copy = tree_copy()
    try:
        target = copy / breakage.path
        source = target.read_text()
        assert source.count(breakage.old) == 1, f"{breakage.name}: the line to break moved"
        target.write_text(source.replace(breakage.old, breakage.new))
        env = {**os.environ, "PYTHONPATH": str(copy)}  # the copy's loginetl, children too
        # The build maps migrations/ to loginetl._migrations; the editable install's mapping
        # points at the original tree, so the copy gets the same mapping as a link of its own.
        (copy / "loginetl" / "_migrations").symlink_to(Path("..") / "migrations")
        imported = (
            "import loginetl, loginetl._migrations as m; print(loginetl.__file__, m.__file__)"
        )
        where = subprocess.run(
            [sys.executable, "-c", imported],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert all(w.startswith(str(copy)) for w in where), f"not the copy's code: {where}"
        marker = ["-m", "slow"] if breakage.test.startswith((FAULTS, OURS)) else []
        pytest = [sys.executable, "-m", "pytest", *marker, "-x", "-q", "-p", "no:cacheprovider"]
        run = subprocess.run(
            [*pytest, breakage.test],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
        )
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        reason = next((line for line in run.stdout.splitlines() if line.startswith("E ")), "")
        print(f"    {summary}\n    {reason[:150]}", flush=True)
        # A failed assertion, not an error in set-up (which would prove nothing).
        return run.returncode == 1 and " failed" in summary and " error" not in summary
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(filters: list[str]) -> int:
    control = "--control" in filters  # the same machinery, the line left as it is: must pass
    filters = [f for f in filters if f != "--control"]
    chosen = [b for b in BREAKAGES if not filters or any(f in b.name for f in filters)]
    if control:
        chosen = [dataclasses.replace(b, new=b.old) for b in chosen]
    failures = 0
    for breakage in chosen:
        started = time.monotonic()
        failed = check(breakage)
        failures += failed if control else not failed
        if control:
            verdict = "CONTROL FAILED" if failed else "control passes"
        else:
            verdict = "fails as expected" if failed else "DID NOT FAIL"
        print(
            f"{breakage.name:<34} {verdict:<18} {time.monotonic() - started:5.0f} s  "
            f"{breakage.test.removeprefix(FAULTS)}",
            flush=True,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
