//! PostgreSQL: outbox.
//!
//! Several replicas share the outbox: a claim locks what it leases (`FOR UPDATE SKIP LOCKED`),
//! so two claims never take the same delivery, and recording attempts locks the subscriptions
//! it will change first, in id order, so two replicas recording at once cannot deadlock.

use super::parse_id;
use super::subscriptions::{subscription_from_row, SUBSCRIPTION_COLUMNS};
use super::{PgDb, PgTx};
use crate::store::outbox::*;
use crate::store::subscriptions::SubscriptionRecord;
use crate::store::{clip, StoreError, StoreResult, MAX_ERROR_CHARS};
use crate::triggers::{Audience, DomainEvent, EventKind};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.subscription_id, d.instance_id, d.status, d.attempts, \
     d.next_attempt_at, d.created_at, d.updated_at, d.last_error";

fn delivery_from_row(r: &PgRow) -> StoreResult<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.try_get::<Uuid, _>("id")?.to_string(),
        event_id: r.try_get::<Uuid, _>("event_id")?.to_string(),
        subscription_id: r.try_get::<Uuid, _>("subscription_id")?.to_string(),
        instance_id: r.try_get::<Uuid, _>("instance_id")?.to_string(),
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_error: r.try_get("last_error")?,
    })
}

/// The ids that name rows, each with its position in `ids` (the others name nothing).
fn row_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> (Vec<usize>, Vec<Uuid>) {
    ids.into_iter()
        .enumerate()
        .filter_map(|(i, id)| parse_id(id).map(|u| (i, u)))
        .unzip()
}

/// The deliveries an event queues: one per active subscription of its trigger in its instance;
/// each audience adds its condition (`$1`..`$4`: event, now in ms, now, instance, trigger).
macro_rules! insert_deliveries {
    ($($audience:expr),*) => {
        concat!(
            "INSERT INTO deliveries
                (id, event_id, subscription_id, instance_id, status, attempts, next_attempt_at,
                 created_at, updated_at)
             SELECT gen_random_uuid(), $1, s.id, s.instance_id, 'pending', 0, $2, $3, $3
             FROM subscriptions s
             WHERE s.instance_id = $4 AND s.trigger = $5 AND s.status = 'active'"
            $(, $audience)*
        )
    };
}

/// A subscription's threshold input as a number, NULL unless it is a JSON number (the only
/// kind `Audience::includes` compares).
macro_rules! threshold {
    () => {
        "(CASE WHEN jsonb_typeof(s.inputs -> 'threshold') = 'number'
               THEN (s.inputs ->> 'threshold')::float8 END)"
    };
}

/// The advisory lock key of outbox pruning (an arbitrary constant, unique in this schema).
const PRUNE_LOCK: i64 = 0x6f75_7462_6f78; // "outbox"

impl PgDb {
    // ----- the write side: an event and its deliveries, in the caller's transaction -----

    /// Records the event and queues one delivery per active subscription of its trigger in its
    /// instance that is in the event's [`Audience`], inside `tx`. Returns the deliveries queued.
    pub async fn record_event(tx: &mut PgTx<'_>, event: &DomainEvent) -> StoreResult<u64> {
        // The engine makes both ids (a uuid of its own, an instance that exists).
        let (Some(event_id), Some(instance_id)) =
            (parse_id(&event.id), parse_id(&event.instance_id))
        else {
            return Err(StoreError::Corrupt(format!(
                "event '{}' of instance '{}': ids are not uuids",
                event.id, event.instance_id
            )));
        };
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO events (id, instance_id, event_type, payload, occurred_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(event_id)
        .bind(instance_id)
        .bind(event.stored_name())
        .bind(Json(&event.kind))
        .bind(event.occurred_at)
        .execute(tx.connection())
        .await?;

        let base = |sql: &'static str| {
            sqlx::query(sql)
                .bind(event_id)
                .bind(epoch_ms(now))
                .bind(now)
                .bind(instance_id)
                .bind(event.trigger().as_str())
        };
        // Each arm is the SQL form of `Audience::includes` (the tests hold the two together).
        // A watched id matches only as a JSON string equal to it, and a missing or null data
        // source filter means every data source.
        let done = match event.audience() {
            Audience::Nobody => return Ok(0),
            Audience::All => {
                base(insert_deliveries!(""))
                    .execute(tx.connection())
                    .await?
            }
            Audience::DataSource { data_source_id } => {
                base(insert_deliveries!(
                    " AND (s.inputs -> 'dataSourceId' IS NULL
                           OR s.inputs -> 'dataSourceId' = 'null'::jsonb
                           OR s.inputs -> 'dataSourceId' = to_jsonb($6::text))"
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
                base(insert_deliveries!(
                    " AND s.inputs -> $6::text = to_jsonb($7::text)
                      AND $8::float8 <= ",
                    threshold!(),
                    " AND ",
                    threshold!(),
                    " < $9::float8"
                ))
                .bind(target.input_key())
                .bind(target_id)
                .bind(previous)
                .bind(current)
                .execute(tx.connection())
                .await?
            }
        };
        let queued = done.rows_affected();
        if queued > 0 {
            // Wakes the dispatchers of every replica once the transaction commits (PostgreSQL
            // delivers notifications at commit, and folds identical ones of a transaction).
            sqlx::query("SELECT pg_notify('outbox', '')")
                .execute(tx.connection())
                .await?;
        }
        Ok(queued)
    }

    // ----- deliveries: the API side -----

    /// Deliveries of a subscription, newest first, optionally of one status.
    pub async fn list_deliveries(
        &self,
        subscription_id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let Some(subscription_id) = parse_id(subscription_id) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d
             WHERE d.subscription_id = $1 AND ($2::text IS NULL OR d.status = $2)
             ORDER BY d.created_at DESC, d.id DESC LIMIT $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subscription_id)
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
        let (Some(subscription_id), Some(id)) = (parse_id(subscription_id), parse_id(id)) else {
            return Err(StoreError::NotFound);
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = $1 AND d.subscription_id = $2"
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
        let Some(delivery_id) = parse_id(delivery_id) else {
            return Ok(Vec::new());
        };
        sqlx::query(
            "SELECT attempted_at, status_code, latency_ms, response_excerpt, error
             FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(delivery_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AttemptRecord {
                attempted_at: r.try_get("attempted_at")?,
                status_code: r.try_get("status_code")?,
                latency_ms: r.try_get("latency_ms")?,
                response_excerpt: r.try_get("response_excerpt")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
    }

    /// Queues a finished delivery again (a fresh retry cycle, due now). A pending delivery is
    /// left as it is; a dead subscription receives nothing.
    pub async fn requeue_delivery(&self, subscription_id: &str, id: &str) -> StoreResult<Requeue> {
        let (Some(subscription_id), Some(id)) = (parse_id(subscription_id), parse_id(id)) else {
            return Err(StoreError::NotFound);
        };
        // One guarded write; the reads afterwards only explain a refusal.
        let now = Utc::now();
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, claim_token = NULL, next_attempt_at = $1, updated_at = $2
             WHERE id = $3 AND subscription_id = $4 AND status <> 'pending'
               AND EXISTS (SELECT 1 FROM subscriptions WHERE id = $4 AND status = 'active')",
        )
        .bind(epoch_ms(now))
        .bind(now)
        .bind(id)
        .bind(subscription_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Requeue::Queued);
        }
        let (status, exists): (Option<String>, bool) = sqlx::query_as(
            "SELECT (SELECT status FROM subscriptions WHERE id = $2),
                    EXISTS (SELECT 1 FROM deliveries WHERE id = $1 AND subscription_id = $2)",
        )
        .bind(id)
        .bind(subscription_id)
        .fetch_one(&self.pool)
        .await?;
        match (status.as_deref(), exists) {
            (None, _) | (_, false) => Err(StoreError::NotFound),
            (Some("active"), true) => Ok(Requeue::AlreadyPending),
            (Some(_), true) => Ok(Requeue::SubscriptionDead),
        }
    }

    // ----- deliveries: the dispatcher side -----

    /// Every active subscription with pending deliveries: the earliest `next_attempt_at` (epoch
    /// ms) among them, and how many are due at `now_ms` (counted up to `cap`), earliest first.
    /// Two index lookups per subscription, however long its backlog.
    pub async fn due_by_subscription(&self, now_ms: i64, cap: usize) -> StoreResult<Vec<Due>> {
        let rows = sqlx::query(
            "SELECT s.id, due.at AS due, ready.n AS ready
             FROM subscriptions s
             CROSS JOIN LATERAL (SELECT MIN(d.next_attempt_at) AS at FROM deliveries d
                                 WHERE d.subscription_id = s.id AND d.status = 'pending') due
             CROSS JOIN LATERAL (SELECT count(*) AS n FROM (SELECT 1 FROM deliveries d
                                   WHERE d.subscription_id = s.id AND d.status = 'pending'
                                     AND d.next_attempt_at <= $1 LIMIT $2) r) ready
             WHERE s.status = 'active' AND due.at IS NOT NULL
             ORDER BY due.at, s.id",
        )
        .bind(now_ms)
        .bind(cap as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    subscription_id: r.try_get::<Uuid, _>("id")?.to_string(),
                    due_at: r.try_get("due")?,
                    ready: r.try_get::<i64, _>("ready")? as usize,
                })
            })
            .collect()
    }

    /// Claims due deliveries of several subscriptions, oldest first per subscription: `plan`
    /// says how many each may take (its free slots). Each claimed delivery gets
    /// `next_attempt_at = lease_until_ms`, so it is not due again until the lease runs out (or
    /// the attempt is recorded).
    ///
    /// One statement for the whole plan (it travels as two arrays, so the statement is the same
    /// whatever its size). Another replica's claim in flight holds its deliveries locked, and
    /// `SKIP LOCKED` passes over them; one that committed has moved them past `now_ms`, which
    /// the lock's re-check of the row sees.
    pub async fn claim_due_batch(
        &self,
        plan: &[(String, usize)],
        now_ms: i64,
        lease_until_ms: i64,
        cap: usize,
    ) -> StoreResult<Vec<Claimed>> {
        let (positions, subscriptions) = row_ids(plan.iter().map(|(s, _)| s.as_str()));
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        let limits: Vec<i64> = positions.iter().map(|&i| plan[i].1 as i64).collect();
        let token = Uuid::new_v4();
        let mut tx = self.begin().await?;
        // One claimer per subscription at a time (its row lock): its count of leased deliveries
        // then sees every claim committed before, so the cap holds across replicas. A
        // subscription another replica is claiming for (or recording for) right now is left to
        // it, so replicas reading the same due list spread over different subscriptions instead
        // of queueing behind each other.
        let locked: HashSet<Uuid> = sqlx::query_scalar(
            "SELECT id FROM subscriptions WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(&subscriptions)
        .fetch_all(tx.connection())
        .await?
        .into_iter()
        .collect();
        let (subscriptions, limits): (Vec<Uuid>, Vec<i64>) = subscriptions
            .into_iter()
            .zip(limits)
            .filter(|(s, _)| locked.contains(s))
            .unzip();
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $1, claim_token = $6
             WHERE id IN (
                SELECT c.id FROM UNNEST($2::uuid[], $3::bigint[]) AS p(subscription_id, take)
                CROSS JOIN LATERAL (
                    SELECT count(*) AS n FROM deliveries b
                    WHERE b.subscription_id = p.subscription_id AND b.status = 'pending'
                      AND b.claim_token IS NOT NULL AND b.next_attempt_at > $4
                ) leased
                CROSS JOIN LATERAL (
                    SELECT d.id FROM deliveries d
                    WHERE d.subscription_id = p.subscription_id AND d.status = 'pending'
                      AND d.next_attempt_at <= $4
                    ORDER BY d.next_attempt_at, d.created_at, d.id
                    LIMIT GREATEST(0, LEAST(p.take, $5 - leased.n))
                    FOR UPDATE SKIP LOCKED
                ) c
             )
             RETURNING id, subscription_id",
        )
        .bind(lease_until_ms)
        .bind(&subscriptions)
        .bind(&limits)
        .bind(now_ms)
        .bind(cap as i64)
        .bind(token)
        .fetch_all(tx.connection())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    delivery_id: r.try_get::<Uuid, _>("id")?.to_string(),
                    subscription_id: r.try_get::<Uuid, _>("subscription_id")?.to_string(),
                    claim_token: token.to_string(),
                })
            })
            .collect()
    }

    /// Deletes finished deliveries (with their attempts) last changed before `before`, then the
    /// events before `before` that no delivery refers to any more, in batches so no single
    /// transaction holds its locks for long. Pending deliveries are never deleted.
    /// Returns (deliveries, events) deleted.
    pub async fn prune_outbox(&self, before: DateTime<Utc>) -> StoreResult<(u64, u64)> {
        // One replica prunes at a time: the others find the lock taken and skip this round.
        // A session lock on a connection of its own, so it ends with that connection should
        // the process die.
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PRUNE_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok((0, 0));
        }
        let pruned = Self::prune_batches(&mut conn, before).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PRUNE_LOCK)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // The lock must not outlive this round on a pooled connection.
            conn.detach();
        }
        pruned
    }

    async fn prune_batches(
        conn: &mut sqlx::PgConnection,
        before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        const BATCH: i64 = 5_000;
        let mut deliveries = 0;
        loop {
            // Rows another transaction holds (a requeue, a replica pruning too) are passed
            // over, and the outer condition is checked again on the row as it is when locked.
            let done = sqlx::query(
                "DELETE FROM deliveries WHERE id IN (
                   SELECT id FROM deliveries WHERE status <> 'pending' AND updated_at < $1
                   LIMIT $2 FOR UPDATE SKIP LOCKED)
                 AND status <> 'pending' AND updated_at < $1",
            )
            .bind(before)
            .bind(BATCH)
            .execute(&mut *conn)
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
                   SELECT e.id FROM events e WHERE e.occurred_at < $1
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(BATCH)
            .execute(&mut *conn)
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

    /// [`delivery_context`](Self::delivery_context) for many deliveries in two queries, in the
    /// order given; the deliveries that are gone are left out.
    pub async fn delivery_contexts(&self, ids: &[String]) -> StoreResult<Vec<DeliveryContext>> {
        let (_, ids) = row_ids(ids.iter().map(String::as_str));
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The payload as text: a fan-out is one event for many deliveries, parsed once below.
        let rows = sqlx::query(
            "SELECT d.id, d.attempts, d.subscription_id, e.id AS event_id, e.instance_id,
                    e.payload::text AS payload, e.occurred_at
             FROM UNNEST($1::uuid[]) WITH ORDINALITY AS j(id, n)
             JOIN deliveries d ON d.id = j.id
             JOIN events e ON e.id = d.event_id
             ORDER BY j.n",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s
             WHERE s.id IN (SELECT d.subscription_id FROM deliveries d WHERE d.id = ANY($1))"
        );
        let subscriptions: HashMap<String, SubscriptionRecord> =
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| subscription_from_row(r).map(|s| (s.id.clone(), s)))
                .collect::<StoreResult<_>>()?;
        let mut events: HashMap<Uuid, EventKind> = HashMap::new();
        let mut contexts = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id: Uuid = row.try_get("event_id")?;
            let event = match events.get(&event_id) {
                Some(event) => event.clone(),
                None => {
                    let event: EventKind = serde_json::from_str(row.try_get::<&str, _>("payload")?)
                        .map_err(|e| StoreError::Corrupt(format!("event payload: {e}")))?;
                    events.insert(event_id, event.clone());
                    event
                }
            };
            let subscription_id = row.try_get::<Uuid, _>("subscription_id")?.to_string();
            let subscription = subscriptions.get(&subscription_id).cloned();
            contexts.push(DeliveryContext {
                delivery_id: row.try_get::<Uuid, _>("id")?.to_string(),
                subscription_id,
                attempts: row.try_get("attempts")?,
                event_id: event_id.to_string(),
                instance_id: row.try_get::<Uuid, _>("instance_id")?.to_string(),
                occurred_at: row.try_get("occurred_at")?,
                event,
                subscription,
            });
        }
        Ok(contexts)
    }

    /// Removes a delivery whose subscription no longer exists.
    pub async fn drop_orphan_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        let Some(delivery_id) = parse_id(delivery_id) else {
            return Ok(());
        };
        sqlx::query(
            "DELETE FROM deliveries d WHERE d.id = $1
               AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = d.subscription_id)",
        )
        .bind(delivery_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a pending delivery dead without an attempt (its subscription is dead).
    pub async fn dead_letter_unsent(&self, delivery_id: &str, reason: &str) -> StoreResult<()> {
        let Some(delivery_id) = parse_id(delivery_id) else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE deliveries SET status = 'dead', last_error = $1, updated_at = $2
             WHERE id = $3 AND status = 'pending'",
        )
        .bind(clip(reason, MAX_ERROR_CHARS))
        .bind(Utc::now())
        .bind(delivery_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records finished attempts and applies their decisions to the deliveries and their
    /// subscriptions, all in one transaction.
    ///
    /// The batch is applied with a handful of set-based statements (see
    /// [`apply_attempts_together`](Self::apply_attempts_together)). If that fails, the batch is
    /// recorded again attempt by attempt, each inside its own savepoint, so one bad record is
    /// undone alone and reported in its slot while the others are still committed: a bad
    /// record must not send a whole batch of delivered notifications out again.
    ///
    /// `Err` for the whole call means nothing was recorded. Per attempt, `Ok(false)` means the
    /// delivery no longer exists (its subscription was deleted meanwhile; nothing is recorded).
    pub async fn finish_attempts(
        &self,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        // Two attempts of one delivery (a lease that ran out mid-attempt) must apply one after
        // the other, which only the one-by-one path does.
        let distinct: HashSet<&str> = attempts.iter().map(|a| a.delivery_id.as_str()).collect();
        if distinct.len() == attempts.len() {
            let mut tx = self.begin().await?;
            match Self::apply_attempts_together(&mut tx, attempts).await {
                Ok(recorded) => {
                    tx.commit().await?;
                    return Ok(recorded.into_iter().map(Ok).collect());
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempts = attempts.len(), "recording attempts together failed; recording them one by one");
                }
            }
        }
        self.finish_attempts_one_by_one(attempts).await
    }

    /// [`finish_attempts`](Self::finish_attempts) attempt by attempt, each in a savepoint.
    async fn finish_attempts_one_by_one(
        &self,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        let mut tx = self.begin().await?;
        Self::lock_subscriptions(&mut tx, attempts.iter().map(|a| a.subscription_id.as_str()))
            .await?;
        let mut results = Vec::with_capacity(attempts.len());
        for finished in attempts {
            sqlx::query("SAVEPOINT attempt")
                .execute(tx.connection())
                .await?;
            match Self::apply_attempt(&mut tx, finished).await {
                Ok(recorded) => {
                    sqlx::query("RELEASE SAVEPOINT attempt")
                        .execute(tx.connection())
                        .await?;
                    results.push(Ok(recorded));
                }
                Err(e) => {
                    // If the connection is lost, the savepoint is gone too: then the batch
                    // fails as a whole, with this error.
                    if sqlx::query("ROLLBACK TO SAVEPOINT attempt")
                        .execute(tx.connection())
                        .await
                        .is_err()
                    {
                        return Err(e);
                    }
                    sqlx::query("RELEASE SAVEPOINT attempt")
                        .execute(tx.connection())
                        .await?;
                    results.push(Err(e));
                }
            }
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Locks the subscriptions a record will change, in id order, before any delivery: a 404/410
    /// changes all pending deliveries of its subscription, so two replicas recording attempts
    /// of one subscription would otherwise each hold a delivery the other waits for.
    async fn lock_subscriptions<'a>(
        tx: &mut PgTx<'_>,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> StoreResult<()> {
        let (_, mut ids) = row_ids(ids);
        ids.sort_unstable();
        ids.dedup();
        sqlx::query("SELECT 1 FROM subscriptions WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(tx.connection())
            .await?;
        Ok(())
    }

    /// The effect of [`apply_attempt`](Self::apply_attempt) for each attempt in turn (delivery
    /// ids distinct), in four statements whatever the batch size; the batch travels as arrays.
    /// Returns, per attempt, whether it was recorded.
    ///
    /// Equivalence with the one-by-one order: each delivery row changes once, under the same
    /// guard; a subscription's counters are folded in batch order (a delivery resets
    /// `consecutive_failures`, a failure adds one); and a 404/410 dead-letters the
    /// subscription's pending deliveries last, which leaves what the sequence would. One
    /// difference: a sibling attempt that failed for good keeps `failed` rather than `dead`.
    async fn apply_attempts_together(
        tx: &mut PgTx<'_>,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<bool>> {
        Self::lock_subscriptions(tx, attempts.iter().map(|a| a.subscription_id.as_str())).await?;
        let (positions, ids) = row_ids(attempts.iter().map(|a| a.delivery_id.as_str()));
        let batch: Vec<&FinishedAttempt> = positions.iter().map(|&i| &attempts[i]).collect();
        let at: Vec<DateTime<Utc>> = batch.iter().map(|a| a.attempt.attempted_at).collect();
        let code: Vec<Option<i64>> = batch.iter().map(|a| a.attempt.status_code).collect();
        let ms: Vec<i64> = batch.iter().map(|a| a.attempt.latency_ms).collect();
        let excerpt: Vec<Option<&str>> = batch
            .iter()
            .map(|a| a.attempt.response_excerpt.as_deref())
            .collect();
        let error: Vec<Option<String>> = batch
            .iter()
            .map(|a| a.attempt.error.as_deref().map(|e| clip(e, MAX_ERROR_CHARS)))
            .collect();
        let (status, next): (Vec<&str>, Vec<Option<i64>>) =
            batch.iter().map(|a| delivery_outcome(&a.decision)).unzip();
        let token: Vec<Option<Uuid>> = batch
            .iter()
            .map(|a| Uuid::parse_str(&a.claim_token).ok())
            .collect();

        // The deliveries: an attempt more, and (only a pending one, or a dead-lettered one this
        // attempt got through to) the decision; then the attempts of the deliveries updated, in
        // batch order. SET expressions all see the row as it was.
        let recorded: HashSet<Uuid> = sqlx::query_scalar(
            "WITH f AS (
                SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[],
                                     $5::text[], $6::text[], $7::text[], $8::bigint[], $9::uuid[])
                    WITH ORDINALITY AS f(id, at, code, ms, excerpt, error, status, next, token, n)
             ), u AS (
                UPDATE deliveries d SET
                    attempts = d.attempts + 1,
                    updated_at = f.at,
                    status = CASE WHEN (d.status = 'pending' AND d.claim_token IS NOT DISTINCT FROM f.token)
                                    OR (d.status = 'dead' AND f.status = 'delivered')
                             THEN f.status ELSE d.status END,
                    next_attempt_at = CASE WHEN (d.status = 'pending' AND d.claim_token IS NOT DISTINCT FROM f.token)
                                             OR (d.status = 'dead' AND f.status = 'delivered')
                                      THEN COALESCE(f.next, d.next_attempt_at)
                                      ELSE d.next_attempt_at END,
                    last_error = CASE WHEN (d.status = 'pending' AND d.claim_token IS NOT DISTINCT FROM f.token)
                                        OR (d.status = 'dead' AND f.status = 'delivered')
                                 THEN f.error ELSE d.last_error END,
                    claim_token = CASE WHEN d.claim_token IS NOT DISTINCT FROM f.token THEN NULL
                                  ELSE d.claim_token END
                FROM f WHERE d.id = f.id
                RETURNING d.id
             )
             INSERT INTO delivery_attempts
                (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error)
             SELECT f.id, f.at, f.code, f.ms, f.excerpt, f.error
             FROM f WHERE f.id IN (SELECT id FROM u)
             ORDER BY f.n
             RETURNING delivery_id",
        )
        .bind(&ids)
        .bind(&at)
        .bind(&code)
        .bind(&ms)
        .bind(&excerpt)
        .bind(&error)
        .bind(&status)
        .bind(&next)
        .bind(&token)
        .fetch_all(tx.connection())
        .await?
        .into_iter()
        .collect();
        let recorded: Vec<bool> = {
            let mut flags = vec![false; attempts.len()];
            for (&i, id) in positions.iter().zip(&ids) {
                flags[i] = recorded.contains(id);
            }
            flags
        };

        // The subscriptions: each one's attempts folded in batch order.
        let folded = SubscriptionFold::per_subscription(
            attempts
                .iter()
                .zip(&recorded)
                .filter(|(_, &r)| r)
                .map(|(a, _)| a),
        );
        let folded: Vec<(Uuid, SubscriptionFold)> = folded
            .into_iter()
            .filter_map(|(id, f)| parse_id(id).map(|id| (id, f)))
            .collect();
        if !folded.is_empty() {
            let ids: Vec<Uuid> = folded.iter().map(|(id, _)| *id).collect();
            let at: Vec<DateTime<Utc>> = folded.iter().map(|(_, f)| f.at).collect();
            let reset: Vec<bool> = folded.iter().map(|(_, f)| f.reset).collect();
            let failures: Vec<i64> = folded.iter().map(|(_, f)| f.failures).collect();
            let error: Vec<Option<&str>> = folded.iter().map(|(_, f)| f.error.as_deref()).collect();
            let gone: Vec<bool> = folded.iter().map(|(_, f)| f.gone).collect();
            sqlx::query(
                "UPDATE subscriptions s SET
                    last_delivery_at = f.at,
                    consecutive_failures = CASE WHEN f.reset THEN f.failures
                                           ELSE s.consecutive_failures + f.failures END,
                    last_error = f.error,
                    status = CASE WHEN f.gone THEN 'dead' ELSE s.status END
                 FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bool[], $4::bigint[], $5::text[],
                             $6::bool[]) AS f(id, at, reset, failures, error, gone)
                 WHERE s.id = f.id",
            )
            .bind(&ids)
            .bind(&at)
            .bind(&reset)
            .bind(&failures)
            .bind(&error)
            .bind(&gone)
            .execute(tx.connection())
            .await?;

            // A 404/410: the subscription's other pending deliveries are dead-lettered.
            let (gone_ids, gone_at): (Vec<Uuid>, Vec<DateTime<Utc>>) = folded
                .iter()
                .filter(|(_, f)| f.gone)
                .map(|(id, f)| (*id, f.gone_at))
                .unzip();
            if !gone_ids.is_empty() {
                sqlx::query(
                    "UPDATE deliveries d SET status = 'dead', updated_at = g.at, last_error = $3
                     FROM UNNEST($1::uuid[], $2::timestamptz[]) AS g(id, at)
                     WHERE d.subscription_id = g.id AND d.status = 'pending'",
                )
                .bind(&gone_ids)
                .bind(&gone_at)
                .bind(SUBSCRIPTION_GONE_ERROR)
                .execute(tx.connection())
                .await?;
            }
        }
        Ok(recorded)
    }

    /// The statements of one attempt's record, inside the caller's transaction.
    async fn apply_attempt(tx: &mut PgTx<'_>, finished: &FinishedAttempt) -> StoreResult<bool> {
        let FinishedAttempt {
            delivery_id,
            subscription_id,
            attempt,
            decision,
            claim_token,
        } = finished;
        let Some(delivery_id) = parse_id(delivery_id) else {
            return Ok(false);
        };
        let subscription_id = parse_id(subscription_id);
        let now = attempt.attempted_at;
        let error = attempt.error.as_deref().map(|e| clip(e, MAX_ERROR_CHARS));
        // The delivery: an attempt more, and only a pending one changes state (a concurrent 410
        // may have dead-lettered it meanwhile; if this attempt got through anyway, it counts as
        // delivered). SET expressions all see the row as it was.
        let (status, next) = delivery_outcome(decision);
        let done = sqlx::query(
            "UPDATE deliveries SET
                attempts = attempts + 1,
                updated_at = $1,
                status = CASE WHEN (status = 'pending' AND claim_token IS NOT DISTINCT FROM $6)
                                OR (status = 'dead' AND $2 = 'delivered')
                         THEN $2 ELSE status END,
                next_attempt_at = CASE WHEN (status = 'pending' AND claim_token IS NOT DISTINCT FROM $6)
                                         OR (status = 'dead' AND $2 = 'delivered')
                                  THEN COALESCE($3, next_attempt_at) ELSE next_attempt_at END,
                last_error = CASE WHEN (status = 'pending' AND claim_token IS NOT DISTINCT FROM $6)
                                    OR (status = 'dead' AND $2 = 'delivered')
                             THEN $4 ELSE last_error END,
                claim_token = CASE WHEN claim_token IS NOT DISTINCT FROM $6 THEN NULL
                              ELSE claim_token END
             WHERE id = $5",
        )
        .bind(now)
        .bind(status)
        .bind(next)
        .bind(&error)
        .bind(delivery_id)
        .bind(Uuid::parse_str(claim_token).ok())
        .execute(tx.connection())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO delivery_attempts
                (delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(delivery_id)
        .bind(now)
        .bind(attempt.status_code)
        .bind(attempt.latency_ms)
        .bind(&attempt.response_excerpt)
        .bind(&error)
        .execute(tx.connection())
        .await?;

        // The subscription's delivery state.
        let Some(subscription_id) = subscription_id else {
            return Ok(true);
        };
        if *decision == Decision::Delivered {
            sqlx::query(
                "UPDATE subscriptions SET last_delivery_at = $1, consecutive_failures = 0, last_error = NULL
                 WHERE id = $2",
            )
            .bind(now)
            .bind(subscription_id)
            .execute(tx.connection())
            .await?;
        } else {
            sqlx::query(
                "UPDATE subscriptions SET last_delivery_at = $1, consecutive_failures = consecutive_failures + 1,
                        last_error = $2, status = CASE WHEN $3 THEN 'dead' ELSE status END
                 WHERE id = $4",
            )
            .bind(now)
            .bind(&error)
            .bind(*decision == Decision::SubscriptionGone)
            .bind(subscription_id)
            .execute(tx.connection())
            .await?;
        }
        if *decision == Decision::SubscriptionGone {
            sqlx::query(
                "UPDATE deliveries SET status = 'dead', updated_at = $1, last_error = $2
                 WHERE subscription_id = $3 AND status = 'pending' AND id <> $4",
            )
            .bind(now)
            .bind(SUBSCRIPTION_GONE_ERROR)
            .bind(subscription_id)
            .bind(delivery_id)
            .execute(tx.connection())
            .await?;
        }
        Ok(true)
    }
}

/// On the server named by `CONNECTOR_TEST_POSTGRES_URL` (each test in a fresh database);
/// without it these tests pass without running.
#[cfg(test)]
mod tests {
    use super::*;

    /// The claim the seeded deliveries are under, and that the attempts of the tests carry.
    const TEST_CLAIM: &str = "00000000-0000-4000-8000-00000000c1a1";
    use sqlx::Connection;

    const SERVER_ENV: &str = "CONNECTOR_TEST_POSTGRES_URL";
    const INSTANCE: Uuid = Uuid::from_u128(1);

    fn sub(s: usize) -> Uuid {
        Uuid::from_u128(0x1000_0000 + s as u128)
    }

    fn delivery(s: usize, n: usize) -> Uuid {
        Uuid::from_u128(0xdead_0000_0000 + (s as u128) * 1000 + n as u128)
    }

    /// A fresh database with one instance and `subscriptions` active subscriptions, each with
    /// `per_subscription` pending deliveries (delivery `n` due at `n` ms, older first).
    async fn outbox(subscriptions: usize, per_subscription: usize) -> Option<PgDb> {
        let server = std::env::var(SERVER_ENV).ok().filter(|u| !u.is_empty())?;
        let name = format!("unit_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        let db = PgDb::open(url.as_str()).await.unwrap();
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        sqlx::query(
            "INSERT INTO instances (id, tenant, name, created_at) VALUES ($1, 't', 'Hooks', $2)",
        )
        .bind(INSTANCE)
        .bind(now)
        .execute(&db.pool)
        .await
        .unwrap();
        for s in 0..subscriptions {
            sqlx::query(
                "INSERT INTO subscriptions (id, instance_id, trigger, notification_url, inputs, inputs_key, status, created_at)
                 VALUES ($1, $2, 'onUnificationCompleted', $3, '{}', '', 'active', $4)",
            )
            .bind(sub(s))
            .bind(INSTANCE)
            .bind(format!("http://127.0.0.1:9/{s}"))
            .bind(now)
            .execute(&db.pool)
            .await
            .unwrap();
            for n in 0..per_subscription {
                sqlx::query(
                    "INSERT INTO deliveries (id, event_id, subscription_id, instance_id, status, attempts, next_attempt_at, created_at, updated_at, claim_token)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $6, $7)",
                )
                .bind(delivery(s, n))
                .bind(Uuid::from_u128(n as u128 + 7))
                .bind(sub(s))
                .bind(INSTANCE)
                .bind(n as i64)
                .bind(now)
                .bind(Uuid::parse_str(TEST_CLAIM).unwrap())
                .execute(&db.pool)
                .await
                .unwrap();
            }
        }
        Some(db)
    }

    #[tokio::test]
    async fn claims_take_the_oldest_due_deliveries_per_share_and_never_the_same_one_twice() {
        let Some(db) = outbox(150, 3).await else {
            return;
        };
        let mut plan: Vec<(String, usize)> = (0..150).map(|s| (sub(s).to_string(), 2)).collect();
        plan[0].1 = 5;
        plan.push(("not-a-uuid".into(), 3));
        let lease_until = 1_000_000;
        let claimed = db
            .claim_due_batch(&plan, 10, lease_until, 100)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 3 + 149 * 2);
        let ids: HashSet<&str> = claimed.iter().map(|c| c.delivery_id.as_str()).collect();
        assert_eq!(ids.len(), claimed.len());
        let (d70, d71, d72) = (delivery(7, 0), delivery(7, 1), delivery(7, 2));
        assert!(ids.contains(d70.to_string().as_str()) && ids.contains(d71.to_string().as_str()));
        assert!(!ids.contains(d72.to_string().as_str()));
        assert_eq!(
            db.claim_due_batch(&plan, 10, lease_until, 100)
                .await
                .unwrap()
                .len(),
            149
        );
        assert!(db
            .claim_due_batch(&plan, 10, lease_until, 100)
            .await
            .unwrap()
            .is_empty());

        // Concurrent claims over the same plan (leases expired) share the deliveries out.
        let (a, b) = tokio::join!(
            db.claim_due_batch(&plan, lease_until, 2 * lease_until, 100),
            db.claim_due_batch(&plan, lease_until, 2 * lease_until, 100)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let a_ids: HashSet<&str> = a.iter().map(|c| c.delivery_id.as_str()).collect();
        assert!(b.iter().all(|c| !a_ids.contains(c.delivery_id.as_str())));
        assert!(
            a.len() + b.len() >= 3 + 149 * 2,
            "{} + {}",
            a.len(),
            b.len()
        );

        // Not yet due.
        let Some(db) = outbox(1, 3).await else { return };
        let claimed = db
            .claim_due_batch(&[(sub(0).to_string(), 4)], 1, lease_until, 100)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        let due = db.due_by_subscription(1, 10).await.unwrap();
        assert_eq!(
            due,
            vec![Due {
                subscription_id: sub(0).to_string(),
                due_at: 2,
                ready: 0
            }]
        );
    }

    /// Everything the store holds about deliveries, attempts and subscriptions.
    async fn outbox_state(db: &PgDb) -> Vec<String> {
        let mut state = Vec::new();
        for sql in [
            "SELECT json_build_array(id, status, attempts, next_attempt_at, updated_at, last_error)::text FROM deliveries ORDER BY id",
            "SELECT json_build_array(delivery_id, attempted_at, status_code, latency_ms, response_excerpt, error)::text FROM delivery_attempts ORDER BY id",
            "SELECT json_build_array(id, status, last_delivery_at, consecutive_failures, last_error)::text FROM subscriptions ORDER BY id",
        ] {
            let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&db.pool).await.unwrap();
            state.extend(rows);
        }
        state
    }

    #[tokio::test]
    async fn recording_a_batch_together_equals_recording_it_attempt_by_attempt() {
        let t0: DateTime<Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
        let mut n = 0;
        let mut attempt = |delivery: Uuid, s: usize, decision: Decision| {
            n += 1;
            let failed = decision != Decision::Delivered;
            FinishedAttempt {
                delivery_id: delivery.to_string(),
                claim_token: TEST_CLAIM.into(),
                subscription_id: sub(s).to_string(),
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
            attempt(delivery(0, 0), 0, Decision::Delivered),
            attempt(delivery(0, 1), 0, Decision::RetryAt(5_000)),
            attempt(delivery(0, 2), 0, Decision::Delivered), // dead-lettered before
            attempt(delivery(1, 0), 1, Decision::RetryAt(6_000)),
            attempt(delivery(1, 1), 1, Decision::Delivered),
            attempt(delivery(2, 0), 2, Decision::RetryAt(7_000)),
            attempt(delivery(2, 1), 2, Decision::SubscriptionGone),
            attempt(delivery(3, 0), 3, Decision::DeadLetter),
            attempt(delivery(3, 1), 3, Decision::Failed),
            attempt(delivery(9, 9), 3, Decision::Delivered), // gone
        ];
        let mut states = Vec::new();
        for together in [true, false] {
            let Some(db) = outbox(5, 3).await else { return };
            sqlx::query("UPDATE deliveries SET status = 'dead' WHERE id = $1")
                .bind(delivery(0, 2))
                .execute(&db.pool)
                .await
                .unwrap();
            sqlx::query(
                "UPDATE subscriptions SET consecutive_failures = 5, last_error = 'x' WHERE id = $1",
            )
            .bind(sub(3))
            .execute(&db.pool)
            .await
            .unwrap();
            let recorded: Vec<bool> = if together {
                let mut tx = db.begin().await.unwrap();
                let recorded = PgDb::apply_attempts_together(&mut tx, &batch)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                recorded
            } else {
                let results = db.finish_attempts_one_by_one(&batch).await.unwrap();
                results.into_iter().map(Result::unwrap).collect()
            };
            assert_eq!(
                recorded,
                [true, true, true, true, true, true, true, true, true, false]
            );
            states.push(outbox_state(&db).await);
        }
        assert_eq!(states[0], states[1]);
        let state = states.remove(0).join("\n");
        for expected in [
            format!(r#"["{}", "delivered", 1"#, delivery(0, 2)),
            format!(r#"["{}", "dead", 1"#, delivery(2, 0)),
            format!(r#"["{}", "dead", 0"#, delivery(2, 2)),
            format!(r#"["{}", "pending", 0"#, delivery(4, 0)),
            format!(r#"["{}", "active""#, sub(0)),
            format!(r#"["{}", "dead""#, sub(2)),
        ] {
            assert!(state.contains(&expected), "{expected} not in\n{state}");
        }
        assert!(
            state.contains(", 7, \"error 9\"]"),
            "sub-3 counts on from 5:\n{state}"
        );
    }

    /// One record that fails is undone alone, and the rest of its batch is committed.
    #[tokio::test]
    async fn a_failing_record_does_not_take_its_batch_down_and_leaves_its_delivery_pending() {
        let Some(db) = outbox(3, 1).await else { return };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.delivery_id = '{}' THEN RAISE EXCEPTION 'poisoned record'; END IF;
             RETURN NEW; END $$",
            delivery(1, 0)
        )))
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON delivery_attempts FOR EACH ROW EXECUTE FUNCTION poison()",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let batch: Vec<FinishedAttempt> = (0..3)
            .map(|s| FinishedAttempt {
                delivery_id: delivery(s, 0).to_string(),
                claim_token: TEST_CLAIM.into(),
                subscription_id: sub(s).to_string(),
                attempt: AttemptRecord {
                    attempted_at: Utc::now(),
                    status_code: Some(200),
                    latency_ms: 3,
                    response_excerpt: Some("ok".into()),
                    error: None,
                },
                decision: Decision::Delivered,
            })
            .collect();
        let results = db.finish_attempts(&batch).await.unwrap();
        assert!(matches!(results[0], Ok(true)));
        assert!(
            matches!(&results[1], Err(e) if e.to_string().contains("poisoned record")),
            "{:?}",
            results[1]
        );
        assert!(matches!(results[2], Ok(true)));
        let statuses: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, attempts FROM deliveries ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            statuses,
            [
                ("delivered".into(), 1),
                ("pending".into(), 0),
                ("delivered".into(), 1)
            ]
        );
    }

    /// Ids from outside that are not uuids name nothing: never a database error.
    #[tokio::test]
    async fn ids_that_are_not_uuids_are_missing_rows() {
        let Some(db) = outbox(1, 1).await else { return };
        let s = sub(0).to_string();
        let d = delivery(0, 0).to_string();
        let upper = d.to_uppercase();
        for bad in [
            "nope",
            "",
            upper.as_str(),
            "00000000000000000000000000000000",
        ] {
            let got = db.get_delivery(&s, bad).await;
            assert!(matches!(got, Err(StoreError::NotFound)), "{bad}: {got:?}");
            assert!(matches!(
                db.get_delivery(bad, &d).await,
                Err(StoreError::NotFound)
            ));
            assert!(db.list_deliveries(bad, None, 10).await.unwrap().is_empty());
            assert!(db.recent_attempts(bad, 10).await.unwrap().is_empty());
            assert!(matches!(
                db.requeue_delivery(&s, bad).await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(
                db.delivery_context(bad).await,
                Err(StoreError::NotFound)
            ));
            db.drop_orphan_delivery(bad).await.unwrap();
            db.dead_letter_unsent(bad, "x").await.unwrap();
            let instance = INSTANCE.to_string();
            assert!(matches!(
                db.get_subscription("t", &instance, bad).await,
                Err(StoreError::NotFound)
            ));
            assert!(!db.delete_subscription("t", &instance, bad).await.unwrap());
            assert!(db.list_subscriptions("t", bad).await.unwrap().is_empty());
            assert!(!db.data_source_exists("t", &instance, bad).await.unwrap());
            assert!(!db.segment_exists("t", bad, &s).await.unwrap());
            assert!(!db.measure_exists("t", &instance, bad).await.unwrap());
        }
        assert_eq!(db.get_delivery(&s, &d).await.unwrap().id, d);
        assert_eq!(
            db.requeue_delivery(&s, &d).await.unwrap(),
            Requeue::AlreadyPending
        );
        assert_eq!(
            db.list_deliveries(&s, Some("pending"), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(db
            .list_deliveries(&s, Some("dead"), 10)
            .await
            .unwrap()
            .is_empty());
        assert!(db
            .delete_subscription("t", &INSTANCE.to_string(), &s)
            .await
            .unwrap());
        assert!(db.list_deliveries(&s, None, 10).await.unwrap().is_empty());
    }

    /// Retention deletes finished deliveries with their attempts, never pending ones, then
    /// the events no delivery refers to.
    #[tokio::test]
    async fn pruning_keeps_pending_deliveries_and_their_events() {
        let Some(db) = outbox(2, 2).await else { return };
        let finished = FinishedAttempt {
            delivery_id: delivery(0, 0).to_string(),
            claim_token: TEST_CLAIM.into(),
            subscription_id: sub(0).to_string(),
            attempt: AttemptRecord {
                attempted_at: Utc::now() - chrono::Duration::hours(1),
                status_code: Some(200),
                latency_ms: 1,
                response_excerpt: None,
                error: None,
            },
            decision: Decision::Delivered,
        };
        assert!(matches!(
            db.finish_attempts(&[finished]).await.unwrap()[..],
            [Ok(true)]
        ));
        sqlx::query("INSERT INTO events (id, instance_id, event_type, payload, occurred_at)
                     SELECT DISTINCT event_id, $1, 'x', '{}'::jsonb, '2026-01-01T00:00:00Z'::timestamptz FROM deliveries")
            .bind(INSTANCE)
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(
            db.prune_outbox(Utc::now() - chrono::Duration::hours(2))
                .await
                .unwrap(),
            (0, 0)
        );
        // Event 7 still has the pending delivery 1-0.
        assert_eq!(db.prune_outbox(Utc::now()).await.unwrap(), (1, 0));
        let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(attempts, 0);
        sqlx::query("UPDATE deliveries SET status = 'dead', updated_at = now() - interval '1 minute' WHERE event_id = $1")
            .bind(Uuid::from_u128(7))
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(db.prune_outbox(Utc::now()).await.unwrap(), (1, 1));
    }
}
