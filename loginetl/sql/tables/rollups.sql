-- The rollups: every figure `stats` prints is read from these small tables, never from
-- user_logins, so its time does not grow with the data.
--
-- Loads append each new row to rollup_pending with sign +1; forget and retention append
-- removed rows with sign -1. loginetl_fold_rollups() adds the signed counts in bulk and
-- deletes what it folded in the same transaction, so every row is counted once. A pair,
-- token or user is present while its count is above zero (a -1 may be folded before its
-- +1); rows whose count reaches zero are deleted, found through the *_zero_idx indexes.
--
-- Analysts read these tables, so none keeps planner statistics of its user ids and tokens
-- (SET STATISTICS 0): pg_stats never holds a copy that an erasure would have to reach.
CREATE TABLE public.rollup_pending (
    user_id          varchar(128) NOT NULL,
    masked_ip        varchar(80)  NOT NULL,
    masked_device_id varchar(80)  NOT NULL,
    sent_at          timestamptz  NOT NULL,
    device_type      varchar(32),
    locale           varchar(32),
    app_version_raw  varchar(16),
    create_date      date,
    loaded_at        timestamptz,
    sign             smallint     NOT NULL DEFAULT 1 CHECK (sign IN (-1, 1))
);
ALTER TABLE public.rollup_pending ALTER COLUMN user_id SET STATISTICS 0,
    ALTER COLUMN masked_ip SET STATISTICS 0, ALTER COLUMN masked_device_id SET STATISTICS 0;
COMMENT ON TABLE public.rollup_pending IS
    'rows loaded but not yet folded into token_users/token_stats/user_stats';

-- Logins per (token, user) pair: a removal knows when a pair, and with it one of the
-- token's distinct users, is gone.
CREATE TABLE public.token_users (
    pii_field varchar(16)  NOT NULL,
    token     varchar(80)  NOT NULL,
    user_id   varchar(128) NOT NULL,
    logins    bigint       NOT NULL DEFAULT 0,
    PRIMARY KEY (pii_field, token, user_id)
);
ALTER TABLE public.token_users ALTER COLUMN token SET STATISTICS 0,
    ALTER COLUMN user_id SET STATISTICS 0;
CREATE INDEX token_users_zero_idx ON public.token_users (pii_field, token, user_id)
    WHERE logins <= 0;

-- Users and logins per token. The top index holds only shared tokens, the only ones
-- `stats` lists through it (most tokens have one user).
CREATE TABLE public.token_stats (
    pii_field varchar(16) NOT NULL,
    token     varchar(80) NOT NULL,
    users     bigint      NOT NULL,
    logins    bigint      NOT NULL,
    PRIMARY KEY (pii_field, token)
);
ALTER TABLE public.token_stats ALTER COLUMN token SET STATISTICS 0;
CREATE INDEX token_stats_top_idx ON public.token_stats
    (pii_field, users DESC, logins DESC, token) WHERE users > 1;
CREATE INDEX token_stats_zero_idx ON public.token_stats (pii_field, token) WHERE logins <= 0;

CREATE TABLE public.user_stats (
    user_id varchar(128) PRIMARY KEY,
    logins  bigint       NOT NULL
);
ALTER TABLE public.user_stats ALTER COLUMN user_id SET STATISTICS 0;
CREATE INDEX user_stats_zero_idx ON public.user_stats (user_id) WHERE logins <= 0;

CREATE TABLE public.rollup_totals (
    metric varchar(32) PRIMARY KEY,
    value  bigint      NOT NULL
);
COMMENT ON TABLE public.rollup_totals IS
    'distinct users, ip tokens and device tokens held in user_logins (folded rows)';
-- The fold only updates these three rows.
INSERT INTO public.rollup_totals (metric, value)
    VALUES ('users', 0), ('ip_tokens', 0), ('device_tokens', 0);

CREATE TABLE public.rollup_breakdown (
    dimension varchar(16) NOT NULL CHECK (dimension IN ('device_type', 'locale', 'app_version')),
    value     varchar(32),
    logins    bigint      NOT NULL,
    CONSTRAINT rollup_breakdown_key UNIQUE NULLS NOT DISTINCT (dimension, value)
);

CREATE TABLE public.rollup_months (
    month  date   PRIMARY KEY,
    logins bigint NOT NULL
);
COMMENT ON TABLE public.rollup_months IS
    'logins per month of create_date (the partition key); their sum is the row count';

CREATE TABLE public.rollup_hourly (
    loaded_hour timestamptz PRIMARY KEY,
    logins      bigint      NOT NULL
);
