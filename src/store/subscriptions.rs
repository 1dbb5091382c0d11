//! Trigger subscriptions and the outbox's delivery side: claiming due deliveries with a lease,
//! recording attempts and their outcome, and the queries behind the subscription API.
//!
//! Delivery states: `pending` (queued or being attempted), `delivered`, `failed` (a permanent
//! failure of that message: a 4xx other than 404/410, a refused destination, or a 404/410 that
//! killed the subscription) and `dead` (dead-lettered: retries exhausted, or never sent because
//! its subscription died). `failed` and `dead` deliveries can be queued again (`requeue`).
//!
//! Crash safety comes from the lease: claiming a delivery does not change its state, it only
//! pushes `next_attempt_at` past the attempt's deadline. If the process dies mid-attempt, the
//! delivery is simply due again once the lease runs out; nothing needs repairing at start-up.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::events::{epoch_ms, EventKind};
use super::{parse_opt_ts, parse_ts, ts, Store, StoreError, StoreResult};

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub id: String,
    pub instance_id: String,
    pub trigger: String,
    pub notification_url: String,
    pub inputs: Value,
    pub inputs_key: String,
    pub secret: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
}

/// A stored delivery (one event for one subscription).
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub event_id: String,
    pub subscription_id: String,
    pub instance_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// One recorded attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// Everything an attempt needs, read in one go.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    pub delivery_id: String,
    pub attempts: i64,
    pub event_id: String,
    pub instance_id: String,
    pub occurred_at: DateTime<Utc>,
    pub event: EventKind,
    /// `None` when the subscription no longer exists.
    pub subscription: Option<SubscriptionRecord>,
}

/// A claimed delivery: due, and leased to this process until the lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub delivery_id: String,
    pub subscription_id: String,
}

/// What an attempt decided for its delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// 2xx.
    Delivered,
    /// Try again at this time (epoch ms).
    RetryAt(i64),
    /// Retries exhausted: dead-letter.
    DeadLetter,
    /// Permanent failure of this message.
    Failed,
    /// 404/410: this message failed and the subscription is dead; its other pending
    /// deliveries are dead-lettered.
    SubscriptionGone,
}

/// Result of [`Store::requeue_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    Queued,
    AlreadyPending,
    SubscriptionDead,
}

const SUBSCRIPTION_COLUMNS: &str =
    "s.id, s.instance_id, s.trigger, s.notification_url, s.inputs, s.inputs_key, \
     s.secret, s.status, s.created_at, s.last_delivery_at, s.consecutive_failures, s.last_error";

/// The same columns without the table alias (`RETURNING` does not accept it).
const RETURNING_COLUMNS: &str = "id, instance_id, trigger, notification_url, inputs, inputs_key, \
     secret, status, created_at, last_delivery_at, consecutive_failures, last_error";

const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.subscription_id, d.instance_id, d.status, d.attempts, \
     d.next_attempt_at, d.created_at, d.updated_at, d.last_error";

fn subscription_from_row(r: &SqliteRow) -> StoreResult<SubscriptionRecord> {
    let inputs: String = r.get("inputs");
    Ok(SubscriptionRecord {
        id: r.get("id"),
        instance_id: r.get("instance_id"),
        trigger: r.get("trigger"),
        notification_url: r.get("notification_url"),
        inputs: serde_json::from_str(&inputs)
            .map_err(|e| StoreError::Corrupt(format!("subscription inputs: {e}")))?,
        inputs_key: r.get("inputs_key"),
        secret: r.get("secret"),
        status: r.get("status"),
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
        last_delivery_at: parse_opt_ts(r.get("last_delivery_at"))?,
        consecutive_failures: r.get("consecutive_failures"),
        last_error: r.get("last_error"),
    })
}

fn delivery_from_row(r: &SqliteRow) -> StoreResult<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get("id"),
        event_id: r.get("event_id"),
        subscription_id: r.get("subscription_id"),
        instance_id: r.get("instance_id"),
        status: r.get("status"),
        attempts: r.get("attempts"),
        next_attempt_at: r.get("next_attempt_at"),
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
        updated_at: parse_ts(r.get::<&str, _>("updated_at"))?,
        last_error: r.get("last_error"),
    })
}

/// Longest error text kept in `last_error` columns.
const MAX_ERROR_CHARS: usize = 500;

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Store {
    // ----- existence checks for subscribe inputs (tenant-scoped) -----

    async fn exists_in_instance(
        &self,
        table: &str,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let sql = format!(
            "SELECT 1 FROM {table} x JOIN instances i ON i.id = x.instance_id
             WHERE x.id = ? AND x.instance_id = ? AND i.tenant = ?"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(instance_id)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Is there a data source `id` in this tenant's instance?
    pub async fn data_source_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.exists_in_instance("data_sources", tenant, instance_id, id)
            .await
    }

    pub async fn segment_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.exists_in_instance("segments", tenant, instance_id, id)
            .await
    }

    pub async fn measure_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.exists_in_instance("measures", tenant, instance_id, id)
            .await
    }

    // ----- subscriptions -----

    /// Inserts the subscription, or, when one with the same instance, trigger, callback URL and
    /// inputs exists, returns that one (with the new secret; a dead one becomes active again,
    /// since the platform only re-subscribes for a flow that exists). Race-free: one statement.
    pub async fn upsert_subscription(
        &self,
        rec: &SubscriptionRecord,
    ) -> StoreResult<SubscriptionRecord> {
        let sql = format!(
            "INSERT INTO subscriptions AS s
                (id, instance_id, trigger, notification_url, inputs, inputs_key, secret, status,
                 created_at, consecutive_failures)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, 0)
             ON CONFLICT (instance_id, trigger, notification_url, inputs_key) DO UPDATE SET
                secret = excluded.secret,
                consecutive_failures = CASE WHEN s.status = 'active' THEN s.consecutive_failures ELSE 0 END,
                last_error = CASE WHEN s.status = 'active' THEN s.last_error ELSE NULL END,
                status = 'active'
             RETURNING {RETURNING_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&rec.id)
            .bind(&rec.instance_id)
            .bind(&rec.trigger)
            .bind(&rec.notification_url)
            .bind(serde_json::to_string(&rec.inputs).expect("JSON serializes"))
            .bind(&rec.inputs_key)
            .bind(&rec.secret)
            .bind(ts(rec.created_at))
            .fetch_one(&self.pool)
            .await?;
        subscription_from_row(&row)
    }

    /// The tenant's subscriptions of one instance, oldest first.
    pub async fn list_subscriptions(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN instances i ON i.id = s.instance_id
             WHERE s.instance_id = ? AND i.tenant = ? ORDER BY s.created_at, s.id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance_id)
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(subscription_from_row)
            .collect()
    }

    /// Another tenant's subscription is `NotFound`, exactly like a missing one.
    pub async fn get_subscription(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<SubscriptionRecord> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN instances i ON i.id = s.instance_id
             WHERE s.id = ? AND s.instance_id = ? AND i.tenant = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(instance_id)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        subscription_from_row(&row)
    }

    /// Deletes the subscription with its queued and past deliveries. `false` when there was
    /// nothing to delete (already gone, or not the tenant's).
    pub async fn delete_subscription(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM subscriptions WHERE id = ? AND instance_id = ?
               AND instance_id IN (SELECT id FROM instances WHERE tenant = ?)",
        )
        .bind(id)
        .bind(instance_id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Attempts go with their deliveries (foreign key, ON DELETE CASCADE).
        sqlx::query("DELETE FROM deliveries WHERE subscription_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ----- deliveries: the API side -----

    /// Deliveries of a subscription, newest first, optionally of one status.
    pub async fn list_deliveries(
        &self,
        subscription_id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d
             WHERE d.subscription_id = ? AND (? IS NULL OR d.status = ?)
             ORDER BY d.created_at DESC, d.id DESC LIMIT ?"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subscription_id)
            .bind(status)
            .bind(status)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    pub async fn get_delivery(
        &self,
        subscription_id: &str,
        id: &str,
    ) -> StoreResult<DeliveryRecord> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ? AND d.subscription_id = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(subscription_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        delivery_from_row(&row)
    }

    /// The most recent attempts of a delivery, newest first.
    pub async fn recent_attempts(
        &self,
        delivery_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        sqlx::query(
            "SELECT attempted_at, status_code, latency_ms, response_excerpt, error
             FROM delivery_attempts WHERE delivery_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(delivery_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AttemptRecord {
                attempted_at: parse_ts(r.get::<&str, _>("attempted_at"))?,
                status_code: r.get("status_code"),
                latency_ms: r.get("latency_ms"),
                response_excerpt: r.get("response_excerpt"),
                error: r.get("error"),
            })
        })
        .collect()
    }

    /// Queues a finished delivery again (a fresh retry cycle, due now). A pending delivery is
    /// left as it is; a dead subscription receives nothing.
    pub async fn requeue_delivery(&self, subscription_id: &str, id: &str) -> StoreResult<Requeue> {
        // One guarded write (no read-then-write transaction that could lose the race for the
        // write lock); the reads afterwards only explain a refusal.
        let now = Utc::now();
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?
             WHERE id = ? AND subscription_id = ? AND status <> 'pending'
               AND EXISTS (SELECT 1 FROM subscriptions WHERE id = ? AND status = 'active')",
        )
        .bind(epoch_ms(now))
        .bind(ts(now))
        .bind(id)
        .bind(subscription_id)
        .bind(subscription_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Requeue::Queued);
        }
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscriptions WHERE id = ?")
                .bind(subscription_id)
                .fetch_optional(&self.pool)
                .await?;
        let exists = sqlx::query("SELECT 1 FROM deliveries WHERE id = ? AND subscription_id = ?")
            .bind(id)
            .bind(subscription_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        match (status.as_deref(), exists) {
            (None, _) | (_, false) => Err(StoreError::NotFound),
            (Some("active"), true) => Ok(Requeue::AlreadyPending),
            (Some(_), true) => Ok(Requeue::SubscriptionDead),
        }
    }

    // ----- deliveries: the dispatcher side -----

    /// Every active subscription with pending deliveries, and the earliest `next_attempt_at`
    /// (epoch ms) among them, earliest first. One index lookup per subscription, however long
    /// its backlog.
    pub async fn due_by_subscription(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, due FROM (
                SELECT s.id,
                       (SELECT MIN(d.next_attempt_at) FROM deliveries d
                        WHERE d.subscription_id = s.id AND d.status = 'pending') AS due
                FROM subscriptions s WHERE s.status = 'active'
             ) WHERE due IS NOT NULL ORDER BY due, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>("id"), r.get::<i64, _>("due")))
            .collect())
    }

    /// Claims up to `limit` due deliveries of one subscription, oldest first. Each claimed
    /// delivery gets `next_attempt_at = lease_until_ms`, so it is not due again until the lease
    /// runs out (or the attempt is recorded).
    pub async fn claim_due_deliveries(
        &self,
        subscription_id: &str,
        now_ms: i64,
        limit: usize,
        lease_until_ms: i64,
    ) -> StoreResult<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, next_attempt_at FROM deliveries
             WHERE subscription_id = ? AND status = 'pending' AND next_attempt_at <= ?
             ORDER BY next_attempt_at, created_at, id LIMIT ?",
        )
        .bind(subscription_id)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Only writes in this transaction, so it holds the write lock from its first statement.
        let mut tx = self.pool.begin().await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get("id");
            // Guarded: only if nobody changed the row since it was read.
            let done = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = ?
                 WHERE id = ? AND status = 'pending' AND next_attempt_at = ?",
            )
            .bind(lease_until_ms)
            .bind(&id)
            .bind(r.get::<i64, _>("next_attempt_at"))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(Claimed {
                    delivery_id: id,
                    subscription_id: subscription_id.to_string(),
                });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The delivery with its event and subscription. `NotFound` when the delivery is gone.
    pub async fn delivery_context(&self, delivery_id: &str) -> StoreResult<DeliveryContext> {
        let row = sqlx::query(
            "SELECT d.id, d.attempts, d.subscription_id, e.id AS event_id, e.instance_id,
                    e.payload, e.occurred_at
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = ?",
        )
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let payload: String = row.get("payload");
        let event: EventKind = serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
        let subscription_id: String = row.get("subscription_id");
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE s.id = ?");
        let subscription = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&subscription_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(subscription_from_row)
            .transpose()?;
        Ok(DeliveryContext {
            delivery_id: row.get("id"),
            attempts: row.get("attempts"),
            event_id: row.get("event_id"),
            instance_id: row.get("instance_id"),
            occurred_at: parse_ts(row.get::<&str, _>("occurred_at"))?,
            event,
            subscription,
        })
    }

    /// Removes a delivery whose subscription no longer exists.
    pub async fn drop_orphan_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM deliveries WHERE id = ? AND subscription_id NOT IN (SELECT id FROM subscriptions)")
            .bind(delivery_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a pending delivery dead without an attempt (its subscription is dead).
    pub async fn dead_letter_unsent(&self, delivery_id: &str, reason: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'dead', last_error = ?, updated_at = ?
             WHERE id = ? AND status = 'pending'",
        )
        .bind(clip(reason, MAX_ERROR_CHARS))
        .bind(ts(Utc::now()))
        .bind(delivery_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records one attempt and applies its decision to the delivery and its subscription, in one
    /// transaction. Returns `false` when the delivery no longer exists (its subscription was
    /// deleted meanwhile; nothing is recorded then).
    pub async fn finish_attempt(
        &self,
        delivery_id: &str,
        subscription_id: &str,
        attempt: &AttemptRecord,
        decision: &Decision,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let now = ts(attempt.attempted_at);
        // Write first, so the transaction holds the write lock from its first statement.
        let done = sqlx::query(
            "UPDATE deliveries SET attempts = attempts + 1, updated_at = ? WHERE id = ?",
        )
        .bind(&now)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(delivery_id)
        .bind(&now)
        .bind(attempt.status_code)
        .bind(attempt.latency_ms)
        .bind(&attempt.response_excerpt)
        .bind(attempt.error.as_deref().map(|e| clip(e, MAX_ERROR_CHARS)))
        .execute(&mut *tx)
        .await?;

        let error = attempt.error.as_deref().map(|e| clip(e, MAX_ERROR_CHARS));
        // The delivery: only a pending one changes state (a concurrent 410 may have dead-lettered
        // it meanwhile; if this attempt got through anyway, it counts as delivered).
        let (status, next): (&str, Option<i64>) = match decision {
            Decision::Delivered => ("delivered", None),
            Decision::RetryAt(at) => ("pending", Some(*at)),
            Decision::DeadLetter => ("dead", None),
            Decision::Failed | Decision::SubscriptionGone => ("failed", None),
        };
        sqlx::query(
            "UPDATE deliveries SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?
             WHERE id = ? AND (status = 'pending' OR (status = 'dead' AND ? = 'delivered'))",
        )
        .bind(status)
        .bind(next)
        .bind(&error)
        .bind(delivery_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;

        // The subscription's delivery state.
        if *decision == Decision::Delivered {
            sqlx::query(
                "UPDATE subscriptions SET last_delivery_at = ?, consecutive_failures = 0, last_error = NULL
                 WHERE id = ?",
            )
            .bind(&now)
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE subscriptions SET last_delivery_at = ?, consecutive_failures = consecutive_failures + 1,
                        last_error = ?, status = CASE WHEN ? THEN 'dead' ELSE status END
                 WHERE id = ?",
            )
            .bind(&now)
            .bind(&error)
            .bind(*decision == Decision::SubscriptionGone)
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?;
        }
        if *decision == Decision::SubscriptionGone {
            sqlx::query(
                "UPDATE deliveries SET status = 'dead', updated_at = ?,
                        last_error = 'not sent: the subscription is dead (its callback answered that the flow is gone)'
                 WHERE subscription_id = ? AND status = 'pending' AND id <> ?",
            )
            .bind(&now)
            .bind(subscription_id)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_and_cuts_long_on_char_boundaries() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
