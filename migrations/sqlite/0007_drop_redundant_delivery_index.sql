-- `deliveries_by_subscription_due (subscription_id, status, next_attempt_at)` serves every
-- lookup this index served (it is its prefix); each delivery's claim and record rewrote both.
DROP INDEX IF EXISTS deliveries_by_subscription;
