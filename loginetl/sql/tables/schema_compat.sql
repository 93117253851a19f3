-- Rolling deploys: a revision after the baseline that older consumers may run on
-- inserts (its revision, the oldest consumer head it serves). A consumer whose code does
-- not know the database's revision runs only if every unknown revision declares itself
-- compatible with a revision it knows.
CREATE TABLE public.loginetl_schema_compat (
    revision        text PRIMARY KEY,
    compatible_with text NOT NULL
);
COMMENT ON TABLE public.loginetl_schema_compat IS
    'per revision: the oldest consumer head that may run against this schema';
