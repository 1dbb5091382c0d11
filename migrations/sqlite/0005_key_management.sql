-- Key management: operators list keys by prefix and last use, and keys may carry an expiry
-- (the same columns as PostgreSQL's api_keys).
ALTER TABLE api_keys ADD COLUMN prefix TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at);
