-- One row per login message. The take-home's columns keep their names and types so
-- existing queries work; the rest is what an idempotent, replayable pipeline needs.
--
-- Partitioned by month of create_date, with a default partition so an unexpected date
-- never fails a load; loginetl_ensure_partitions() makes the months ahead. The primary
-- key includes the partition key, as PostgreSQL requires: one row per message still,
-- because create_date is the UTC day of the message's ORIGINAL send time, which travels
-- with it through every DLQ round trip. id is filled from its sequence, not indexed.
-- The token b-trees serve analysts' lookups and joins, and the vault purge's question
-- "does any row still hold this token?"; the user_id b-tree serves forget. Rows arrive in time order, so BRIN answers
-- "this day" and "the last 24 hours" for almost nothing per insert.
CREATE TABLE public.user_logins (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    idempotency_key  text         NOT NULL,
    user_id          varchar(128) NOT NULL,
    device_type      varchar(32)  NOT NULL,
    masked_ip        varchar(80)  NOT NULL,
    masked_device_id varchar(80)  NOT NULL,
    locale           varchar(32),
    app_version      integer      NOT NULL,
    app_version_raw  varchar(16)  NOT NULL,
    create_date      date         NOT NULL,
    sent_at          timestamptz  NOT NULL,
    loaded_at        timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT user_logins_pkey PRIMARY KEY (idempotency_key, create_date)
) PARTITION BY RANGE (create_date);
COMMENT ON COLUMN public.user_logins.app_version IS
    'major*1000000 + minor*1000 + patch; ordered like the versions';
-- No planner statistics of these columns on the table analysts read: pg_stats would show
-- them user ids and tokens, including erased ones, until the next ANALYZE of the parent
-- (which autovacuum never runs). The partitions keep theirs for the planner: no loginetl
-- role but the owner may read a partition, so none sees its statistics.
ALTER TABLE public.user_logins ALTER COLUMN user_id SET STATISTICS 0,
    ALTER COLUMN masked_ip SET STATISTICS 0, ALTER COLUMN masked_device_id SET STATISTICS 0;
CREATE TABLE public.user_logins_default PARTITION OF public.user_logins DEFAULT;
CREATE INDEX user_logins_create_date_idx ON public.user_logins USING brin (create_date);
CREATE INDEX user_logins_loaded_at_idx ON public.user_logins USING brin (loaded_at);
CREATE INDEX user_logins_masked_ip_idx ON public.user_logins (masked_ip, user_id);
CREATE INDEX user_logins_masked_device_id_idx ON public.user_logins (masked_device_id, user_id);
-- forget finds a user's rows through it, in time independent of the table's size.
CREATE INDEX user_logins_user_id_idx ON public.user_logins (user_id);
