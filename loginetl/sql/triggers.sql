-- The audit log's triggers: the server computes the chain, and nobody (the owner
-- included, short of disabling a trigger) updates, deletes or truncates a row.
CREATE OR REPLACE TRIGGER unmask_audit_chain BEFORE INSERT ON public.unmask_audit
    FOR EACH ROW EXECUTE FUNCTION public.unmask_audit_chain();
CREATE OR REPLACE TRIGGER unmask_audit_no_change BEFORE UPDATE OR DELETE ON public.unmask_audit
    FOR EACH ROW EXECUTE FUNCTION public.unmask_audit_append_only();
CREATE OR REPLACE TRIGGER unmask_audit_no_truncate BEFORE TRUNCATE ON public.unmask_audit
    FOR EACH STATEMENT EXECUTE FUNCTION public.unmask_audit_append_only();
CREATE OR REPLACE TRIGGER audit_heads_check BEFORE INSERT ON public.audit_heads
    FOR EACH ROW EXECUTE FUNCTION public.audit_heads_check();
CREATE OR REPLACE TRIGGER audit_heads_no_change BEFORE UPDATE OR DELETE ON public.audit_heads
    FOR EACH ROW EXECUTE FUNCTION public.unmask_audit_append_only();
CREATE OR REPLACE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON public.audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION public.unmask_audit_append_only();
