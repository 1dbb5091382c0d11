//! The transactional outbox: an event and its deliveries are written in the transaction of the
//! state change that caused them ([`Store::record_event`]); the dispatcher claims due deliveries
//! with a lease and records attempts and their outcome; finished rows are pruned.
//!
//! Delivery states: `pending` (queued or being attempted), `delivered`, `failed` (a permanent
//! failure of that message: a 4xx other than 404/410, a refused destination, or a 404/410 that
//! killed the subscription) and `dead` (dead-lettered: retries exhausted, or never sent because
//! its subscription died). `failed` and `dead` deliveries can be queued again (`requeue`).
//!
//! Crash safety comes from the lease: claiming a delivery does not change its state, it only
//! pushes `next_attempt_at` past the attempt's deadline. If the process dies mid-attempt, the
//! delivery is simply due again once the lease runs out; nothing needs repairing at start-up.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use crate::store::subscriptions::SubscriptionRecord;
use crate::triggers::DomainEvent;
use crate::triggers::EventKind;
use chrono::{DateTime, Utc};

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
    pub subscription_id: String,
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
    /// Names this claim; the attempt's record must carry it ([`FinishedAttempt::claim_token`]).
    pub claim_token: String,
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

/// A subscription with pending deliveries ([`Store::due_by_subscription`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub subscription_id: String,
    /// The earliest `next_attempt_at` of its pending deliveries (epoch ms).
    pub due_at: i64,
    /// How many were due when the list was read (at most the `cap` asked for).
    pub ready: usize,
}

/// An attempt to record ([`Store::finish_attempts`]): what happened, and what it decided.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub delivery_id: String,
    pub subscription_id: String,
    /// The claim the attempt was made under. Only while the delivery still carries it does the
    /// attempt decide the delivery's state: a process whose lease ran out, and whose delivery
    /// another claim took meanwhile, records its attempt but cannot overwrite the newer claim.
    pub claim_token: String,
    pub attempt: AttemptRecord,
    pub decision: Decision,
}

/// Result of [`Store::requeue_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    Queued,
    AlreadyPending,
    SubscriptionDead,
}

/// Milliseconds since the epoch: the outbox schedules by integer time.
pub fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl Store {
    /// Records the event and queues one delivery per active subscription of its trigger in its
    /// instance that is in the event's [`Audience`], inside `tx`. Returns the deliveries queued.
    pub async fn record_event(tx: &mut Tx<'_>, event: &DomainEvent) -> StoreResult<u64> {
        match tx {
            Tx::Sqlite(tx) => SqliteDb::record_event(tx, event).await,
            Tx::Postgres(tx) => PgDb::record_event(tx, event).await,
        }
    }

    /// Deliveries of a subscription, newest first, optionally of one status.
    pub async fn list_deliveries(
        &self,
        subscription_id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_deliveries(subscription_id, status, limit).await,
            Db::Postgres(db) => db.list_deliveries(subscription_id, status, limit).await,
        }
    }

    pub async fn get_delivery(
        &self,
        subscription_id: &str,
        id: &str,
    ) -> StoreResult<DeliveryRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_delivery(subscription_id, id).await,
            Db::Postgres(db) => db.get_delivery(subscription_id, id).await,
        }
    }

    /// The most recent attempts of a delivery, newest first.
    pub async fn recent_attempts(
        &self,
        delivery_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.recent_attempts(delivery_id, limit).await,
            Db::Postgres(db) => db.recent_attempts(delivery_id, limit).await,
        }
    }

    /// Queues a finished delivery again (a fresh retry cycle, due now). A pending delivery is
    /// left as it is; a dead subscription receives nothing.
    pub async fn requeue_delivery(&self, subscription_id: &str, id: &str) -> StoreResult<Requeue> {
        match &self.db {
            Db::Sqlite(db) => db.requeue_delivery(subscription_id, id).await,
            Db::Postgres(db) => db.requeue_delivery(subscription_id, id).await,
        }
    }

    /// Every active subscription with pending deliveries: the earliest `next_attempt_at` (epoch
    /// ms) among them, and how many are due at `now_ms` (counted up to `cap`), earliest first.
    /// Two index lookups per subscription, however long its backlog.
    ///
    /// The count lets the dispatcher give a subscription only the slots it can use: planning
    /// its full share for a subscription with a single due delivery left most slots idle in a
    /// fan-out (one event for each of many subscriptions).
    pub async fn due_by_subscription(&self, now_ms: i64, cap: usize) -> StoreResult<Vec<Due>> {
        match &self.db {
            Db::Sqlite(db) => db.due_by_subscription(now_ms, cap).await,
            Db::Postgres(db) => db.due_by_subscription(now_ms, cap).await,
        }
    }

    /// Claims due deliveries of several subscriptions, oldest first per subscription: `plan`
    /// says how many each may take (its free slots). Each claimed delivery gets
    /// `next_attempt_at = lease_until_ms`, so it is not due again until the lease runs out (or
    /// the attempt is recorded).
    ///
    /// One statement per 100 subscriptions selects and leases atomically (no read, then guarded
    /// writes in a transaction), so a claim is one round trip and one commit however many
    /// subscriptions it serves: the dispatcher refills its slots only after a claim, and a claim
    /// per subscription capped a fan-out at about a thousand deliveries a second.
    ///
    /// `cap` bounds the deliveries of one subscription under an unexpired lease at once, across
    /// every process claiming from this database: a subscription's share is `plan`'s number or
    /// what the cap leaves, whichever is less. Each claim gets a fresh claim token.
    pub async fn claim_due_batch(
        &self,
        plan: &[(String, usize)],
        now_ms: i64,
        lease_until_ms: i64,
        cap: usize,
    ) -> StoreResult<Vec<Claimed>> {
        match &self.db {
            Db::Sqlite(db) => db.claim_due_batch(plan, now_ms, lease_until_ms, cap).await,
            Db::Postgres(db) => db.claim_due_batch(plan, now_ms, lease_until_ms, cap).await,
        }
    }

    /// Deletes finished deliveries (with their attempts) last changed before `before`, then the
    /// events before `before` that no delivery refers to any more, in batches so no single
    /// transaction holds the write lock for long. Pending deliveries are never deleted.
    /// Returns (deliveries, events) deleted.
    pub async fn prune_outbox(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<(u64, u64)> {
        match &self.db {
            Db::Sqlite(db) => db.prune_outbox(before).await,
            Db::Postgres(db) => db.prune_outbox(before).await,
        }
    }

    /// The delivery with its event and subscription. `NotFound` when the delivery is gone.
    pub async fn delivery_context(&self, delivery_id: &str) -> StoreResult<DeliveryContext> {
        match &self.db {
            Db::Sqlite(db) => db.delivery_context(delivery_id).await,
            Db::Postgres(db) => db.delivery_context(delivery_id).await,
        }
    }

    /// [`delivery_context`](Self::delivery_context) for many deliveries in two queries, in the
    /// order given; the deliveries that are gone are left out. The dispatcher reads what a whole
    /// claim needs at once: two reads per attempt were as many round trips to a connection's
    /// thread, each a fresh read transaction.
    pub async fn delivery_contexts(&self, ids: &[String]) -> StoreResult<Vec<DeliveryContext>> {
        match &self.db {
            Db::Sqlite(db) => db.delivery_contexts(ids).await,
            Db::Postgres(db) => db.delivery_contexts(ids).await,
        }
    }

    /// Removes a delivery whose subscription no longer exists.
    pub async fn drop_orphan_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.drop_orphan_delivery(delivery_id).await,
            Db::Postgres(db) => db.drop_orphan_delivery(delivery_id).await,
        }
    }

    /// Marks a pending delivery dead without an attempt (its subscription is dead).
    pub async fn dead_letter_unsent(&self, delivery_id: &str, reason: &str) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.dead_letter_unsent(delivery_id, reason).await,
            Db::Postgres(db) => db.dead_letter_unsent(delivery_id, reason).await,
        }
    }

    /// Records finished attempts and applies their decisions to the deliveries and their
    /// subscriptions, all in one transaction (group commit: one commit, and one WAL write, for
    /// the batch instead of one per attempt).
    ///
    /// The batch is applied with a handful of set-based statements (see
    /// [`apply_attempts_together`](Self::apply_attempts_together)): a statement is a round trip
    /// to the connection's thread, and seven per attempt made recording the bottleneck of a
    /// fan-out. If that fails, the batch is recorded again attempt by attempt, each inside its
    /// own savepoint, so one bad record is undone alone and reported in its slot while the
    /// others are still committed: a bad record must not send a whole batch of delivered
    /// notifications out again.
    ///
    /// `Err` for the whole call means nothing was recorded. Per attempt, `Ok(false)` means the
    /// delivery no longer exists (its subscription was deleted meanwhile; nothing is recorded).
    pub async fn finish_attempts(
        &self,
        attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        match &self.db {
            Db::Sqlite(db) => db.finish_attempts(attempts).await,
            Db::Postgres(db) => db.finish_attempts(attempts).await,
        }
    }
}

// ----- backend-neutral parts of recording attempts -----

/// A delivery's status after an attempt with this decision, and its next attempt (epoch ms).
pub(in crate::store) fn delivery_outcome(decision: &Decision) -> (&'static str, Option<i64>) {
    match decision {
        Decision::Delivered => ("delivered", None),
        Decision::RetryAt(at) => ("pending", Some(*at)),
        Decision::DeadLetter => ("dead", None),
        Decision::Failed | Decision::SubscriptionGone => ("failed", None),
    }
}

/// The text a delivery dead-lettered by its subscription's 404/410 keeps as `last_error`.
pub(in crate::store) const SUBSCRIPTION_GONE_ERROR: &str =
    "not sent: the subscription is dead (its callback answered that the flow is gone)";

/// One subscription's attempts of a batch, folded in order into what recording them one by
/// one would have left after the last of them.
#[derive(Default)]
pub(in crate::store) struct SubscriptionFold {
    /// The last attempt's time (`last_delivery_at`).
    pub at: DateTime<Utc>,
    /// A delivery came through: `consecutive_failures` restarts from `failures`.
    pub reset: bool,
    /// Failures since the last delivery of the batch (or all of them, without one).
    pub failures: i64,
    /// The last attempt's error (none after a delivery).
    pub error: Option<String>,
    /// A 404/410: the subscription is dead; when (the attempt's time).
    pub gone: bool,
    pub gone_at: DateTime<Utc>,
}

impl SubscriptionFold {
    fn add(&mut self, a: &FinishedAttempt) {
        self.at = a.attempt.attempted_at;
        if a.decision == Decision::Delivered {
            self.reset = true;
            self.failures = 0;
            self.error = None;
        } else {
            self.failures += 1;
            self.error = a
                .attempt
                .error
                .as_deref()
                .map(|e| super::clip(e, super::MAX_ERROR_CHARS));
            if a.decision == Decision::SubscriptionGone {
                self.gone = true;
                self.gone_at = self.at;
            }
        }
    }

    /// The recorded attempts of a batch folded per subscription, subscriptions in order of
    /// their first attempt.
    pub(in crate::store) fn per_subscription<'a>(
        attempts: impl IntoIterator<Item = &'a FinishedAttempt>,
    ) -> Vec<(&'a str, SubscriptionFold)> {
        let mut folded: Vec<(&str, SubscriptionFold)> = Vec::new();
        for a in attempts {
            let i = match folded.iter().position(|(s, _)| *s == a.subscription_id) {
                Some(i) => i,
                None => {
                    folded.push((&a.subscription_id, SubscriptionFold::default()));
                    folded.len() - 1
                }
            };
            folded[i].1.add(a);
        }
        folded
    }
}

/// Store rules checked on both backends, claims and unstorable text (PostgreSQL when
/// `CONNECTOR_TEST_POSTGRES_URL` names a server: a fresh database there).
#[cfg(test)]
mod both_backends {
    use chrono::Utc;

    use super::*;
    use crate::store::{DatabaseUrl, InstanceRecord};
    use crate::triggers::{EventKind, Trigger};

    async fn stores() -> Vec<(tempfile::TempDir, Store)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open(dir.path()).await.unwrap();
        let mut stores = vec![(dir, sqlite)];
        if let Some(server) = std::env::var("CONNECTOR_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            use sqlx::Connection;
            let name = format!("unit_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let mut url = url::Url::parse(&server).unwrap();
            url.set_path(&name);
            let store = Store::connect(&DatabaseUrl::Postgres(url.to_string()))
                .await
                .unwrap();
            stores.push((tempfile::tempdir().unwrap(), store));
        }
        stores
    }

    /// The outbox's query queues a delivery for exactly the subscriptions that the event's
    /// [`Audience`] includes: the SQL and `Audience::includes` state one rule.
    #[tokio::test]
    async fn the_outbox_queues_exactly_the_audience_of_an_event() {
        use crate::triggers::{DomainEvent, SubscriptionInputs};
        use serde_json::json;
        for (_dir, store) in stores().await {
            let instance = uuid::Uuid::new_v4().to_string();
            store
                .insert_instance(&InstanceRecord {
                    id: instance.clone(),
                    tenant: "t".into(),
                    name: "audience".into(),
                    refresh_schedule: None,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
            let subscriptions: Vec<(Trigger, serde_json::Value)> = vec![
                (Trigger::OnDataSourceRefreshFailed, json!({})),
                (
                    Trigger::OnDataSourceRefreshFailed,
                    json!({"dataSourceId": "ds-1"}),
                ),
                (
                    Trigger::OnDataSourceRefreshFailed,
                    json!({"dataSourceId": "ds-2"}),
                ),
                (
                    Trigger::OnDataSourceRefreshFailed,
                    json!({"dataSourceId": null}),
                ),
                (Trigger::OnDataSourceRefreshSucceeded, json!({})),
                (
                    Trigger::OnSegmentThresholdCrossed,
                    json!({"segmentId": "seg-1", "threshold": 10}),
                ),
                (
                    Trigger::OnSegmentThresholdCrossed,
                    json!({"segmentId": "seg-1", "threshold": 12}),
                ),
                (
                    Trigger::OnSegmentThresholdCrossed,
                    json!({"segmentId": "seg-1", "threshold": 0}),
                ),
                (
                    Trigger::OnSegmentThresholdCrossed,
                    json!({"segmentId": "seg-2", "threshold": 10}),
                ),
                (
                    Trigger::OnMeasureThresholdCrossed,
                    json!({"measureId": "m-1", "threshold": 100.0}),
                ),
                (
                    Trigger::OnMeasureThresholdCrossed,
                    json!({"measureId": "m-1", "threshold": 99.5}),
                ),
                (
                    Trigger::OnMeasureThresholdCrossed,
                    json!({"measureId": "m-1", "threshold": -1.0}),
                ),
                (Trigger::OnFullRefreshCompleted, json!({})),
                (Trigger::OnUnificationCompleted, json!({})),
            ];
            let mut ids = Vec::new();
            for (n, (trigger, inputs)) in subscriptions.iter().enumerate() {
                let stored = store
                    .upsert_subscription(&SubscriptionRecord {
                        id: uuid::Uuid::new_v4().to_string(),
                        instance_id: instance.clone(),
                        trigger: trigger.as_str().to_string(),
                        notification_url: format!("http://127.0.0.1:9/{n}"),
                        inputs: inputs.clone(),
                        inputs_key: format!("key-{n}"),
                        secret: None,
                        status: "active".into(),
                        created_at: Utc::now(),
                        last_delivery_at: None,
                        consecutive_failures: 0,
                        last_error: None,
                    })
                    .await
                    .unwrap();
                ids.push(stored.id);
            }
            let now = Utc::now();
            let data_source = |id: &str, succeeded: bool| EventKind::DataSourceRefreshed {
                data_source_id: id.into(),
                data_source_name: "Source".into(),
                succeeded,
                rows_ingested: 1,
                error: None,
                started_at: now,
                completed_at: now,
            };
            let segment = |previous: Option<i64>, current: i64| EventKind::SegmentRefreshed {
                segment_id: "seg-1".into(),
                segment_name: "Segment".into(),
                previous_count: previous,
                current_count: current,
            };
            let measure =
                |previous: Option<f64>, current: Option<f64>| EventKind::MeasureRefreshed {
                    measure_id: "m-1".into(),
                    measure_name: "Measure".into(),
                    previous_value: previous,
                    current_value: current,
                };
            let events = vec![
                data_source("ds-1", false),
                data_source("ds-3", false),
                data_source("ds-1", true),
                segment(Some(9), 12),
                segment(Some(10), 11),
                segment(Some(12), 9),
                segment(None, 1),
                segment(Some(12), 13),
                measure(Some(99.5), Some(100.5)),
                measure(None, Some(99.6)),
                measure(Some(200.0), Some(50.0)),
                measure(Some(1.0), None),
                EventKind::FullRefreshCompleted {
                    job_id: "j".into(),
                    status: "succeeded".into(),
                    started_at: now,
                    completed_at: now,
                    stages: vec![],
                },
                EventKind::UnificationCompleted {
                    job_id: "j".into(),
                    source_records: 1,
                    unified_profiles: 1,
                    matched_records: 0,
                    completed_at: now,
                },
            ];
            let mut audiences_seen = 0;
            for kind in events {
                let event = DomainEvent::new(&instance, kind);
                let mut tx = store.begin().await.unwrap();
                let queued = Store::record_event(&mut tx, &event).await.unwrap();
                store.commit(tx).await.unwrap();
                let mut got = Vec::new();
                for id in &ids {
                    for d in store.list_deliveries(id, None, 100).await.unwrap() {
                        if d.event_id == event.id {
                            got.push((id.clone(), d.id));
                        }
                    }
                }
                got.sort();
                let audience = event.audience();
                let mut expected: Vec<String> = subscriptions
                    .iter()
                    .zip(&ids)
                    .filter(|((trigger, inputs), _)| {
                        let inputs: SubscriptionInputs =
                            serde_json::from_value(inputs.clone()).unwrap();
                        *trigger == event.trigger() && audience.includes(&inputs)
                    })
                    .map(|(_, id)| id.clone())
                    .collect();
                expected.sort();
                let got_subscriptions: Vec<String> = got.iter().map(|(s, _)| s.clone()).collect();
                assert_eq!(got_subscriptions, expected, "{:?}", event.kind);
                assert_eq!(queued as usize, expected.len());
                audiences_seen += usize::from(!expected.is_empty());
                // The event round-trips through its stored payload.
                if let Some((subscription, delivery)) = got.first() {
                    let context = store.delivery_context(delivery).await.unwrap();
                    assert_eq!(context.event, event.kind);
                    assert_eq!(context.occurred_at, event.occurred_at);
                    assert_eq!(&context.subscription.unwrap().id, subscription);
                }
            }
            // The cases are not vacuous: most events reach somebody.
            assert!(audiences_seen >= 8, "{audiences_seen}");
        }
    }

    /// One subscription with `n` pending deliveries (one event each); returns its id.
    async fn subscription_with_deliveries(store: &Store, n: usize) -> String {
        let instance = uuid::Uuid::new_v4().to_string();
        store
            .insert_instance(&InstanceRecord {
                id: instance.clone(),
                tenant: "t".into(),
                name: "claims".into(),
                refresh_schedule: None,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        let subscription = store
            .upsert_subscription(&SubscriptionRecord {
                id: uuid::Uuid::new_v4().to_string(),
                instance_id: instance.clone(),
                trigger: Trigger::OnUnificationCompleted.as_str().to_string(),
                notification_url: "http://127.0.0.1:9/hook".into(),
                inputs: serde_json::json!({}),
                inputs_key: String::new(),
                secret: None,
                status: "active".into(),
                created_at: Utc::now(),
                last_delivery_at: None,
                consecutive_failures: 0,
                last_error: None,
            })
            .await
            .unwrap();
        for _ in 0..n {
            let event = crate::triggers::DomainEvent::new(
                &instance,
                EventKind::UnificationCompleted {
                    job_id: "j".into(),
                    source_records: 1,
                    unified_profiles: 1,
                    matched_records: 0,
                    completed_at: Utc::now(),
                },
            );
            let mut tx = store.begin().await.unwrap();
            assert_eq!(Store::record_event(&mut tx, &event).await.unwrap(), 1);
            store.commit(tx).await.unwrap();
        }
        subscription.id
    }

    fn attempt(claimed: &Claimed, decision: Decision) -> FinishedAttempt {
        FinishedAttempt {
            delivery_id: claimed.delivery_id.clone(),
            subscription_id: claimed.subscription_id.clone(),
            claim_token: claimed.claim_token.clone(),
            attempt: AttemptRecord {
                attempted_at: Utc::now(),
                status_code: Some(500),
                latency_ms: 1,
                response_excerpt: None,
                error: Some("boom".into()),
            },
            decision,
        }
    }

    /// A subscription never has more than `cap` deliveries under an unexpired lease, however
    /// many claims ask; an expired lease no longer counts.
    #[tokio::test]
    async fn the_in_flight_cap_holds_across_claims() {
        for (_dir, store) in stores().await {
            let sub = subscription_with_deliveries(&store, 6).await;
            let now = epoch_ms(Utc::now()) + 1_000;
            let lease = now + 60_000;
            let plan = vec![(sub.clone(), 5)];
            let first = store.claim_due_batch(&plan, now, lease, 2).await.unwrap();
            assert_eq!(first.len(), 2, "the cap, not the plan's 5");
            let second = store.claim_due_batch(&plan, now, lease, 2).await.unwrap();
            assert!(second.is_empty(), "two are in flight already: {second:?}");
            // One finishes (a retry later): its slot is free again.
            let retry_at = lease + 60_000;
            store
                .finish_attempts(&[attempt(&first[0], Decision::RetryAt(retry_at))])
                .await
                .unwrap();
            let third = store.claim_due_batch(&plan, now, lease, 2).await.unwrap();
            assert_eq!(third.len(), 1);
            // The leases run out (their holder died): the cap counts nothing any more.
            let later = lease + 1;
            let fourth = store
                .claim_due_batch(&plan, later, later + 60_000, 2)
                .await
                .unwrap();
            assert_eq!(fourth.len(), 2);
        }
    }

    /// An attempt recorded under a claim that a later claim replaced (its lease ran out) is
    /// recorded, but does not decide the delivery: the newer claim does.
    #[tokio::test]
    async fn an_attempt_under_a_replaced_claim_cannot_overwrite_the_newer_claim() {
        for (_dir, store) in stores().await {
            let sub = subscription_with_deliveries(&store, 1).await;
            let now = epoch_ms(Utc::now()) + 1_000;
            let plan = vec![(sub.clone(), 1)];
            let old = store
                .claim_due_batch(&plan, now, now + 10, 4)
                .await
                .unwrap();
            let new = store
                .claim_due_batch(&plan, now + 11, now + 60_000, 4)
                .await
                .unwrap();
            assert_eq!((old.len(), new.len()), (1, 1));
            assert_eq!(old[0].delivery_id, new[0].delivery_id);
            assert_ne!(old[0].claim_token, new[0].claim_token);

            // The stale attempt (dead-letter, say) is kept in the history only.
            let recorded = store
                .finish_attempts(&[attempt(&old[0], Decision::DeadLetter)])
                .await
                .unwrap();
            assert!(matches!(recorded[..], [Ok(true)]));
            let d = store.get_delivery(&sub, &old[0].delivery_id).await.unwrap();
            assert_eq!(
                (d.status.as_str(), d.attempts, d.next_attempt_at),
                ("pending", 1, now + 60_000),
                "the newer claim's lease stands"
            );
            // The newer claim's attempt decides.
            let mut delivered = attempt(&new[0], Decision::Delivered);
            delivered.attempt.status_code = Some(200);
            delivered.attempt.error = None;
            store.finish_attempts(&[delivered]).await.unwrap();
            let d = store.get_delivery(&sub, &new[0].delivery_id).await.unwrap();
            assert_eq!((d.status.as_str(), d.attempts), ("delivered", 2));
            // The same through the one-by-one path (two attempts of one delivery in a batch).
            let sub = subscription_with_deliveries(&store, 1).await;
            let old = store
                .claim_due_batch(&[(sub.clone(), 1)], now, now + 10, 4)
                .await
                .unwrap();
            let new = store
                .claim_due_batch(&[(sub.clone(), 1)], now + 11, now + 60_000, 4)
                .await
                .unwrap();
            store
                .finish_attempts(&[
                    attempt(&new[0], Decision::RetryAt(now + 120_000)),
                    attempt(&old[0], Decision::DeadLetter),
                ])
                .await
                .unwrap();
            let d = store.get_delivery(&sub, &new[0].delivery_id).await.unwrap();
            assert_eq!(
                (d.status.as_str(), d.attempts, d.next_attempt_at),
                ("pending", 2, now + 120_000)
            );
        }
    }

    /// U+0000 where PostgreSQL cannot keep it is bad input (`Unstorable`, a 400 upstream), not a
    /// database failure (a 500); SQLite keeps it.
    #[tokio::test]
    async fn text_with_nul_is_unstorable_not_a_database_failure() {
        for (_dir, store) in stores().await {
            let instance = uuid::Uuid::new_v4().to_string();
            store
                .insert_instance(&InstanceRecord {
                    id: instance.clone(),
                    tenant: "t".into(),
                    name: "nul".into(),
                    refresh_schedule: None,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
            let stored = store
                .set_unification_config(&instance, r#"{"rules":[{"name":"a\u0000"}]}"#)
                .await;
            if store.is_postgres() {
                assert!(
                    matches!(stored, Err(crate::store::StoreError::Unstorable(_))),
                    "{stored:?}"
                );
            } else {
                stored.unwrap();
            }
        }
    }
}
