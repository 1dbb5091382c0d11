//! SQLite: outbox.

use super::subscriptions::{subscription_from_row, SUBSCRIPTION_COLUMNS};
use super::{parse_ts, ts};
use super::{SqliteDb, SqliteTx};
use crate::store::outbox::*;
use crate::store::subscriptions::SubscriptionRecord;
use crate::store::{clip, StoreError, StoreResult, MAX_ERROR_CHARS};
use crate::triggers::{Audience, DomainEvent, EventKind};
use chrono::Utc;
use rusqlite::OptionalExtension;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.subscription_id, d.instance_id, d.status, d.attempts, \
     d.next_attempt_at, d.created_at, d.updated_at, d.last_error";

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

impl SqliteDb {
    // ----- the write side: an event and its deliveries, in the caller's transaction -----

    /// Records the event and queues one delivery per active subscription of its trigger in its
    /// instance that is in the event's [`Audience`], inside `tx`. Returns the deliveries queued.
    pub async fn record_event(tx: &mut SqliteTx<'_>, event: &DomainEvent) -> StoreResult<u64> {
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO events (id, instance_id, event_type, payload, occurred_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.instance_id)
        .bind(event.stored_name())
        .bind(serde_json::to_string(&event.kind).expect("event serializes"))
        .bind(ts(event.occurred_at))
        .execute(tx.connection())
        .await?;

        const INSERT: &str = "INSERT INTO deliveries
                (id, event_id, subscription_id, instance_id, status, attempts, next_attempt_at, created_at, updated_at)
            SELECT lower(hex(randomblob(16))), ?, s.id, s.instance_id, 'pending', 0, ?, ?, ?
            FROM subscriptions s
            WHERE s.instance_id = ? AND s.trigger = ? AND s.status = 'active'";
        let base = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(event.id.clone())
                .bind(epoch_ms(now))
                .bind(ts(now))
                .bind(ts(now))
                .bind(event.instance_id.clone())
                .bind(event.trigger().as_str())
        };
        // Each arm is the SQL form of `Audience::includes` (the tests hold the two together).
        let done = match event.audience() {
            Audience::Nobody => return Ok(0),
            Audience::All => base(INSERT.to_string()).execute(tx.connection()).await?,
            Audience::DataSource { data_source_id } => {
                base(format!(
                    "{INSERT} AND (json_extract(s.inputs, '$.dataSourceId') IS NULL
                                  OR json_extract(s.inputs, '$.dataSourceId') = ?)"
                ))
                .bind(data_source_id)
                .execute(tx.connection())
                .await?
            }
            Audience::ThresholdCrossed {
                target,
                target_id,
                previous,
                current,
            } => {
                let key = target.input_key();
                base(format!(
                    "{INSERT} AND json_extract(s.inputs, '$.{key}') = ?
                              AND ? <= json_extract(s.inputs, '$.threshold')
                              AND json_extract(s.inputs, '$.threshold') < ?"
                ))
                .bind(target_id)
                .bind(previous)
                .bind(current)
                .execute(tx.connection())
                .await?
            }
        };
        Ok(done.rows_affected())
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
            .fetch_all(&self.reader)
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
            .fetch_optional(&self.reader)
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
        .fetch_all(&self.reader)
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
            "UPDATE deliveries SET status = 'pending', attempts = 0, claim_token = NULL, next_attempt_at = ?, updated_at = ?
             WHERE id = ? AND subscription_id = ? AND status <> 'pending'
               AND EXISTS (SELECT 1 FROM subscriptions WHERE id = ? AND status = 'active')",
        )
        .bind(epoch_ms(now))
        .bind(ts(now))
        .bind(id)
        .bind(subscription_id)
        .bind(subscription_id)
        .execute(&mut *self.write_alone().await?)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Requeue::Queued);
        }
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscriptions WHERE id = ?")
                .bind(subscription_id)
                .fetch_optional(&self.reader)
                .await?;
        let exists = sqlx::query("SELECT 1 FROM deliveries WHERE id = ? AND subscription_id = ?")
            .bind(id)
            .bind(subscription_id)
            .fetch_optional(&self.reader)
            .await?
            .is_some();
        match (status.as_deref(), exists) {
            (None, _) | (_, false) => Err(StoreError::NotFound),
            (Some("active"), true) => Ok(Requeue::AlreadyPending),
            (Some(_), true) => Ok(Requeue::SubscriptionDead),
        }
    }

    // ----- deliveries: the dispatcher side, on the outbox connection -----
    //
    // Each call is one unit of work on the outbox connection (`threads.rs`): one hand-off,
    // statements prepared once, and the reads after its own writes served from its page cache.

    /// Every active subscription with pending deliveries: the earliest `next_attempt_at` (epoch
    /// ms) among them, and how many are due at `now_ms` (counted up to `cap`), earliest first.
    /// Two index lookups per subscription, however long its backlog.
    ///
    /// The count lets the dispatcher give a subscription only the slots it can use: planning
    /// its full share for a subscription with a single due delivery left most slots idle in a
    /// fan-out (one event for each of many subscriptions).
    pub async fn due_by_subscription(&self, now_ms: i64, cap: usize) -> StoreResult<Vec<Due>> {
        self.outbox
            .run(move |c| {
                let mut scan = c.prepare_cached(
                    "SELECT id, due, ready FROM (
                        SELECT s.id,
                               (SELECT MIN(d.next_attempt_at) FROM deliveries d
                                WHERE d.subscription_id = s.id AND d.status = 'pending') AS due,
                               (SELECT count(*) FROM (SELECT 1 FROM deliveries d
                                WHERE d.subscription_id = s.id AND d.status = 'pending'
                                  AND d.next_attempt_at <= ?1 LIMIT ?2)) AS ready
                        FROM subscriptions s WHERE s.status = 'active'
                     ) WHERE due IS NOT NULL ORDER BY due, id",
                )?;
                let due = scan
                    .query_map(rusqlite::params![now_ms, cap as i64], |r| {
                        Ok(Due {
                            subscription_id: r.get(0)?,
                            due_at: r.get(1)?,
                            ready: r.get::<_, i64>(2)? as usize,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(due)
            })
            .await
    }

    /// Claims due deliveries of several subscriptions, oldest first per subscription: `plan`
    /// says how many each may take (its free slots). Each claimed delivery gets
    /// `next_attempt_at = lease_until_ms`, so it is not due again until the lease runs out (or
    /// the attempt is recorded), and the claim's token.
    ///
    /// One transaction for the whole plan, one fixed statement per subscription that selects
    /// and leases atomically: the share is what the plan asks, at most what the cap leaves
    /// beside the subscription's deliveries under an unexpired lease.
    pub async fn claim_due_batch(
        &self,
        plan: &[(String, usize)],
        now_ms: i64,
        lease_until_ms: i64,
        cap: usize,
    ) -> StoreResult<Vec<Claimed>> {
        let plan = plan.to_vec();
        let _turn = self.write_turn.lock().await;
        self.outbox
            .run(move |c| {
                let token = uuid::Uuid::new_v4().to_string();
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut claimed = Vec::new();
                {
                    let mut claim = tx.prepare_cached(
                        "UPDATE deliveries SET next_attempt_at = ?1, claim_token = ?2 WHERE id IN (
                            SELECT id FROM deliveries
                            WHERE subscription_id = ?3 AND status = 'pending' AND next_attempt_at <= ?4
                            ORDER BY next_attempt_at, created_at, id
                            LIMIT max(0, min(?5, ?6 - (SELECT count(*) FROM deliveries b
                                WHERE b.subscription_id = ?3 AND b.status = 'pending'
                                  AND b.claim_token IS NOT NULL AND b.next_attempt_at > ?4))))
                         RETURNING id",
                    )?;
                    for (subscription_id, limit) in &plan {
                        let ids = claim.query_map(
                            rusqlite::params![
                                lease_until_ms,
                                token,
                                subscription_id,
                                now_ms,
                                *limit as i64,
                                cap as i64
                            ],
                            |r| r.get::<_, String>(0),
                        )?;
                        for id in ids {
                            claimed.push(Claimed {
                                delivery_id: id?,
                                subscription_id: subscription_id.clone(),
                                claim_token: token.clone(),
                            });
                        }
                    }
                }
                tx.commit()?;
                Ok(claimed)
            })
            .await
    }

    /// Deletes finished deliveries (with their attempts) last changed before `before`, then the
    /// events before `before` that no delivery refers to any more, in batches so no single
    /// transaction holds the write lock for long. Pending deliveries are never deleted.
    /// Returns (deliveries, events) deleted.
    pub async fn prune_outbox(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<(u64, u64)> {
        const BATCH: i64 = 5_000;
        let cutoff = ts(before);
        let mut deliveries = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM deliveries WHERE id IN (
                   SELECT id FROM deliveries WHERE status <> 'pending' AND updated_at < ? LIMIT ?)",
            )
            .bind(&cutoff)
            .bind(BATCH)
            .execute(&mut *self.write_alone().await?)
            .await?
            .rows_affected();
            deliveries += done;
            if done < BATCH as u64 {
                break;
            }
        }
        let mut events = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM events WHERE id IN (
                   SELECT e.id FROM events e WHERE e.occurred_at < ?
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                   LIMIT ?)",
            )
            .bind(&cutoff)
            .bind(BATCH)
            .execute(&mut *self.write_alone().await?)
            .await?
            .rows_affected();
            events += done;
            if done < BATCH as u64 {
                break;
            }
        }
        Ok((deliveries, events))
    }

    /// The delivery with its event and subscription. `NotFound` when the delivery is gone.
    pub async fn delivery_context(&self, delivery_id: &str) -> StoreResult<DeliveryContext> {
        self.delivery_contexts(&[delivery_id.to_string()])
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    /// [`delivery_context`](Self::delivery_context) for many deliveries, in the order given;
    /// the deliveries that are gone are left out. The dispatcher reads what a whole claim needs
    /// at once, in one read transaction.
    pub async fn delivery_contexts(&self, ids: &[String]) -> StoreResult<Vec<DeliveryContext>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.outbox
            .run(move |c| {
                let tx = c.transaction()?;
                let mut delivery = tx.prepare_cached(
                    "SELECT d.attempts, d.subscription_id, e.id, e.instance_id, e.payload, e.occurred_at
                     FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1",
                )?;
                let mut subscription = tx.prepare_cached(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE s.id = ?1"
                ))?;
                let mut subscriptions: HashMap<String, Option<SubscriptionRecord>> =
                    HashMap::new();
                // A fan-out is one event for many deliveries: its payload is parsed once.
                let mut events: HashMap<String, EventKind> = HashMap::new();
                let mut contexts = Vec::with_capacity(ids.len());
                for delivery_id in ids {
                    let row = delivery
                        .query_row([&delivery_id], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, String>(4)?,
                                r.get::<_, String>(5)?,
                            ))
                        })
                        .optional()?;
                    let Some((attempts, subscription_id, event_id, instance_id, payload, at)) =
                        row
                    else {
                        continue;
                    };
                    let event = match events.get(&event_id) {
                        Some(event) => event.clone(),
                        None => {
                            let event: EventKind = serde_json::from_str(&payload)
                                .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
                            events.insert(event_id.clone(), event.clone());
                            event
                        }
                    };
                    let record = match subscriptions.get(&subscription_id) {
                        Some(record) => record.clone(),
                        None => {
                            let record = subscription
                                .query_row([&subscription_id], |r| Ok(subscription_from_row(r)))
                                .optional()?
                                .transpose()?;
                            subscriptions.insert(subscription_id.clone(), record.clone());
                            record
                        }
                    };
                    contexts.push(DeliveryContext {
                        delivery_id,
                        subscription_id,
                        attempts,
                        event_id,
                        instance_id,
                        occurred_at: parse_ts(&at)?,
                        event,
                        subscription: record,
                    });
                }
                Ok(contexts)
            })
            .await
    }

    /// Removes a delivery whose subscription no longer exists.
    pub async fn drop_orphan_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM deliveries WHERE id = ? AND subscription_id NOT IN (SELECT id FROM subscriptions)")
            .bind(delivery_id)
            .execute(&mut *self.write_alone().await?)
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
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(())
    }

    /// Records finished attempts and applies their decisions to the deliveries and their
    /// subscriptions, all in one transaction (group commit: one commit, and one WAL write, for
    /// the batch instead of one per attempt).
    ///
    /// The batch is applied with a handful of set-based statements (see
    /// [`apply_attempts_together`](Self::apply_attempts_together)). If that fails, the batch is
    /// recorded again attempt by attempt, each inside its own savepoint, so one bad record is
    /// undone alone and reported in its slot while the others are still committed: a bad record
    /// must not send a whole batch of delivered notifications out again.
    ///
    /// `Err` for the whole call means nothing was recorded. Per attempt, `Ok(false)` means the
    /// delivery no longer exists (its subscription was deleted meanwhile; nothing is recorded).
    pub async fn finish_attempts(
        &self,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        let attempts = attempts.to_vec();
        let _turn = self.write_turn.lock().await;
        self.outbox
            .run(move |c| {
                // Two attempts of one delivery (a lease that ran out mid-attempt) must apply one
                // after the other, which only the one-by-one path does.
                let distinct: HashSet<&str> =
                    attempts.iter().map(|a| a.delivery_id.as_str()).collect();
                if distinct.len() == attempts.len() {
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    match Self::apply_attempts_together(&tx, &attempts) {
                        Ok(recorded) => {
                            tx.commit()?;
                            return Ok(recorded.into_iter().map(Ok).collect());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, attempts = attempts.len(), "recording attempts together failed; recording them one by one");
                        }
                    }
                }
                Self::finish_attempts_one_by_one(c, &attempts)
            })
            .await
    }

    /// [`finish_attempts`](Self::finish_attempts) attempt by attempt, each in a savepoint.
    fn finish_attempts_one_by_one(
        c: &mut rusqlite::Connection,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        let mut tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(attempts.len());
        for finished in attempts {
            let mut savepoint = tx.savepoint()?;
            match Self::apply_attempt(&savepoint, finished) {
                Ok(recorded) => {
                    savepoint.commit()?;
                    results.push(Ok(recorded));
                }
                Err(e) => {
                    // If SQLite rolled back the whole transaction (a full disk, say), the
                    // savepoint is gone too: then the batch fails as a whole, with this error.
                    if savepoint.rollback().is_err() {
                        return Err(e);
                    }
                    drop(savepoint);
                    results.push(Err(e));
                }
            }
        }
        tx.commit()?;
        Ok(results)
    }

    /// The effect of [`apply_attempt`](Self::apply_attempt) for each attempt in turn (delivery
    /// ids distinct), in four statements whatever the batch size; the batch travels as one JSON
    /// parameter. Returns, per attempt, whether it was recorded.
    ///
    /// Equivalence with the one-by-one order: each delivery row changes once, under the same
    /// guard; a subscription's counters are folded here in batch order (a delivery resets
    /// `consecutive_failures`, a failure adds one); and a 404/410 dead-letters the
    /// subscription's pending deliveries last, which leaves what the sequence would (an attempt
    /// of the same subscription that was scheduled for a retry is dead-lettered either way).
    /// One difference: a sibling attempt that failed for good keeps `failed` rather than `dead`.
    fn apply_attempts_together(
        tx: &rusqlite::Connection,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<bool>> {
        let rows: Vec<Value> = attempts
            .iter()
            .map(|a| {
                let (status, next) = delivery_outcome(&a.decision);
                serde_json::json!({
                    "id": a.delivery_id,
                    "at": ts(a.attempt.attempted_at),
                    "code": a.attempt.status_code,
                    "ms": a.attempt.latency_ms,
                    "excerpt": a.attempt.response_excerpt,
                    "error": a.attempt.error.as_deref().map(|e| clip(e, MAX_ERROR_CHARS)),
                    "status": status,
                    "next": next,
                    "token": a.claim_token,
                })
            })
            .collect();
        let batch = Value::Array(rows).to_string();

        // The deliveries: an attempt more, and (only a pending one, or a dead-lettered one this
        // attempt got through to) the decision. SET expressions all see the row as it was.
        let recorded: HashSet<String> = tx
            .prepare_cached(
                "WITH f AS (
                    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.at') AS at,
                           json_extract(value, '$.status') AS status,
                           json_extract(value, '$.next') AS next,
                           json_extract(value, '$.error') AS error,
                           json_extract(value, '$.token') AS token
                    FROM json_each(?1)
                 )
                 UPDATE deliveries SET
                    attempts = attempts + 1,
                    updated_at = f.at,
                    status = CASE WHEN (deliveries.status = 'pending' AND deliveries.claim_token IS f.token)
                                    OR (deliveries.status = 'dead' AND f.status = 'delivered')
                             THEN f.status ELSE deliveries.status END,
                    next_attempt_at = CASE WHEN (deliveries.status = 'pending' AND deliveries.claim_token IS f.token)
                                             OR (deliveries.status = 'dead' AND f.status = 'delivered')
                                      THEN COALESCE(f.next, deliveries.next_attempt_at)
                                      ELSE deliveries.next_attempt_at END,
                    last_error = CASE WHEN (deliveries.status = 'pending' AND deliveries.claim_token IS f.token)
                                        OR (deliveries.status = 'dead' AND f.status = 'delivered')
                                 THEN f.error ELSE deliveries.last_error END,
                    claim_token = CASE WHEN deliveries.claim_token IS f.token THEN NULL
                                  ELSE deliveries.claim_token END
                 FROM f WHERE deliveries.id = f.id
                 RETURNING deliveries.id",
            )?
            .query_map([&batch], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;

        // The attempts, in batch order, of the deliveries that exist (those just updated).
        tx.prepare_cached(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error)
             SELECT json_extract(value, '$.id'), json_extract(value, '$.at'),
                    json_extract(value, '$.code'), json_extract(value, '$.ms'),
                    json_extract(value, '$.excerpt'), json_extract(value, '$.error')
             FROM json_each(?1)
             WHERE json_extract(value, '$.id') IN (SELECT id FROM deliveries)
             ORDER BY key",
        )?
        .execute([&batch])?;

        // The subscriptions: each one's attempts folded in batch order.
        let folded = SubscriptionFold::per_subscription(
            attempts
                .iter()
                .filter(|a| recorded.contains(&a.delivery_id)),
        );
        if !folded.is_empty() {
            let subscriptions = Value::Array(
                folded
                    .iter()
                    .map(|(id, f)| {
                        serde_json::json!({
                            "id": id, "at": ts(f.at), "reset": f.reset, "failures": f.failures,
                            "error": f.error, "gone": f.gone,
                        })
                    })
                    .collect(),
            )
            .to_string();
            tx.prepare_cached(
                "WITH f AS (
                    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.at') AS at,
                           json_extract(value, '$.reset') AS reset,
                           json_extract(value, '$.failures') AS failures,
                           json_extract(value, '$.error') AS error,
                           json_extract(value, '$.gone') AS gone
                    FROM json_each(?1)
                 )
                 UPDATE subscriptions SET
                    last_delivery_at = f.at,
                    consecutive_failures = CASE WHEN f.reset THEN f.failures
                                           ELSE consecutive_failures + f.failures END,
                    last_error = f.error,
                    status = CASE WHEN f.gone THEN 'dead' ELSE subscriptions.status END
                 FROM f WHERE subscriptions.id = f.id",
            )?
            .execute([&subscriptions])?;

            // A 404/410: the subscription's other pending deliveries are dead-lettered.
            let gone: Vec<Value> = folded
                .iter()
                .filter(|(_, f)| f.gone)
                .map(|(id, f)| serde_json::json!({"id": id, "at": ts(f.gone_at)}))
                .collect();
            if !gone.is_empty() {
                tx.prepare_cached(
                    "WITH g AS (
                        SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.at') AS at
                        FROM json_each(?1)
                     )
                     UPDATE deliveries SET status = 'dead', updated_at = g.at, last_error = ?2
                     FROM g WHERE deliveries.subscription_id = g.id AND deliveries.status = 'pending'",
                )?
                .execute(rusqlite::params![
                    Value::Array(gone).to_string(),
                    SUBSCRIPTION_GONE_ERROR
                ])?;
            }
        }
        Ok(attempts
            .iter()
            .map(|a| recorded.contains(&a.delivery_id))
            .collect())
    }

    /// The statements of one attempt's record, inside the caller's transaction.
    fn apply_attempt(tx: &rusqlite::Connection, finished: &FinishedAttempt) -> StoreResult<bool> {
        let FinishedAttempt {
            delivery_id,
            subscription_id,
            attempt,
            decision,
            claim_token,
        } = finished;
        let now = ts(attempt.attempted_at);
        // Write first, so the transaction holds the write lock from its first statement.
        let done = tx
            .prepare_cached(
                "UPDATE deliveries SET attempts = attempts + 1, updated_at = ?1 WHERE id = ?2",
            )?
            .execute(rusqlite::params![now, delivery_id])?;
        if done == 0 {
            return Ok(false);
        }
        let error = attempt.error.as_deref().map(|e| clip(e, MAX_ERROR_CHARS));
        tx.prepare_cached(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(rusqlite::params![
            delivery_id,
            now,
            attempt.status_code,
            attempt.latency_ms,
            attempt.response_excerpt,
            error
        ])?;

        // The delivery: only a pending one changes state (a concurrent 410 may have dead-lettered
        // it meanwhile; if this attempt got through anyway, it counts as delivered).
        let (status, next) = delivery_outcome(decision);
        tx.prepare_cached(
            "UPDATE deliveries SET status = ?1, next_attempt_at = COALESCE(?2, next_attempt_at), last_error = ?3,
                    claim_token = NULL
             WHERE id = ?4 AND ((status = 'pending' AND claim_token IS ?5) OR (status = 'dead' AND ?1 = 'delivered'))",
        )?
        .execute(rusqlite::params![status, next, error, delivery_id, claim_token])?;

        // The subscription's delivery state.
        if *decision == Decision::Delivered {
            tx.prepare_cached(
                "UPDATE subscriptions SET last_delivery_at = ?1, consecutive_failures = 0, last_error = NULL
                 WHERE id = ?2",
            )?
            .execute(rusqlite::params![now, subscription_id])?;
        } else {
            tx.prepare_cached(
                "UPDATE subscriptions SET last_delivery_at = ?1, consecutive_failures = consecutive_failures + 1,
                        last_error = ?2, status = CASE WHEN ?3 THEN 'dead' ELSE status END
                 WHERE id = ?4",
            )?
            .execute(rusqlite::params![
                now,
                error,
                *decision == Decision::SubscriptionGone,
                subscription_id
            ])?;
        }
        if *decision == Decision::SubscriptionGone {
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'dead', updated_at = ?1, last_error = ?2
                 WHERE subscription_id = ?3 AND status = 'pending' AND id <> ?4",
            )?
            .execute(rusqlite::params![
                now,
                SUBSCRIPTION_GONE_ERROR,
                subscription_id,
                delivery_id
            ])?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim the seeded deliveries are under, and that the attempts of the tests carry.
    const TEST_CLAIM: &str = "claim-under-test";
    use crate::store::InstanceRecord;
    use crate::store::Store;

    /// A store with one instance and `subscriptions` active subscriptions (`sub-0`, ...), each
    /// with `per_subscription` pending deliveries (`d-<sub>-<n>`, due at `n` ms, older first).
    async fn outbox(subscriptions: usize, per_subscription: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store
            .insert_instance(&InstanceRecord {
                id: "inst".into(),
                tenant: "t".into(),
                name: "Hooks".into(),
                refresh_schedule: None,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        // A fixed time, so that two outboxes built apart compare equal.
        let now = "2026-01-01T00:00:00.000000Z";
        for s in 0..subscriptions {
            sqlx::query(
                "INSERT INTO subscriptions (id, instance_id, trigger, notification_url, inputs, inputs_key, status, created_at)
                 VALUES (?, 'inst', 'onUnificationCompleted', ?, '{}', '', 'active', ?)",
            )
            .bind(format!("sub-{s}"))
            .bind(format!("http://127.0.0.1:9/{s}"))
            .bind(now)
            .execute(store.pool())
            .await
            .unwrap();
            for n in 0..per_subscription {
                sqlx::query(
                    "INSERT INTO deliveries (id, event_id, subscription_id, instance_id, status, attempts, next_attempt_at, created_at, updated_at, claim_token)
                     VALUES (?, ?, ?, 'inst', 'pending', 0, ?, ?, ?, ?)",
                )
                .bind(format!("d-{s}-{n}"))
                .bind(format!("e-{n}"))
                .bind(format!("sub-{s}"))
                .bind(n as i64)
                .bind(now)
                .bind(now)
                .bind(TEST_CLAIM)
                .execute(store.pool())
                .await
                .unwrap();
            }
        }
        (dir, store)
    }

    fn delivered(delivery_id: &str, subscription_id: &str) -> FinishedAttempt {
        FinishedAttempt {
            delivery_id: delivery_id.into(),
            claim_token: TEST_CLAIM.into(),
            subscription_id: subscription_id.into(),
            attempt: AttemptRecord {
                attempted_at: Utc::now(),
                status_code: Some(200),
                latency_ms: 3,
                response_excerpt: Some("ok".into()),
                error: None,
            },
            decision: Decision::Delivered,
        }
    }

    async fn delivery_state(store: &Store, id: &str) -> (String, i64, i64) {
        let row = sqlx::query(
            "SELECT status, attempts, (SELECT count(*) FROM delivery_attempts WHERE delivery_id = d.id) AS recorded
             FROM deliveries d WHERE id = ?",
        )
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        (row.get("status"), row.get("attempts"), row.get("recorded"))
    }

    #[tokio::test]
    async fn a_claim_takes_the_oldest_due_deliveries_of_each_subscription_up_to_its_share() {
        let (_dir, store) = outbox(150, 3).await;
        // 150 subscriptions: more than one statement's worth (100).
        let mut plan: Vec<(String, usize)> = (0..150).map(|s| (format!("sub-{s}"), 2)).collect();
        plan[0].1 = 5; // more than it has
        let lease_until = 1_000_000;
        let claimed = store
            .claim_due_batch(&plan, 10, lease_until, 100)
            .await
            .unwrap();
        let mut ids: Vec<&str> = claimed.iter().map(|c| c.delivery_id.as_str()).collect();
        ids.sort();
        assert_eq!(claimed.len(), 3 + 149 * 2);
        assert!(ids.contains(&"d-0-2"));
        assert!(ids.contains(&"d-7-0") && ids.contains(&"d-7-1") && !ids.contains(&"d-7-2"));
        for c in &claimed {
            assert!(c
                .delivery_id
                .starts_with(&format!("d-{}-", &c.subscription_id[4..])));
        }
        // Leased: not due again until the lease runs out.
        let again = store
            .claim_due_batch(&plan, 10, lease_until, 100)
            .await
            .unwrap();
        assert_eq!(
            again.len(),
            149,
            "only each subscription's third delivery is left"
        );
        assert!(store
            .claim_due_batch(&plan, 10, lease_until, 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .claim_due_batch(&plan, lease_until, 0, 100)
                .await
                .unwrap()
                .len(),
            3 + 149 * 2,
            "an expired lease makes the deliveries due again (each within its share)"
        );
        // Not yet due.
        let (_dir, store) = outbox(1, 3).await;
        let claimed = store
            .claim_due_batch(&[("sub-0".into(), 4)], 1, lease_until, 100)
            .await
            .unwrap();
        assert_eq!(
            claimed.len(),
            2,
            "the delivery due at 2 ms is not due at 1 ms"
        );
    }

    #[tokio::test]
    async fn a_batch_of_attempts_lands_whole_in_one_transaction() {
        let (_dir, store) = outbox(300, 1).await;
        let batch: Vec<FinishedAttempt> = (0..300)
            .map(|s| delivered(&format!("d-{s}-0"), &format!("sub-{s}")))
            .chain([delivered("gone", "sub-0")])
            .collect();
        let results = store.finish_attempts(&batch).await.unwrap();
        assert_eq!(results.len(), 301);
        assert!(results[..300].iter().all(|r| matches!(r, Ok(true))));
        assert!(
            matches!(results[300], Ok(false)),
            "a delivery that no longer exists is not recorded"
        );
        for s in [0, 150, 299] {
            assert_eq!(
                delivery_state(&store, &format!("d-{s}-0")).await,
                ("delivered".into(), 1, 1)
            );
        }
        let subscriptions_delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM subscriptions WHERE last_delivery_at IS NOT NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(subscriptions_delivered, 300);
        let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(attempts, 300);
    }

    /// Everything the store holds about deliveries, attempts and subscriptions.
    async fn outbox_state(store: &Store) -> Vec<String> {
        let mut state = Vec::new();
        for sql in [
            "SELECT json_array(id, status, attempts, next_attempt_at, updated_at, last_error) FROM deliveries ORDER BY id",
            "SELECT json_array(delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error) FROM delivery_attempts ORDER BY id",
            "SELECT json_array(id, status, last_delivery_at, consecutive_failures, last_error) FROM subscriptions ORDER BY id",
        ] {
            let rows: Vec<String> = sqlx::query_scalar(sql)
                .fetch_all(store.pool())
                .await
                .unwrap();
            state.extend(rows);
        }
        state
    }

    /// The set-based batch leaves exactly what recording the attempts one by one leaves, for
    /// every kind of decision, several attempts of one subscription in a batch, a dead-lettered
    /// delivery that an attempt got through to, and a delivery that is gone.
    #[tokio::test]
    async fn recording_a_batch_together_equals_recording_it_attempt_by_attempt() {
        let t0 = Utc::now();
        let mut n = 0;
        let mut attempt = |delivery: &str, sub: &str, decision: Decision| {
            n += 1;
            let failed = decision != Decision::Delivered;
            FinishedAttempt {
                delivery_id: delivery.into(),
                claim_token: TEST_CLAIM.into(),
                subscription_id: sub.into(),
                attempt: AttemptRecord {
                    attempted_at: t0 + chrono::Duration::milliseconds(n),
                    status_code: Some(if failed { 500 + n } else { 200 }),
                    latency_ms: n,
                    response_excerpt: (n % 2 == 0).then(|| format!("answer {n}")),
                    error: failed.then(|| format!("error {n}")),
                },
                decision,
            }
        };
        let batch = vec![
            attempt("d-0-0", "sub-0", Decision::Delivered),
            attempt("d-0-1", "sub-0", Decision::RetryAt(5_000)),
            attempt("d-0-2", "sub-0", Decision::Delivered), // dead-lettered before
            attempt("d-1-0", "sub-1", Decision::RetryAt(6_000)),
            attempt("d-1-1", "sub-1", Decision::Delivered),
            attempt("d-2-0", "sub-2", Decision::RetryAt(7_000)),
            attempt("d-2-1", "sub-2", Decision::SubscriptionGone),
            attempt("d-3-0", "sub-3", Decision::DeadLetter),
            attempt("d-3-1", "sub-3", Decision::Failed),
            attempt("gone", "sub-3", Decision::Delivered),
        ];
        let mut states = Vec::new();
        for together in [true, false] {
            let (_dir, store) = outbox(5, 3).await;
            sqlx::query("UPDATE deliveries SET status = 'dead' WHERE id = 'd-0-2'")
                .execute(store.pool())
                .await
                .unwrap();
            sqlx::query("UPDATE subscriptions SET consecutive_failures = 5, last_error = 'x' WHERE id = 'sub-3'")
                .execute(store.pool())
                .await
                .unwrap();
            let batch = batch.clone();
            let recorded: Vec<bool> = store
                .sqlite()
                .outbox
                .run(move |c| {
                    if together {
                        let tx = c.transaction()?;
                        let recorded = SqliteDb::apply_attempts_together(&tx, &batch)?;
                        tx.commit()?;
                        Ok(recorded)
                    } else {
                        let results = SqliteDb::finish_attempts_one_by_one(c, &batch)?;
                        Ok(results.into_iter().map(Result::unwrap).collect())
                    }
                })
                .await
                .unwrap();
            assert_eq!(
                recorded,
                [true, true, true, true, true, true, true, true, true, false]
            );
            states.push(outbox_state(&store).await);
        }
        assert_eq!(states[0], states[1]);
        let state = states.remove(0).join("\n");
        // Spot checks that the scenario exercises what it claims to.
        for expected in [
            r#"["d-0-2","delivered",1"#,
            r#"["d-2-0","dead",1"#,
            r#"["d-2-2","dead",0"#,
            r#"["d-4-0","pending",0"#,
            r#"["sub-0","active""#,
            r#"["sub-2","dead""#,
        ] {
            assert!(state.contains(expected), "{expected} not in\n{state}");
        }
        assert!(
            state.contains(",7,\"error 9\"]"),
            "sub-3 counts on from 5:\n{state}"
        );
    }

    /// One record that fails is undone alone: the rest of its batch is committed (otherwise a
    /// bad record would send a whole batch of delivered notifications out again), and the
    /// failed one stays pending, to be attempted again when its lease runs out.
    #[tokio::test]
    async fn a_failing_record_does_not_take_its_batch_down_and_leaves_its_delivery_pending() {
        let (_dir, store) = outbox(3, 1).await;
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON delivery_attempts WHEN NEW.delivery_id = 'd-1-0'
             BEGIN SELECT RAISE(ABORT, 'poisoned record'); END",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let batch: Vec<FinishedAttempt> = (0..3)
            .map(|s| delivered(&format!("d-{s}-0"), &format!("sub-{s}")))
            .collect();
        let results = store.finish_attempts(&batch).await.unwrap();
        assert!(matches!(results[0], Ok(true)));
        assert!(
            matches!(&results[1], Err(e) if e.to_string().contains("poisoned record")),
            "{:?}",
            results[1]
        );
        assert!(matches!(results[2], Ok(true)));
        assert_eq!(
            delivery_state(&store, "d-0-0").await,
            ("delivered".into(), 1, 1)
        );
        assert_eq!(
            delivery_state(&store, "d-1-0").await,
            ("pending".into(), 0, 0),
            "the failed record's own statements are undone"
        );
        assert_eq!(
            delivery_state(&store, "d-2-0").await,
            ("delivered".into(), 1, 1)
        );
        let (last_delivery, failures): (Option<String>, i64) = sqlx::query_as(
            "SELECT last_delivery_at, consecutive_failures FROM subscriptions WHERE id = 'sub-1'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((last_delivery, failures), (None, 0));
    }

    #[test]
    fn clip_keeps_short_and_cuts_long_on_char_boundaries() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
