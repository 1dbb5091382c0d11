-- The dispatcher finds each subscription's next due delivery through this index, so a
-- subscription with a large backlog costs one index lookup, not a scan of its backlog.
CREATE INDEX deliveries_by_subscription_due ON deliveries (subscription_id, status, next_attempt_at);
