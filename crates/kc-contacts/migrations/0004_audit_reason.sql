-- The audit trail takes the shape the suite shares (kc_runtime::audit, keycontacts.audit.v1):
-- a reason (T5), empty for the registry's records, which need none.
ALTER TABLE audit_records ADD COLUMN reason text NOT NULL DEFAULT '';
