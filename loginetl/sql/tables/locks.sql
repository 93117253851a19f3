-- The turns loginetl's own definer functions take (loginetl_take_turn: a row lock):
--   fold        one rollup fold at a time
--   settle      one move of vault_inbox into pii_vault at a time
--   lifecycle   one forget or retention step at a time (taken first, before any other)
--   partitions  one creator of monthly partitions at a time
-- No role but the owner has any privilege on this table, so no other role can take or
-- hold these locks (an advisory lock anyone could), and pg_locks shows every holder the
-- same row-share lock on this one table, whatever the turn is for. A function that takes
-- several takes them in one order: lifecycle, fold, settle.
CREATE TABLE public.loginetl_locks (
    name text PRIMARY KEY
);
INSERT INTO public.loginetl_locks (name) VALUES ('fold'), ('lifecycle'), ('partitions'), ('settle');
