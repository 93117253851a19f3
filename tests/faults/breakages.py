"""A test of the tests: break each promise with a one-line change and watch its proof fail.

Each breakage is one distinct mutation of the code (``old`` replaced by ``new`` in
``path``), the one test it must make fail (``test``, a single node), and the failure it
expects (``expect``, a substring of the failing assertion: pytest's ``>`` and ``E`` lines).
It is applied to a throwaway copy of the tree (never to this one) and the test is run
there against the copy's code. The promise each breakage stands for, and the promises no
breakage covers (``UNCOVERED``, with the reason), are in tests/faults/promises.py, from
which docs/promises.md is generated.

  .venv/bin/python -m tests.faults.breakages                  # all of them, 2 at a time
  .venv/bin/python -m tests.faults.breakages follow epoch     # names containing either
  .venv/bin/python -m tests.faults.breakages --control purge  # unbroken: each must pass
  .venv/bin/python -m tests.faults.breakages --jobs 1         # one at a time

One line a breakage: "fails as expected" (its test failed, for the named reason), "FAILED
FOR ANOTHER REASON" (a failure, but not the one named, or an error in set-up: proves
nothing) or "DID NOT FAIL"; then the total wall time, and again, with their detail, the
ones that did not hold (the tail of a CI log shows them). Exits 1 unless every breakage
fails as expected (with --control: unless every test passes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tests.faults.promises import PROMISES

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 900  # the slowest scenario takes about a minute alone


@dataclass(frozen=True)
class Breakage:
    """One mutation of the code and the one test that must then fail, for the named reason."""

    name: str
    change: str  # what the mutation does, in a few words (docs/promises.md shows it)
    test: str  # one pytest node id, relative to the tree's root
    path: str
    old: str  # occurs exactly once in path
    new: str  # differs from old
    expect: str  # a substring of the failing assertion (pytest's ">" and "E" lines)


FUNCTIONS = "loginetl/sql/functions/"
PIPELINE = "loginetl/actions/pipeline.py"
CONSUME = "loginetl/actions/consume.py"
ACKNOWLEDGE = "loginetl/actions/acknowledge.py"
LOAD = "loginetl/actions/load.py"
BATCH = "loginetl/core/batch.py"
LAMBDA = "loginetl/lambda_handler.py"
FAULTS = "tests/faults/test_faults.py::"
OURS = "tests/faults/test_ours.py::"
SECURITY = "tests/security/"
IDENTITY = "        return self.envelope_id or self.attributes.get(ATTR_ORIGINAL_MESSAGE_ID) or self.message_id\n"

BREAKAGES = [
    # -- delivery: docs/guarantees.md ------------------------------------------------------
    Breakage(
        "delete-before-commit",
        "process deletes the batch before loading it",
        FAULTS + "test_kill_9_mid_batch_then_rerun[crash_before_commit]",
        PIPELINE,
        "        loaded = self.loader.load(batch, cache=cache, reseal=prepare)\n",
        "        self.acknowledger.sqs.delete(self.acknowledger.queue_url, batch.loadable); "
        "loaded = self.loader.load(batch, cache=cache, reseal=prepare)\n",
        "LOST",
    ),
    Breakage(
        "key-per-delivery",
        "the idempotency key is the receipt handle, new with every delivery",
        FAULTS + "test_kill_9_mid_batch_then_rerun[crash_after_commit]",
        BATCH,
        IDENTITY,
        "        return self.receipt_handle\n",
        'summary["duplicates_skipped"] >= 1',
    ),
    Breakage(
        "envelope-key-ignored",
        "the idempotency key ignores the envelope's own id",
        "tests/e2e/test_envelopes.py::test_an_sns_redelivery_with_a_new_sqs_message_id_loads_once",
        BATCH,
        IDENTITY,
        "        return self.attributes.get(ATTR_ORIGINAL_MESSAGE_ID) or self.message_id\n",
        "assert (2, 0) == (1, 1)",
    ),
    Breakage(
        "fold-counts-skipped-rows",
        "the move queues every staged row for the fold, skipped redeliveries too",
        FAULTS + "test_kill_9_mid_batch_then_rerun[crash_after_commit]",
        FUNCTIONS + "loginetl_move_staged.sql",
        "               app_version_raw, create_date, loaded_at, 1 FROM new\n    )",
        "               app_version_raw, create_date, pg_catalog.now(), 1\n"
        "        FROM pg_temp.loginetl_staged_logins\n    )",
        "ROLLUPS",
    ),
    Breakage(
        "follow-ignored",
        "the outage budget applies under --follow too",
        FAULTS + "test_database_cut_off_then_down_longer_than_retry_seconds_while_following",
        "loginetl/actions/retry_policy.py",
        "        if not self.follow and time.monotonic() - self.since > self.retry_seconds:\n",
        "        if time.monotonic() - self.since > self.retry_seconds:\n",
        "--follow must keep running through the outage",
    ),
    Breakage(
        "no-release-on-give-up",
        "giving up on an outage keeps the batch in flight instead of releasing it",
        FAULTS + "test_database_down_longer_than_retry_seconds_without_follow",
        CONSUME,
        "            hold.release()\n            self._release(messages)\n            if isinstance",
        "            hold.release()\n            if isinstance",
        "depth.in_flight == 0",
    ),
    Breakage(
        "sqs-outage-fatal",
        "an SQS outage mid-run stops consume instead of being waited out",
        FAULTS + "test_sqs_unreachable_at_start_and_restarted_mid_run",
        CONSUME,
        "                self._wait_out(outage, error)\n",
        "                raise Fatal(error) from None\n",
        "to receive messages (EndpointConnectionError)",
    ),
    Breakage(
        "reject-deleted-without-dlq",
        "every reject counts as dead-lettered, whatever the DLQ answered",
        FAULTS + "test_dlq_unavailable_keeps_the_invalid_message_in_the_queue",
        ACKNOWLEDGE,
        "        accepted = [r for i, r in enumerate(rejected) if i not in failed]\n",
        "        accepted = list(rejected)\n",
        'summary["dead_lettered"] == 0',
    ),
    Breakage(
        "replay-drops-original-id",
        "replay sends a message back without its original id",
        FAULTS + "test_replay_interrupted_and_rerun",
        BATCH,
        "    attributes = {\n        **_identity_attributes(message),\n        ATTR_REPLAYS",
        "    attributes = {\n        ATTR_REPLAYS",
        "DUPLICATED",
    ),
    Breakage(
        "sigterm-no-release",
        "what came after the stop is never released",
        FAULTS + "test_sigterm_with_a_batch_open_and_a_receive_in_flight",
        CONSUME,
        # Two stop checks guard a batch received after the signal (the receive loop's and
        # the prefetched batch's), each enough here: break what both call, the release.
        "        failed = self.acknowledger.release(messages)\n        self._tally.add(released=",
        "        failed = 0  # broken: never released\n        self._tally.add(released=",
        "(depth.in_flight, depth.visible) == (0, len(bodies) - 10)",
    ),
    Breakage(
        "delete-rejects-before-dlq-send",
        "rejects are deleted before their DLQ send",
        FAULTS + "test_kill_9_between_a_dlq_send_and_the_delete",
        ACKNOWLEDGE,
        "        now = datetime.now(UTC)\n        outbound",
        "        now = datetime.now(UTC); self.sqs.delete(self.queue_url, [r.message for r in rejected])\n"
        "        outbound",
        'summary["dead_lettered"] == 5',
    ),
    Breakage(
        "fold-keeps-pending",
        "the fold leaves what it folded in rollup_pending",
        FAULTS + "test_kill_9_inside_the_fold_worker[crash_in_fold]",
        FUNCTIONS + "loginetl_fold_rollups.sql",
        "        DELETE FROM public.rollup_pending\n        WHERE ctid = ANY",
        "        UPDATE public.rollup_pending SET sign = sign\n        WHERE ctid = ANY",
        'json.loads(out)["behind_seconds"] == 0',
    ),
    Breakage(
        "nul-stored",
        "a NUL character counts as storable text",
        "tests/e2e/test_hostile_input.py::test_each_hostile_body_lands_in_exactly_one_place",
        "loginetl/core/messages.py",
        '    if "\\x00" in value:\n        return False',
        "    if False:\n        return False",
        "nul in a field",
    ),
    Breakage(
        "parse-raises",
        "parse_login catches KeyError instead of the JSON decoder's ValueError",
        # Not the hypothesis property (also a proof): with several distinct failing examples it
        # reports an ExceptionGroup outside pytest's E lines; this case fails the same way, always.
        "tests/core/test_messages.py::test_rejections_carry_a_stable_reason[not json-invalid_json]",
        "loginetl/core/messages.py",
        "    except ValueError:  # JSONDecodeError",
        "    except KeyError:  # JSONDecodeError",
        "JSONDecodeError",
    ),
    Breakage(
        "body-in-dlq-detail",
        "the DLQ detail attribute carries the body",
        "tests/e2e/test_pii_canary.py::test_no_canary_escapes_anywhere_but_unmask_stdout",
        BATCH,
        "        ATTR_DETAIL: rejected.rejection.detail,\n",
        "        ATTR_DETAIL: rejected.message.body[:200],\n",
        "first extra item: '203.0.113.77'",
    ),
    Breakage(
        "password-in-errors",
        "a database error prints the URL with its password",
        "tests/e2e/test_pii_canary.py::test_secrets_stay_out_of_help_errors_and_command_lines",
        "loginetl/services/db.py",
        "        url = engine.url.render_as_string(hide_password=True)\n",
        "        url = engine.url.render_as_string(hide_password=False)\n",
        '"hunter2-secret" not in text',
    ),
    Breakage(
        "envelope-day-from-sqs",
        "an envelope's time is not bounded by SQS's send time",
        "tests/core/test_envelope.py::"
        "test_a_redelivery_however_late_never_makes_a_second_row_on_another_day",
        BATCH,
        "        elif outcome.envelope_id is not None and not message.envelope_time_fits:\n",
        "        elif False:\n",
        "assert len(keys) == 1",
    ),
    Breakage(
        "lambda-debug-logs-bodies",
        "the Lambda leaves botocore's DEBUG logging on",
        "tests/e2e/test_pii_canary.py::test_the_lambda_at_debug_logs_no_canary",
        LAMBDA,
        "    quiet_chatty_libraries()  # botocore at DEBUG would log a DLQ send's body: plaintext PII\n",
        "    pass\n",
        "first extra item: '203.0.113.77'",
    ),
    Breakage(
        "lambda-default-database",
        "the Lambda starts without a database setting",
        "tests/e2e/test_lambda.py::test_the_handler_refuses_to_start_without_a_database_setting",
        LAMBDA,
        "    if not database_url:\n",
        "    if False:\n",
        "'set LOGINETL_DATABASE_URL or LOGINETL_DATABASE_URL_FILE' in",
    ),
    Breakage(
        "controls-printed-raw",
        "control, bidi and format characters are printed raw",
        "tests/e2e/test_hostile_output.py::test_every_command_prints_hostile_data_inert",
        "loginetl/cli/output.py",
        "        elif unicodedata.category(char) in _HOSTILE_CATEGORIES:\n",
        "        elif False:\n",
        'assert revealed.stdout == "dev',
    ),
    Breakage(
        "fifo-commits-behind-stuck",
        "nothing is held behind a stuck message of its FIFO group",
        "tests/e2e/test_fifo.py::test_a_reject_the_fifo_dlq_cannot_take_holds_its_group_back",
        PIPELINE,
        "            held = [m for m in behind(trusted, early.unsent) if m.message_id not in taken]\n",
        "            held: list[InboundMessage] = []\n",
        'summary["loaded"] == 3',
    ),
    Breakage(
        "lambda-fifo-drops-held-back",
        "the FIFO Lambda reports the stuck record alone",
        "tests/e2e/test_lambda.py::"
        "test_on_fifo_a_stuck_record_holds_its_group_back_and_is_reported_with_all_after_it",
        LAMBDA,
        "    failed = outcome.retry  # on FIFO: a stuck record and what it held back in its group\n",
        "    failed = outcome.retry[:1]\n",
        "Right contains one more item",
    ),
    Breakage(
        "fifo-dedup-per-send",
        "a FIFO DLQ copy's deduplication id comes from the signed copy (its send time)",
        "tests/e2e/test_fifo.py::test_a_dead_letter_resent_after_a_crash_is_dropped_by_the_fifo_dlq",
        ACKNOWLEDGE,
        "        deduplication_id=deduplication_id(purpose, message),\n",
        '        deduplication_id=signed["loginetl-attr-tag"][:64],\n',
        "one copy each, not two",
    ),
    Breakage(
        "preparation-blames-the-batch",
        "a batch whose preparation failed is prepared whole again for each message",
        "tests/e2e/test_rollout.py::"
        "test_an_unexpected_error_preparing_a_batch_dead_letters_only_the_message_at_fault",
        "loginetl/actions/prepare.py",
        "            prepare([message])\n",
        "            prepare(messages)\n",
        "masking and sealing failed for every message of a batch",
    ),
    Breakage(
        "ours-all-refused-dead-lettered",
        "a batch the database refuses whole is dead-lettered row by row",
        OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
        "[a constraint that refuses every row]",
        LOAD,
        "        if refused and len(refused) == len(batch.rows):  # not isolated: nothing was accepted\n",
        "        if False:\n",
        "assert code == 1, err",
    ),
    Breakage(
        "ours-sealer-dead-lettered",
        "a sealer failing for every message dead-letters them",
        OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
        "[a sealer that fails]",
        "loginetl/actions/prepare.py",
        "    if not failed or batch.rows:\n",
        "    if True:\n",
        "assert code == 1, err",
    ),
    Breakage(
        "ours-write-isolated",
        "an unexpected exception in the write is taken for a row refusal",
        OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
        "[an unexpected exception in the write]",
        LOAD,
        "                    raise _unexpected(error) from None\n",
        "                    raise _RowsRejected(Rejection(REJECTED_BY_DATABASE, "
        "type(error).__name__)) from None\n",
        "unexpected RuntimeError, a fault of loginetl's",
    ),
    Breakage(
        "ours-lambda-answers-instead-of-raising",
        "the Lambda returns every record as failed instead of raising",
        OURS + "test_a_failure_that_is_ours_fails_the_lambda_invocation_and_dead_letters_nothing"
        "[a constraint that refuses every row]",
        LAMBDA,
        "        raise fatal.error from None\n",
        "        return batch_response(messages)\n",
        "DID NOT RAISE LoginetlError",
    ),
    Breakage(
        "forget-without-minus",
        "forget queues no -1 for the rows it removes",
        "tests/faults/test_lifecycle_faults.py::test_kill_9_inside_forget_and_retention_then_rerun",
        FUNCTIONS + "loginetl_forget.sql",
        "               g.locale, g.app_version_raw, g.create_date, g.loaded_at, -1 FROM gone g\n",
        "               g.locale, g.app_version_raw, g.create_date, g.loaded_at, -1 FROM gone g "
        "WHERE false\n",
        'assert forgotten["rollups_exact"]',
    ),
    Breakage(
        "retention-without-minus",
        "a dropped month queues no -1 for its rows",
        "tests/faults/test_lifecycle_faults.py::test_kill_9_inside_forget_and_retention_then_rerun",
        FUNCTIONS + "loginetl_retention_drop.sql",
        "        'SELECT *, -1 FROM gone), '\n",
        "        'SELECT *, -1 FROM gone WHERE false), '\n",
        'assert half["rollups_exact"]',
    ),
    Breakage(
        "bisection-blames-first-row",
        "a refused part is blamed on its first row instead of being halved",
        "tests/e2e/test_rollout.py::test_rows_the_database_refuses_are_found_and_dead_lettered_alone",
        LOAD,
        "            if len(rows) == 1:\n                refused[rows[0].idempotency_key]",
        "            if True:\n                refused[rows[0].idempotency_key]",
        'summary["loaded"] == 39',
    ),
    Breakage(
        "statement-timeout-fatal",
        "SQLSTATE 57014 (statement timeout) is not transient",
        "tests/core/test_error_classes.py::test_transient[57014]",
        "loginetl/core/error_classes.py",
        '        "57014",  # query_canceled (statement_timeout)\n',
        "",
        "assert 'fatal' == 'transient'",
    ),
    Breakage(
        "access-denied-retried",
        "SQS's AccessDenied is not permanent",
        "tests/core/test_error_classes.py::"
        "test_permanent_sqs_errors_name_the_fix[AccessDenied-sqs:ReceiveMessage]",
        "loginetl/core/error_classes.py",
        '    "AccessDenied": "grant {action} on the queue to this identity",\n',
        "",
        "assert fix is not None",
    ),
    Breakage(
        "attribute-tag-unchecked",
        "the HMAC tag of loginetl-* attributes is not compared",
        "tests/core/test_attributes.py::test_the_tag_binds_the_body",
        "loginetl/core/attributes.py",
        "        or not hmac.compare_digest(_tag(key, mine, body), tag)\n",
        "        or False\n",
        'a.verify(signed, BODY + " ", KEYS, now=NOW).dropped',
    ),
    Breakage(
        "attribute-range-unchecked",
        "signed loginetl-* values are kept whatever their range",
        "tests/core/test_attributes.py::"
        "test_signed_values_out_of_range_are_dropped_alone[loginetl-original-sent-at-999999999999999]",
        "loginetl/core/attributes.py",
        "    good = {k: v for k, v in mine.items() if _in_range(k, v, now)}\n",
        "    good = dict(mine)\n",
        "assert verified.dropped",
    ),
    Breakage(
        "heartbeat-too-late",
        "the visibility heartbeat fires after three timeouts instead of a third of one",
        "tests/faults/test_rollout.py::test_a_commit_slower_than_the_visibility_timeout",
        "loginetl/actions/visibility.py",
        "        self.period = visibility_timeout / 3\n",
        "        self.period = visibility_timeout * 3\n",
        "nothing was delivered twice",
    ),
    Breakage(
        "schema-ahead-undeclared-accepted",
        "a newer revision that declares nothing is accepted",
        "tests/services/test_rollout_services.py::"
        "test_a_schema_ahead_that_does_not_declare_compatibility_is_refused[None]",
        "loginetl/services/migrations.py",
        "        {r for r in unknown if r not in declared} | {r for r in newer if declared[r] not in known}\n",
        "        {r for r in newer if declared[r] not in known}\n",
        "DID NOT RAISE SchemaNotAtHead",
    ),
    Breakage(
        "non-utf8-accepted",
        "a database not encoded UTF-8 is accepted",
        "tests/services/test_rollout_services.py::test_a_non_utf8_database_is_refused_with_a_sentence",
        "loginetl/services/db.py",
        '    if encoding != "UTF8":\n',
        "    if False:\n",
        "DID NOT RAISE ConfigError",
    ),
    # -- security: docs/security.md --------------------------------------------------------
    Breakage(
        "writer-branches-on-the-vault",
        "the move appends only the vault entries whose token is not stored yet",
        SECURITY + "test_writer_learns_nothing.py::"
        "test_every_statement_of_the_writer_works_alike_for_a_stored_and_a_new_value",
        FUNCTIONS + "loginetl_move_staged.sql",
        "        FROM pg_temp.loginetl_staged_vault\n",
        "        FROM pg_temp.loginetl_staged_vault s WHERE NOT EXISTS "
        "(SELECT 1 FROM public.pii_vault v WHERE v.token = s.token)\n",
        "assert first_stored == first_new",
    ),
    Breakage(
        "writer-reads-user-logins",
        "grants.sql lets the writer SELECT user_logins",
        SECURITY + "test_writer_privileges.py::"
        "test_writer_cannot_read_tokens_back[SELECT masked_ip FROM user_logins]",
        "loginetl/sql/grants.sql",
        "    TO loginetl_writer;\n",
        "    TO loginetl_writer;\nGRANT SELECT ON public.user_logins TO loginetl_writer;\n",
        "assert None == '42501'",
    ),
    Breakage(
        "analyst-reads-the-vault",
        "grants.sql lets the analyst SELECT pii_vault",
        SECURITY + "test_vault_access.py::"
        "test_no_role_reads_the_vault_directly[SELECT ciphertext FROM pii_vault-analyst]",
        "loginetl/sql/grants.sql",
        "    public.rollup_months, public.rollup_hourly, public.token_aliases TO loginetl_analyst;\n",
        "    public.rollup_months, public.rollup_hourly, public.token_aliases, public.pii_vault "
        "TO loginetl_analyst;\n",
        "DID NOT RAISE",
    ),
    Breakage(
        "open-before-commit",
        "the vault opens for a request row that is not committed",
        SECURITY + "test_vault_access.py::test_open_needs_a_committed_audit_row_of_ones_own",
        FUNCTIONS + "loginetl_committed_audit_row.sql",
        "        RAISE EXCEPTION 'audit row % is not committed yet: commit it, then fetch', p_seq\n",
        "        RAISE NOTICE 'audit row % is not committed yet: commit it, then fetch', p_seq\n",
        "DID NOT RAISE ProgrammingError",
    ),
    Breakage(
        "open-another-logins-row",
        "the vault opens for another login's request row",
        SECURITY + "test_vault_access.py::test_another_login_cannot_use_my_audit_row",
        FUNCTIONS + "loginetl_committed_audit_row.sql",
        "    IF NOT FOUND OR r.db_role <> session_user OR r.outcome <> p_outcome\n",
        "    IF NOT FOUND OR r.outcome <> p_outcome\n",
        "DID NOT RAISE ProgrammingError",
    ),
    Breakage(
        "open-before-durable",
        "the vault opens before the request's commit is on disk",
        SECURITY
        + "test_audit_first.py::test_with_synchronous_commit_off_the_open_waits_for_the_flush",
        FUNCTIONS + "loginetl_committed_audit_row.sql",
        "    PERFORM public.loginetl_await_durable(pg_catalog.pg_current_wal_insert_lsn(), "
        "interval '5 seconds');\n",
        "    PERFORM 1;\n",
        "pages and took >= writer_cycles",
    ),
    Breakage(
        "forget-granted-to-the-analyst",
        "grants.sql lets the analyst execute the forget functions",
        SECURITY + "test_lifecycle_privileges.py::"
        "test_only_the_eraser_may_forget_and_only_the_maintainer_may_apply_retention",
        "loginetl/sql/grants.sql",
        "    public.loginetl_forget(bigint, text) TO loginetl_eraser;\n",
        "    public.loginetl_forget(bigint, text) TO loginetl_eraser, loginetl_analyst;\n",
        "DID NOT RAISE DBAPIError",
    ),
    Breakage(
        "audit-text-unbounded",
        "an audited request takes a reason of any length",
        SECURITY + "test_vault_access.py::test_definer_functions_bound_their_arguments",
        FUNCTIONS + "loginetl_check_audit_text.sql",
        "        RAISE EXCEPTION 'reason (1-1000 chars), os user and host (256) out of bounds'\n",
        "        RAISE NOTICE 'reason (1-1000 chars), os user and host (256) out of bounds'\n",
        "DID NOT RAISE DBAPIError",
    ),
    Breakage(
        "chain-lock-unbounded",
        "the audit chain waits 30 s, not 5, behind an idle appender",
        SECURITY + "test_audit_first.py::test_an_idle_appender_stalls_nobody_past_the_bound",
        FUNCTIONS + "unmask_audit_chain.sql",
        " SET lock_timeout TO '5s'\n",
        " SET lock_timeout TO '30s'\n",
        "BOUND - 0.5 < took < BOUND + 3",
    ),
    Breakage(
        "forget-another-users-request",
        "forget acts under a request for another user",
        SECURITY + "test_lifecycle_privileges.py::"
        "test_forget_acts_only_after_a_committed_request_of_the_same_user",
        FUNCTIONS + "loginetl_forget.sql",
        "    IF r.token IS DISTINCT FROM 'forget->' || public.loginetl_user_ref(p_user_id) THEN\n",
        "    IF false THEN\n",
        "DID NOT RAISE DBAPIError",
    ),
    Breakage(
        "forget-reason-names-the-user",
        "a forget request's reason may hold the user id",
        SECURITY + "test_lifecycle_attack2.py::"
        "test_a_reason_naming_the_user_id_is_refused_to_raw_sql_too",
        FUNCTIONS + "loginetl_forget_request.sql",
        "        RAISE EXCEPTION 'the reason must not contain the user id'\n",
        "        RAISE NOTICE 'the reason must not contain the user id'\n",
        "DID NOT RAISE DBAPIError",
    ),
    Breakage(
        "rederive-to-any-key",
        "rederive pages out ciphertexts for a key the consumers do not write with",
        SECURITY
        + "test_audit_first.py::test_a_rederive_to_a_key_not_deployed_is_refused_behind_its_row",
        FUNCTIONS + "loginetl_rederive_page.sql",
        "    IF coalesce(p_after, '') = '' AND v_key_id IS DISTINCT FROM (\n",
        "    IF false AND v_key_id IS DISTINCT FROM (\n",
        "now alias to k2",
    ),
    Breakage(
        "forged-alias-accepted",
        "loginetl_add_aliases takes aliases that are not tokens of the audited key",
        SECURITY + "test_poison_and_aliases.py::test_a_forged_alias_is_refused",
        FUNCTIONS + "loginetl_add_aliases.sql",
        "    IF v_valid <> v_given THEN\n",
        "    IF false THEN\n",
        "DID NOT RAISE ProgrammingError",
    ),
    Breakage(
        "definer-search-path-unpinned",
        "loginetl_vault_epoch runs on the caller's search_path",
        SECURITY
        + "test_search_path.py::test_every_definer_and_trigger_function_pins_its_search_path",
        FUNCTIONS + "loginetl_vault_epoch.sql",
        " SET search_path TO 'pg_catalog', 'pg_temp'\n",
        "",
        "assert [('loginetl_vault_epoch',)] == []",
    ),
    Breakage(
        "audit-log-editable",
        "the append-only trigger lets UPDATE and DELETE through",
        "tests/e2e/test_unmask.py::test_the_audit_log_refuses_changes_even_from_the_owner",
        FUNCTIONS + "unmask_audit_append_only.sql",
        "    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP\n"
        "        USING ERRCODE = 'insufficient_privilege';\n",
        "    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;\n",
        "DID NOT RAISE",
    ),
    Breakage(
        "audit-hash-unchecked",
        "audit verify does not recompute a row's hash",
        "tests/core/test_audit_chain.py::test_every_break_is_reported",
        "loginetl/core/audit_chain.py",
        "        if row_hash(row) != row.row_hash:\n",
        "        if False:\n",
        "!= (2, 'its contents do not match its hash (edited)')",
    ),
    Breakage(
        "head-signature-unchecked",
        "audit verify takes any signature on a head for a good one",
        "tests/core/test_audit_chain.py::test_heads_signed_with_another_key_do_not_count",
        "loginetl/core/audit_chain.py",
        "    except InvalidSignature:\n        return False\n",
        "    except InvalidSignature:\n        return True\n",
        "== [2]",
    ),
    Breakage(
        "vault-epoch-unchecked",
        "the move ignores a cache older than the last purge",
        "tests/e2e/test_vault_epoch.py::"
        "test_a_following_consumer_seals_a_value_again_after_forget_purged_it",
        FUNCTIONS + "loginetl_move_staged.sql",
        "        IF v_claimed::bigint <> (SELECT e.last_value FROM public.vault_epoch e) THEN\n",
        "        IF false THEN\n",
        "in_vault(url, token) == set(token.values())",
    ),
    Breakage(
        "purge-keeps-the-epoch",
        "a purge does not advance the vault epoch",
        SECURITY + "test_vault_epoch.py::"
        "test_a_move_that_waited_behind_a_purge_is_refused_when_the_purge_commits",
        FUNCTIONS + "loginetl_purge_candidates.sql",
        "    PERFORM pg_catalog.nextval('public.vault_epoch');\n",
        "    PERFORM 1;\n",
        "assert outcome == [(STALE, None)]",
    ),
    Breakage(
        "purge-beside-a-load",
        "the purge judges without locking loads out",
        SECURITY + "test_lifecycle_attack2.py::"
        "test_purge_never_deletes_the_vault_entry_of_a_token_a_concurrent_load_references[forget]",
        FUNCTIONS + "loginetl_purge_candidates.sql",
        "    LOCK TABLE public.vault_inbox, public.rollup_pending IN SHARE ROW EXCLUSIVE MODE;\n",
        "    PERFORM 1;\n",
        "assert thread.is_alive(), errors",
    ),
    Breakage(
        "purge-ignores-the-table",
        "the purge takes a token as unreferenced whatever user_logins holds",
        "tests/e2e/test_lifecycle.py::"
        "test_forget_keeps_the_vault_entry_of_a_row_written_around_the_rollups",
        FUNCTIONS + "loginetl_purge_candidates.sql",
        "                                      WHERE l.masked_ip = b.token)\n",
        "                                      WHERE l.masked_ip = b.token AND false)\n",
        "(done.logins, done.ip_purged, done.ip_kept) == (1, 0, 1)",
    ),
    Breakage(
        "statistics-keep-user-ids",
        "user_logins keeps planner statistics of user_id",
        SECURITY + "test_writer_learns_nothing.py::"
        "test_no_role_reads_an_erased_user_or_a_purged_token_in_the_statistics",
        "loginetl/sql/tables/user_logins.sql",
        "ALTER TABLE public.user_logins ALTER COLUMN user_id SET STATISTICS 0,\n",
        "ALTER TABLE public.user_logins ALTER COLUMN device_type SET STATISTICS 0,\n",
        "assert not [s for s in secrets if s in seen]",
    ),
    Breakage(
        "consumer-gets-every-hmac-key",
        "keys export-consumer copies every HMAC key, not only the current one",
        "tests/security/test_writer_host.py::"
        "test_export_consumer_writes_only_the_current_key_and_the_public_key",
        "loginetl/services/keys.py",
        '                "keys": {masker.key_id: base64.b64encode(masker.key).decode()},\n',
        '                "keys": {k: base64.b64encode(m.key).decode() '
        "for k, m in load_maskers(source).items()},\n",
        "== {'k2'}",
    ),
    Breakage(
        "planted-value-revealed",
        "unmask shows a decrypted value without checking that it hashes to its token",
        "tests/security/test_poison_and_aliases.py::"
        "test_a_poisoned_vault_entry_is_refused_and_audited",
        "loginetl/actions/unmask.py",
        "    if hmac.compare_digest(masker.token(entry.pii_field, value), entry.token):\n",
        "    if True:\n",
        "assert 0 == 4",
    ),
    Breakage(
        "unmask-without-signing-key",
        "unmask goes on, unsigned, when the audit-signing key is missing",
        "tests/security/test_signing_key.py::"
        "test_unmask_without_the_signing_key_is_refused_and_audited",
        "loginetl/actions/unmask.py",
        "    if signer_error is not None:\n",
        "    if False:\n",
        "assert 0 == 2",
    ),
    Breakage(
        "value-shown-before-its-audit-row",
        "unmask prints the value before its 'revealed' row commits",
        "tests/e2e/test_unmask.py::test_no_plaintext_when_the_audit_write_fails",
        "loginetl/actions/unmask.py",
        "    row = _record(session, conn, token, policy.REVEALED, sealed.pii_field)\n",
        "    print(plaintext)\n    row = _record(session, conn, token, policy.REVEALED, sealed.pii_field)\n",
        "== ''",
    ),
    Breakage(
        "sqs-unreachable-traceback",
        "an unreachable SQS endpoint escapes as the library's exception",
        FAULTS + "test_sqs_unreachable_at_start_and_restarted_mid_run",
        "loginetl/services/sqs.py",
        "        except BotoCoreError as error:\n",
        "        except ZeroDivisionError as error:\n",
        "assert code == 2",
    ),
    Breakage(
        "create-queues-recreates",
        "--create-queues creates the queue even when it exists (with loginetl's settings)",
        "tests/services/test_rollout_services.py::"
        "test_create_queues_leaves_an_existing_queue_as_its_operator_set_it",
        "loginetl/services/sqs.py",
        "            url = self._existing(name)\n",
        "            url = None\n",
        "QueueAlreadyExists",
    ),
]


# The promises no breakage covers, each with the reason (tests/faults/promises.py).
UNCOVERED = {p.text: p.uncovered for p in PROMISES if p.uncovered}


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


@dataclass(frozen=True)
class Verdict:
    breakage: Breakage
    outcome: str  # "fails as expected", "FAILED FOR ANOTHER REASON", "DID NOT FAIL", ...
    good: bool
    seconds: float
    detail: str  # pytest's last line and, for a failure, its first E lines


def failure_text(output: str) -> str:
    """The failing assertions of a pytest run: its ``>`` (statement) and ``E`` lines."""
    return "\n".join(line for line in output.splitlines() if line.startswith((">", "E ")))


def judge(breakage: Breakage, returncode: int, output: str, *, control: bool) -> tuple[str, bool]:
    """The outcome of one run: for a breakage, failed for the named reason or not."""
    lines = output.strip().splitlines()
    summary = lines[-1] if lines else ""
    one_failed = returncode == 1 and " failed" in summary and " error" not in summary
    if control:
        passed = returncode == 0 and " passed" in summary and " skipped" not in summary
        return ("control passes", True) if passed else ("CONTROL FAILED", False)
    if returncode == 0:
        return "DID NOT FAIL", False
    if one_failed and breakage.expect in failure_text(output):
        return "fails as expected", True
    return "FAILED FOR ANOTHER REASON", False


def run_test(copy: Path, env: dict[str, str], test: str) -> tuple[int, str]:
    """Run one pytest node in the tree copy; its exit code and output (-1 on a timeout)."""
    pytest = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider"]
    try:
        run = subprocess.run(
            [*pytest, test],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout
        return -1, (out.decode() if isinstance(out, bytes) else out or "") + "\ntimed out"
    return run.returncode, run.stdout


def _detail(output: str, *, failed: bool) -> str:
    """A run's last line and, unless it held, its first failing lines (``E`` lines, and an
    ExceptionGroup's ``Error:`` lines), each cut to 200 characters."""
    lines = output.strip().splitlines()[-1:]
    if failed:
        lines += [
            line[:200] for line in output.splitlines() if line.startswith("E ") or "Error: " in line
        ][:4]
    return "\n".join(lines)


def broken_copy(breakage: Breakage, *, apply: bool = True) -> Path:
    """A throwaway copy of the tree with ``breakage`` applied (unless not ``apply``: a
    control), for the caller to run with PYTHONPATH set to it and to remove."""
    copy = tree_copy()
    try:
        target = copy / breakage.path
        source = target.read_text()
        assert source.count(breakage.old) == 1, f"{breakage.name}: the line to break moved"
        if apply:
            target.write_text(source.replace(breakage.old, breakage.new))
        # The build maps migrations/ to loginetl._migrations; the editable install's mapping
        # points at the original tree, so the copy gets the same mapping as a link of its own.
        (copy / "loginetl" / "_migrations").symlink_to(Path("..") / "migrations")
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    return copy


def check(breakage: Breakage, *, control: bool = False) -> Verdict:
    """Apply the breakage to a copy (unless a control), run its test there, judge it."""
    started = time.monotonic()
    copy = broken_copy(breakage, apply=not control)
    try:
        env = {**os.environ, "PYTHONPATH": str(copy)}  # the copy's loginetl, children too
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
        returncode, output = run_test(copy, env, breakage.test)
        outcome, good = judge(breakage, returncode, output, control=control)
        detail = _detail(output, failed=not good)
        return Verdict(breakage, outcome, good, time.monotonic() - started, detail)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(arguments: list[str]) -> int:
    control = "--control" in arguments  # the same machinery, the code left as it is
    jobs = 2
    if "--jobs" in arguments:
        at = arguments.index("--jobs")
        jobs = int(arguments[at + 1])
        arguments = arguments[:at] + arguments[at + 2 :]
    filters = [a for a in arguments if not a.startswith("--")]
    chosen = [b for b in BREAKAGES if not filters or any(f in b.name for f in filters)]
    if not chosen:
        print(f"no breakage matches {filters}", file=sys.stderr)
        return 2
    started = time.monotonic()
    verdicts: list[Verdict] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running = [pool.submit(check, b, control=control) for b in chosen]
        for done in as_completed(running):
            verdict = done.result()
            verdicts.append(verdict)
            print(
                f"{verdict.breakage.name:<36} {verdict.outcome:<26} {verdict.seconds:4.0f} s  "
                f"{verdict.breakage.test}",
                flush=True,
            )
            if not verdict.good:
                print("    " + verdict.detail.replace("\n", "\n    "), flush=True)
    good = sum(v.good for v in verdicts)
    wall = time.monotonic() - started
    what = "pass unbroken" if control else "fail as expected"
    # Again at the end, where a CI log's tail shows them: the ones that did not hold.
    for verdict in (v for v in verdicts if not v.good):
        print(f"{verdict.breakage.name}: {verdict.outcome} ({verdict.breakage.test})")
        print("    " + verdict.detail.replace("\n", "\n    "), flush=True)
    print(
        f"{good} of {len(verdicts)} {what}; {len(UNCOVERED)} promises uncovered "
        f"(tests/faults/promises.py); wall time {wall / 60:.1f} min with {jobs} at a time",
        flush=True,
    )
    return 0 if good == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
