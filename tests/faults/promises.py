"""Every promise loginetl makes, its proof, and the breakage that shows the proof can fail.

The single source of docs/promises.md (`make docs`, tools/promise_table.py); the
breakages themselves are in tests/faults/breakages.py, named here. A promise either names
at least one breakage or says, in ``uncovered``, why none is run. tests/test_promises.py
keeps the two files and the page in step.
"""

from __future__ import annotations

from dataclasses import dataclass

GUARANTEES = "guarantees.md"
ROLES = "security.md#roles-keys-unmask-and-the-audit-log"
UNMASK = "security.md#how-an-unmask-reaches-a-ciphertext"
AUDIT = "security.md#the-audit-log-chained-append-only-signed"
DEFINER = "security.md#definer-and-trigger-functions"
LIFECYCLE = "security.md#forget-and-retention"
OBSERVE = "security.md#what-one-role-can-observe-or-hold-up-of-another"

SECTIONS = {
    GUARANTEES: "Delivery, faults and input",
    ROLES: "Roles and keys",
    UNMASK: "Unmask: audited, committed and durable first",
    AUDIT: "The audit log",
    DEFINER: "Definer and trigger functions",
    LIFECYCLE: "Forget and retention",
    OBSERVE: "What one role can observe, or hold up, of another",
}

F = "tests/faults/test_faults.py::"
R = "tests/faults/test_rollout.py::"
OURS = "tests/faults/test_ours.py::"
S = "tests/security/"


@dataclass(frozen=True)
class Promise:
    text: str
    section: str  # a key of SECTIONS: the doc (and heading) that states it
    proofs: tuple[str, ...]  # pytest node ids (fault scenarios are tests too)
    breakages: tuple[str, ...] = ()  # names in tests.faults.breakages.BREAKAGES
    uncovered: str = ""  # why no breakage is run, when none is


PROMISES = [
    # -- delivery, faults and input -------------------------------------------------------
    Promise(
        "A message is deleted from the queue only after its row is committed, or its DLQ "
        "copy accepted",
        GUARANTEES,
        (F + "test_kill_9_mid_batch_then_rerun[crash_before_commit]",),
        ("delete-before-commit",),
    ),
    Promise(
        "A redelivery duplicates no row: after a crash between COMMIT and the delete, after "
        "a crash in the middle of a delete batch, or to a concurrent consumer",
        GUARANTEES,
        (
            F + "test_kill_9_mid_batch_then_rerun[crash_after_commit]",
            F + "test_kill_9_in_the_middle_of_a_delete_batch",
            F + "test_four_processes_with_redeliveries",
        ),
        ("key-per-delivery",),
    ),
    Promise(
        "A database outage loses nothing; `--follow` rides out one longer than `--retry-seconds`",
        GUARANTEES,
        (
            F + "test_database_cut_off_then_down_longer_than_retry_seconds_while_following",
            "tests/e2e/test_consume_interruptions.py::test_database_outage_mid_run_loses_nothing",
        ),
        ("follow-ignored",),
    ),
    Promise(
        "Without `--follow`, an outage past `--retry-seconds` releases the batches in hand "
        "and exits 2; a rerun loads everything",
        GUARANTEES,
        (F + "test_database_down_longer_than_retry_seconds_without_follow",),
        ("no-release-on-give-up",),
    ),
    Promise(
        "An SQS endpoint unreachable mid-run is retried, and loses nothing",
        GUARANTEES,
        (F + "test_sqs_unreachable_at_start_and_restarted_mid_run",),
        ("sqs-outage-fatal",),
    ),
    Promise(
        "An SQS endpoint unreachable at start is one sentence and exit 2",
        GUARANTEES,
        (F + "test_sqs_unreachable_at_start_and_restarted_mid_run",),
        ("sqs-unreachable-traceback",),
    ),
    Promise(
        "A reject is never deleted unless the DLQ accepted it",
        GUARANTEES,
        (F + "test_dlq_unavailable_keeps_the_invalid_message_in_the_queue",),
        ("reject-deleted-without-dlq",),
    ),
    Promise(
        "An interrupted `replay-dlq` loses and duplicates nothing",
        GUARANTEES,
        (F + "test_replay_interrupted_and_rerun",),
        ("replay-drops-original-id",),
    ),
    Promise(
        "SIGTERM commits the batch in hand, releases what came after it, exits 0",
        GUARANTEES,
        (
            F + "test_sigterm_with_a_batch_open_and_a_receive_in_flight",
            "tests/e2e/test_consume_interruptions.py::"
            "test_sigterm_mid_run_commits_the_batch_in_hand_and_loses_nothing",
        ),
        ("sigterm-no-release",),
    ),
    Promise(
        "A crash between a DLQ send and its delete loses nothing: the reject reaches the DLQ "
        "at least once",
        GUARANTEES,
        (F + "test_kill_9_between_a_dlq_send_and_the_delete",),
        ("delete-rejects-before-dlq-send",),
    ),
    Promise(
        "A crash inside the fold worker counts every row once and stores every vault entry once",
        GUARANTEES,
        (
            F + "test_kill_9_inside_the_fold_worker[crash_in_fold]",
            F + "test_kill_9_inside_the_fold_worker[crash_in_settle]",
        ),
        ("fold-keeps-pending",),
    ),
    Promise(
        "The stats rollups count every loaded row exactly once, never a skipped redelivery",
        GUARANTEES,
        (
            F + "test_kill_9_mid_batch_then_rerun[crash_after_commit]",
            "tests/services/test_db.py::test_concurrent_writers_and_folders_keep_rollups_exact",
        ),
        ("fold-counts-skipped-rows",),
    ),
    Promise(
        "Every hostile body lands in exactly one place (a row or the DLQ) and none crashes consume",
        GUARANTEES,
        ("tests/e2e/test_hostile_input.py::test_each_hostile_body_lands_in_exactly_one_place",),
        ("nul-stored",),
    ),
    Promise(
        "Parse, validate and mask never raise anything but the domain's reject",
        GUARANTEES,
        (
            "tests/core/test_messages.py::test_parse_never_raises_on_any_text",
            "tests/core/test_messages.py::test_rejections_carry_a_stable_reason"
            "[not json-invalid_json]",
        ),
        ("parse-raises",),
    ),
    Promise(
        "Everything printed from data is inert: no markup, and no control, bidi or format "
        "character reaches the terminal raw",
        GUARANTEES,
        (
            "tests/e2e/test_hostile_output.py::test_every_command_prints_hostile_data_inert",
            "tests/cli/test_inert_output.py",
        ),
        ("controls-printed-raw",),
    ),
    Promise(
        "No plaintext ip or device_id escapes (logs, errors, tracebacks, `pg_dump`, DLQ "
        "attributes); only `unmask`'s stdout holds one",
        GUARANTEES,
        ("tests/e2e/test_pii_canary.py::test_no_canary_escapes_anywhere_but_unmask_stdout",),
        ("body-in-dlq-detail",),
    ),
    Promise(
        "Secrets stay out of command lines, `--help` and errors (URLs print as `…:***@…`)",
        GUARANTEES,
        ("tests/e2e/test_pii_canary.py::test_secrets_stay_out_of_help_errors_and_command_lines",),
        ("password-in-errors",),
    ),
    Promise(
        "An SNS notification or EventBridge event loads once, keyed by the envelope's own id: "
        "a redelivery with a new SQS MessageId is skipped",
        GUARANTEES,
        (
            "tests/e2e/test_envelopes.py::test_an_sns_redelivery_with_a_new_sqs_message_id_loads_once",
        ),
        ("envelope-key-ignored",),
    ),
    Promise(
        "An envelope loads once whatever day a redelivery arrives: its row's day is the "
        "envelope's own time, bounded by SQS's send time",
        GUARANTEES,
        (
            "tests/core/test_envelope.py::"
            "test_a_redelivery_however_late_never_makes_a_second_row_on_another_day",
        ),
        ("envelope-day-from-sqs",),
    ),
    Promise(
        "A producer's `loginetl-*` attributes can neither stop consume nor forge identity or "
        "time: unverified or out-of-range values are ignored and counted",
        GUARANTEES,
        (
            R + "test_forged_and_out_of_range_attributes_mixed_into_a_large_batch",
            "tests/core/test_attributes.py::test_the_tag_binds_the_body",
            "tests/core/test_attributes.py::test_signed_values_out_of_range_are_dropped_alone"
            "[loginetl-original-sent-at-999999999999999]",
        ),
        ("attribute-tag-unchecked", "attribute-range-unchecked"),
    ),
    Promise(
        "One message's fault costs that message alone: a row the database refuses as data is "
        "found by bisection and dead-lettered `rejected_by_database`",
        GUARANTEES,
        (
            R + "test_a_row_the_database_rejects_inside_a_batch_of_valid_ones",
            "tests/e2e/test_rollout.py::test_rows_the_database_refuses_are_found_and_dead_lettered_alone",
        ),
        ("bisection-blames-first-row",),
    ),
    Promise(
        "An unexpected error preparing one message dead-letters that message alone "
        "(`preparation_failed`)",
        GUARANTEES,
        (
            "tests/e2e/test_rollout.py::"
            "test_an_unexpected_error_preparing_a_batch_dead_letters_only_the_message_at_fault",
        ),
        ("preparation-blames-the-batch",),
    ),
    Promise(
        "A failure that is ours stops the line and dead-letters nothing: a batch refused whole, "
        "a sealer failing for every message, an unexpected exception in the write; consume "
        "exits 1 and releases the batch, the Lambda raises",
        GUARANTEES,
        (
            OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
            "[a constraint that refuses every row]",
            OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
            "[a trigger that raises]",
            OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
            "[a sealer that fails]",
            OURS + "test_a_failure_that_is_ours_stops_consume_and_dead_letters_nothing"
            "[an unexpected exception in the write]",
            OURS
            + "test_a_failure_that_is_ours_fails_the_lambda_invocation_and_dead_letters_nothing"
            "[a constraint that refuses every row]",
        ),
        (
            "ours-all-refused-dead-lettered",
            "ours-sealer-dead-lettered",
            "ours-write-isolated",
            "ours-lambda-answers-instead-of-raising",
        ),
    ),
    Promise(
        "A lock or statement timeout, deadlock, serialization failure, admin shutdown or too "
        "many connections is transient and retried with jittered back-off",
        GUARANTEES,
        (
            R + "test_a_lock_longer_than_the_statement_timeout_while_following",
            "tests/core/test_error_classes.py::test_transient[57014]",
            "tests/services/test_rollout_services.py::test_a_statement_timeout_from_a_raw_cursor_is_transient",
        ),
        ("statement-timeout-fatal",),
    ),
    Promise(
        "A permission or credential SQS refuses is one sentence naming the fix and exit 2, "
        "even with `--follow`",
        GUARANTEES,
        (
            R + "test_an_sqs_endpoint_that_answers_access_denied",
            "tests/core/test_error_classes.py::test_permanent_sqs_errors_name_the_fix"
            "[AccessDenied-sqs:ReceiveMessage]",
        ),
        ("access-denied-retried",),
    ),
    Promise(
        "However long a commit blocks, its batch stays hidden: a heartbeat extends its "
        "visibility every third of the timeout",
        GUARANTEES,
        (R + "test_a_commit_slower_than_the_visibility_timeout",),
        ("heartbeat-too-late",),
    ),
    Promise(
        "A schema ahead of the consumer's head runs it only when every newer revision declares "
        "itself compatible; otherwise exit 2 with a sentence",
        GUARANTEES,
        (
            "tests/services/test_rollout_services.py::"
            "test_a_schema_ahead_that_does_not_declare_compatibility_is_refused[None]",
            "tests/e2e/test_rollout.py::test_consume_refuses_a_schema_ahead_that_does_not",
        ),
        ("schema-ahead-undeclared-accepted",),
    ),
    Promise(
        "Databases are created UTF-8; a non-UTF-8 database is refused at start with a sentence",
        GUARANTEES,
        (
            "tests/services/test_rollout_services.py::test_a_non_utf8_database_is_refused_with_a_sentence",
            "tests/e2e/test_rollout.py::test_consume_refuses_a_non_utf8_database",
        ),
        ("non-utf8-accepted",),
    ),
    Promise(
        "`--create-queues` creates what is missing and never reconfigures an existing queue",
        GUARANTEES,
        (
            "tests/services/test_rollout_services.py::"
            "test_create_queues_leaves_an_existing_queue_as_its_operator_set_it",
        ),
        ("create-queues-recreates",),
    ),
    Promise(
        "A backlog of maximum-size bodies keeps memory bounded (at most 4 MiB of bodies a worker)",
        GUARANTEES,
        ("bench/large_bodies.py",),
        uncovered="a measurement, not an assertion: the bench prints peak RSS against a "
        "figure, and no test fails on it, so there is no proof for a breakage to make fail",
    ),
    Promise(
        "On FIFO, a group's later message is never committed while an earlier one is retried "
        "(a reject the DLQ cannot take, or the DLQ gone mid-run), in consume and the Lambda "
        "alike",
        GUARANTEES,
        (
            "tests/e2e/test_fifo.py::test_a_reject_the_fifo_dlq_cannot_take_holds_its_group_back",
            OURS + "test_fifo_dlq_taken_away_mid_run_holds_the_group_back_in_consume",
            OURS + "test_fifo_dlq_taken_away_mid_run_holds_the_group_back_in_the_lambda",
        ),
        ("fifo-commits-behind-stuck",),
    ),
    Promise(
        "A FIFO DLQ copy resent after a crash is dropped by SQS (its deduplication id comes "
        "from the delivery)",
        GUARANTEES,
        (
            "tests/e2e/test_fifo.py::test_a_dead_letter_resent_after_a_crash_is_dropped_by_the_fifo_dlq",
        ),
        ("fifo-dedup-per-send",),
    ),
    Promise(
        "The Lambda handler reports only what must be retried; on FIFO, a stuck record and "
        "everything it holds back in its group",
        GUARANTEES,
        (
            "tests/e2e/test_lambda.py::"
            "test_on_fifo_a_stuck_record_holds_its_group_back_and_is_reported_with_all_after_it",
            "tests/e2e/test_lambda.py::"
            "test_every_message_ends_loaded_once_or_dead_lettered_across_a_crash_after_commit",
        ),
        ("lambda-fifo-drops-held-back",),
    ),
    Promise(
        "The Lambda refuses to start without an explicit database setting",
        GUARANTEES,
        ("tests/e2e/test_lambda.py::test_the_handler_refuses_to_start_without_a_database_setting",),
        ("lambda-default-database",),
    ),
    Promise(
        "The Lambda logs no body or plaintext PII at DEBUG",
        GUARANTEES,
        ("tests/e2e/test_pii_canary.py::test_the_lambda_at_debug_logs_no_canary",),
        ("lambda-debug-logs-bodies",),
    ),
    Promise(
        "`forget` and `retention apply` leave rows, vault and rollups consistent whatever "
        "kills them, and a rerun finishes the job",
        GUARANTEES,
        (
            "tests/faults/test_lifecycle_faults.py::test_kill_9_inside_forget_and_retention_then_rerun",
        ),
        ("forget-without-minus", "retention-without-minus"),
    ),
    # -- roles and keys -------------------------------------------------------------------
    Promise(
        "Nothing the writer can execute does different work for a stored and a new value: no "
        "counter, WAL position, size or plan tells it whether a token is stored",
        ROLES,
        (
            S + "test_writer_learns_nothing.py::"
            "test_every_statement_of_the_writer_works_alike_for_a_stored_and_a_new_value",
        ),
        ("writer-branches-on-the-vault",),
    ),
    Promise(
        "The writer holds no right on any table: it cannot read a token back",
        ROLES,
        (
            S + "test_writer_privileges.py::"
            "test_writer_cannot_read_tokens_back[SELECT masked_ip FROM user_logins]",
            S
            + "test_writer_learns_nothing.py::test_the_writer_may_execute_only_what_appends_and_no_table",
        ),
        ("writer-reads-user-logins",),
    ),
    Promise(
        "No role but the owner reads the vault",
        ROLES,
        (
            S + "test_vault_access.py::"
            "test_no_role_reads_the_vault_directly[SELECT ciphertext FROM pii_vault-analyst]",
        ),
        ("analyst-reads-the-vault",),
    ),
    Promise(
        "The consumer's key set (`keys export-consumer`) is the current HMAC key and the vault "
        "public key only, and cannot decrypt; consume warns when its keys dir holds more",
        ROLES,
        (
            S + "test_writer_host.py::"
            "test_export_consumer_writes_only_the_current_key_and_the_public_key",
            "tests/e2e/test_unmask.py::test_a_consumer_key_set_cannot_decrypt",
        ),
        ("consumer-gets-every-hmac-key",),
    ),
    # -- unmask --------------------------------------------------------------------------
    Promise(
        "The vault opens only for a committed `requested` row of the caller's own login "
        "role: BEGIN; request; open; ROLLBACK yields nothing",
        UNMASK,
        (
            S + "test_vault_access.py::test_open_needs_a_committed_audit_row_of_ones_own",
            S + "test_vault_access.py::test_another_login_cannot_use_my_audit_row",
            S
            + "test_audit_first.py::test_what_the_vault_told_is_always_behind_a_committed_request",
        ),
        ("open-before-commit", "open-another-logins-row"),
    ),
    Promise(
        "Durable before served: the vault opens only once the request's commit is on disk, "
        "whatever `synchronous_commit` the requester ran with",
        UNMASK,
        (S + "test_audit_first.py::test_with_synchronous_commit_off_the_open_waits_for_the_flush",),
        ("open-before-durable",),
    ),
    Promise(
        "A value planted under someone else's token is refused (`refused_token_mismatch`, "
        "exit 4, nothing printed), and the check fails closed without the HMAC keys",
        UNMASK,
        (
            S + "test_poison_and_aliases.py::test_a_poisoned_vault_entry_is_refused_and_audited",
            "tests/e2e/test_unmask.py::test_without_the_hmac_key_file_nothing_is_revealed",
        ),
        ("planted-value-revealed",),
    ),
    Promise(
        "If any audit write fails, nothing is revealed (exit 5); without the signing key, "
        "unmask refuses and audits the refusal",
        UNMASK,
        (
            "tests/e2e/test_unmask.py::test_no_plaintext_when_the_audit_write_fails",
            S + "test_signing_key.py::test_unmask_without_the_signing_key_is_refused_and_audited",
        ),
        (
            "value-shown-before-its-audit-row",
            "unmask-without-signing-key",
        ),
    ),
    # -- the audit log --------------------------------------------------------------------
    Promise(
        "The audit log is append-only: UPDATE, DELETE and TRUNCATE are refused, even for the owner",
        AUDIT,
        ("tests/e2e/test_unmask.py::test_the_audit_log_refuses_changes_even_from_the_owner",),
        ("audit-log-editable",),
    ),
    Promise(
        "`audit verify` recomputes the hash chain and names every break, not just the first",
        AUDIT,
        (
            "tests/core/test_audit_chain.py::test_every_break_is_reported",
            S + "test_audit_tamper.py::test_every_break_is_reported_not_just_the_first",
        ),
        ("audit-hash-unchecked",),
    ),
    Promise(
        "Signed heads: an owner who rewrites and re-hashes, or re-signs with a key of his own, "
        "is caught by `audit verify`",
        AUDIT,
        (
            "tests/core/test_audit_chain.py::test_heads_signed_with_another_key_do_not_count",
            S
            + "test_audit_tamper.py::test_an_owner_who_re_signs_with_a_key_of_his_own_is_detected",
            S + "test_audit_tamper.py::test_an_owner_rewrite_with_rehash_is_detected",
        ),
        ("head-signature-unchecked",),
    ),
    # -- definer and trigger functions ----------------------------------------------------
    Promise(
        "Every SECURITY DEFINER and trigger function runs with `search_path = pg_catalog, pg_temp`",
        DEFINER,
        (
            S + "test_search_path.py::test_every_definer_and_trigger_function_pins_its_search_path",
            S + "test_search_path.py::test_a_look_alike_in_a_writable_public_runs_nothing",
        ),
        ("definer-search-path-unpinned",),
    ),
    Promise(
        "Each definer function bounds what it takes (reasons, OS user and host, tokens, "
        "aliases and vault entries a call, partition months)",
        DEFINER,
        (S + "test_vault_access.py::test_definer_functions_bound_their_arguments",),
        ("audit-text-unbounded",),
    ),
    # -- forget and retention -------------------------------------------------------------
    Promise(
        "Only the eraser may forget and only the maintainer may apply retention",
        LIFECYCLE,
        (
            S + "test_lifecycle_privileges.py::"
            "test_only_the_eraser_may_forget_and_only_the_maintainer_may_apply_retention",
        ),
        ("forget-granted-to-the-analyst",),
    ),
    Promise(
        "Forget acts only after a committed request of its own, for the same user",
        LIFECYCLE,
        (
            S + "test_lifecycle_privileges.py::"
            "test_forget_acts_only_after_a_committed_request_of_the_same_user",
        ),
        ("forget-another-users-request",),
    ),
    Promise(
        "The user id is not in the audit log: a forget request whose reason holds it is "
        "refused, by raw SQL too",
        LIFECYCLE,
        (
            S
            + "test_lifecycle_attack2.py::test_a_reason_naming_the_user_id_is_refused_to_raw_sql_too",
            S
            + "test_lifecycle_attack2.py::test_a_reason_naming_the_user_id_never_reaches_the_audit_log",
        ),
        ("forget-reason-names-the-user",),
    ),
    Promise(
        "The purge deletes a vault entry only when no row of `user_logins` holds its token "
        "(asked of the table, never the rollups), and never beside a load in flight",
        LIFECYCLE,
        (
            "tests/e2e/test_lifecycle.py::"
            "test_forget_keeps_the_vault_entry_of_a_row_written_around_the_rollups",
            S + "test_lifecycle_attack2.py::"
            "test_purge_never_deletes_the_vault_entry_of_a_token_a_concurrent_load_references[forget]",
            "tests/e2e/test_lifecycle.py::"
            "test_forget_erases_a_user_keeps_shared_values_and_says_what_it_cannot_reach",
        ),
        ("purge-ignores-the-table", "purge-beside-a-load"),
    ),
    Promise(
        "No loginetl role reads an erased user id or a purged token in the planner statistics",
        LIFECYCLE,
        (
            S + "test_writer_learns_nothing.py::"
            "test_no_role_reads_an_erased_user_or_a_purged_token_in_the_statistics",
        ),
        ("statistics-keep-user-ids",),
    ),
    Promise(
        "A consumer's token cache cannot outlive a purge: every purge advances the vault "
        "epoch, and a move under an older epoch is refused (LE001), sealed again and written",
        LIFECYCLE,
        (
            "tests/e2e/test_vault_epoch.py::"
            "test_a_following_consumer_seals_a_value_again_after_forget_purged_it",
            S + "test_vault_epoch.py::"
            "test_a_move_that_waited_behind_a_purge_is_refused_when_the_purge_commits",
        ),
        ("vault-epoch-unchecked", "purge-keeps-the-epoch"),
    ),
    Promise(
        "Dry runs change nothing and write no audit row",
        LIFECYCLE,
        (S + "test_lifecycle_attack2.py::test_dry_run_writes_nothing",),
        uncovered="no breakage written yet: the previews are read-only functions, and a "
        "one-line write in one is the anchor; left for a later round",
    ),
    Promise(
        "`keys rederive` maps only to the key the consumers write with, behind a committed "
        "request row",
        ROLES,
        (
            S
            + "test_audit_first.py::test_a_rederive_to_a_key_not_deployed_is_refused_behind_its_row",
        ),
        ("rederive-to-any-key",),
    ),
    Promise(
        "A forged alias is refused, and one already stored makes `keys rederive` refuse",
        ROLES,
        (
            S + "test_poison_and_aliases.py::test_a_forged_alias_is_refused",
            S + "test_rederiver.py::test_a_forged_alias_already_stored_makes_rederive_refuse",
        ),
        ("forged-alias-accepted",),
    ),
    # -- observe and stall ---------------------------------------------------------------
    Promise(
        "No other role can tell from `pg_locks` what an unmask found",
        OBSERVE,
        (
            S + "test_audit_first.py::"
            "test_writer_and_analyst_see_the_same_locks_whatever_the_unmask_found",
        ),
        uncovered="no one-line change found: loginetl_vault_open runs every lookup whatever "
        "the earlier ones found, and skipping one (e.g. erased_tokens when the vault has the "
        "token) needs a restructured CASE, not a line",
    ),
    Promise(
        "No role can hold the unmask, audit or migrate path past a bound (5 s, naming the holder)",
        OBSERVE,
        (
            S + "test_audit_first.py::test_an_idle_appender_stalls_nobody_past_the_bound",
            "tests/faults/test_lock_stall.py::test_idle_holders_of_every_lock_stall_no_unmask",
        ),
        ("chain-lock-unbounded",),
    ),
]
