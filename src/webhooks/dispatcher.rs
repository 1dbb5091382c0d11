//! The outbox dispatcher: a background task that delivers queued notifications.
//!
//! - **Wake-up**: the engine's outbox signal (after a commit that queued deliveries), the
//!   earliest `next_attempt_at`, the end of an attempt, or the poll interval, whichever is first.
//! - **Claiming** uses a lease: a claimed delivery's `next_attempt_at` is pushed past the
//!   attempt's deadline. A crash (even `kill -9`) mid-attempt leaves it pending, and it is due
//!   again when the lease runs out; there is no in-flight state to repair.
//! - **Concurrency** is bounded globally and per subscription (at most 4, and at most half of
//!   the global limit; a single slot while the subscription's last attempt failed), so a slow or
//!   dead callback holds few slots and cannot stall the others.
//! - **Each attempt** re-checks the destination (URL policy here; the resolver of the HTTP
//!   client checks every resolved address and connects only to checked ones), signs the body
//!   when the subscription has a secret, has one total deadline, reads at most
//!   [`RESPONSE_EXCERPT_BYTES`] of the answer, and is recorded before the next one is scheduled.
//! - **Outcomes** ([`classify_status`]): 2xx delivered; 408/429/5xx, timeouts and connection
//!   errors retried by the [`RetryPolicy`] (then dead-lettered); 404/410 kill the subscription
//!   (derived policy: the flow is gone); other statuses fail that delivery for good.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::IntCounterVec;
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::retry::{classify_status, Outcome, RetryPolicy, OVERLOAD_PENALTY};
use super::signing::{self, SigningSecret};
use super::ssrf::{build_client, read_capped, CallbackPolicy, CallbackRefusal};
use crate::store::outbox::{
    epoch_ms, AttemptRecord, Decision, DeliveryContext, Due, FinishedAttempt,
};
use crate::store::Store;
use crate::triggers::{DomainEvent, SubscriptionInputs};

/// Bytes of a callback's answer that are read and kept with the attempt.
pub const RESPONSE_EXCERPT_BYTES: usize = 2048;
/// Most attempts in flight for one subscription (fewer when the global limit is small).
pub const MAX_IN_FLIGHT_PER_SUBSCRIPTION: usize = 4;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub policy: CallbackPolicy,
    /// Total deadline of one attempt.
    pub timeout: Duration,
    /// Attempts in flight at once, in all.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Longest sleep without a wake-up (covers events committed by another process).
    pub poll_interval: Duration,
}

impl DispatcherConfig {
    /// Attempts in flight for one subscription: at most 4, and at most half of the global
    /// limit so that one callback can never take every slot.
    pub fn per_subscription(&self) -> usize {
        MAX_IN_FLIGHT_PER_SUBSCRIPTION
            .min(self.concurrency / 2)
            .max(1)
    }

    /// How long a claim lasts: the attempt's deadline plus a margin for recording it.
    pub fn lease(&self) -> Duration {
        self.timeout + self.timeout.min(Duration::from_secs(5)) + Duration::from_millis(500)
    }
}

/// Running dispatcher; [`shutdown`](Self::shutdown) stops it.
pub struct DispatcherHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops claiming, lets attempts in flight finish (they are bounded by their deadline),
    /// and returns. Attempts cut short are redelivered after a restart (lease).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Starts the dispatcher on the current Tokio runtime.
pub fn spawn(
    store: Store,
    signal: Arc<Notify>,
    config: DispatcherConfig,
    metrics: Option<IntCounterVec>,
) -> DispatcherHandle {
    let stop = CancellationToken::new();
    let client = build_client(config.policy.clone(), config.timeout);
    let write_turn = Arc::new(Mutex::new(()));
    let (recorder, recorder_task) = Recorder::spawn(store.clone(), write_turn.clone());
    let worker = Worker {
        store,
        write_turn,
        recorder,
        client,
        config: Arc::new(config),
        metrics,
    };
    let task = tokio::spawn(worker.run(signal, stop.clone(), recorder_task));
    DispatcherHandle { stop, task }
}

/// Most attempt records committed in one transaction.
const RECORD_BATCH: usize = 256;

/// Records attempts with group commit: whatever finished while the previous transaction was
/// committing goes into the next one ([`Store::finish_attempts`]), so under load a commit (and
/// its WAL write) serves many attempts instead of one, and when idle an attempt is recorded at
/// once, alone.
///
/// A delivery counts as done only once its attempt's record is committed: until then it keeps
/// its claim (token and lease) in the database, so no claim takes it again or counts it out of
/// its subscription's cap, and a crash before the commit loses the record, not the delivery:
/// its lease runs out and it is sent again (at least once). The attempt's slot, which bounds
/// the requests in flight, is free as soon as the request has ended and its record is queued
/// here, so sending never waits for a commit and a commit serves every attempt that ended
/// meanwhile.
#[derive(Clone)]
struct Recorder {
    requests: mpsc::Sender<FinishedAttempt>,
}

impl Recorder {
    /// Starts the recording task. It ends once every `Recorder` is dropped and what was queued
    /// is committed; the dispatcher awaits it on shutdown, before the database closes.
    fn spawn(store: Store, write_turn: WriteTurn) -> (Self, tokio::task::JoinHandle<()>) {
        let (requests, mut queue) = mpsc::channel::<FinishedAttempt>(RECORD_BATCH * 4);
        let task = tokio::spawn(async move {
            let mut attempts = Vec::with_capacity(RECORD_BATCH);
            while queue.recv_many(&mut attempts, RECORD_BATCH).await > 0 {
                let result = {
                    let _turn = write_turn.lock().await;
                    store.finish_attempts(&attempts).await
                };
                // What could not be recorded is attempted again when its lease runs out.
                match result {
                    Ok(results) => {
                        for (attempt, result) in attempts.iter().zip(results) {
                            if let Err(e) = result {
                                tracing::warn!(delivery = %attempt.delivery_id, error = %e, "webhook attempt could not be recorded; it will be retried");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(attempts = attempts.len(), error = %e, "webhook attempts could not be recorded; they will be retried");
                    }
                }
                attempts.clear();
            }
        });
        (Self { requests }, task)
    }

    /// Queues one attempt's record (waiting only while the queue is full).
    async fn record(&self, attempt: FinishedAttempt) -> Result<(), &'static str> {
        self.requests
            .send(attempt)
            .await
            .map_err(|_| "the attempt recorder stopped")
    }
}

/// Taken by the dispatcher's two writers (claims, attempt records) around each write. SQLite
/// has one write lock; a writer that finds it taken polls with sleeps of 1 ms and more (the
/// busy handler), and with a claim and a record commit contending all the time, those sleeps
/// were most of a fan-out's time. Queued here, the next writer starts as the last one ends.
type WriteTurn = Arc<Mutex<()>>;

#[derive(Clone)]
struct Worker {
    store: Store,
    write_turn: WriteTurn,
    recorder: Recorder,
    client: reqwest::Client,
    config: Arc<DispatcherConfig>,
    metrics: Option<IntCounterVec>,
}

impl Worker {
    async fn run(
        self,
        signal: Arc<Notify>,
        stopped: CancellationToken,
        recorder_task: tokio::task::JoinHandle<()>,
    ) {
        let per_sub = self.config.per_subscription();
        let concurrency = self.config.concurrency.max(1);
        let mut in_flight: JoinSet<(String, Health)> = JoinSet::new();
        let mut slots = Slots::default();
        let mut due = VecDeque::new();
        tracing::debug!(concurrency, per_sub, "webhook dispatcher started");
        loop {
            if stopped.is_cancelled() {
                break;
            }
            let wait = self
                .claim_and_spawn(concurrency, per_sub, &mut in_flight, &mut slots, &mut due)
                .await;
            tokio::select! {
                _ = stopped.cancelled() => {}
                // New deliveries were committed: look at the outbox again.
                _ = signal.notified() => due.clear(),
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    // A finished attempt frees a slot for the next subscription of the list;
                    // one that scheduled a retry (or failed) makes the list stale.
                    let mut stale = slots.release(done);
                    // Collect any others that finished meanwhile.
                    while let Some(done) = in_flight.try_join_next() {
                        stale |= slots.release(done);
                    }
                    if stale {
                        due.clear();
                    }
                }
                _ = tokio::time::sleep(wait) => due.clear(),
            }
        }
        // Shutting down: attempts in flight end by their own deadline.
        let grace = self.config.timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        in_flight.shutdown().await;
        // The recorder commits what the attempts queued and stops once the last handle is
        // gone (the aborted attempts dropped theirs), so the store is not closed under it.
        drop(self);
        let _ = recorder_task.await;
        tracing::debug!("webhook dispatcher stopped");
    }

    /// Claims what is due and fits (globally and per subscription) and starts those attempts.
    /// `due` is the list of the last outbox scan, walked across calls (an empty list is read
    /// again), so one scan serves many claims: with N subscriptions due, rescanning after
    /// every attempt cost O(N) per delivery. Returns how long to sleep at most.
    async fn claim_and_spawn(
        &self,
        concurrency: usize,
        per_sub: usize,
        in_flight: &mut JoinSet<(String, Health)>,
        slots: &mut Slots,
        due: &mut VecDeque<Due>,
    ) -> Duration {
        let mut wait = self.config.poll_interval;
        let now_ms = epoch_ms(Utc::now());
        if due.is_empty() {
            match self.store.due_by_subscription(now_ms, per_sub).await {
                Ok(list) => due.extend(list),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher could not read the outbox");
                    return wait;
                }
            }
        }
        let lease_until = now_ms + self.config.lease().as_millis() as i64;
        // Plan: which subscriptions get how many attempts now.
        let mut plan: Vec<(String, usize)> = Vec::new();
        let mut free = concurrency.saturating_sub(in_flight.len());
        // While attempts are in flight, claim once a quarter of the slots is free rather than
        // for every slot that frees up: a claim is a commit, and one per delivery made claiming
        // the cost of a fan-out. An idle dispatcher claims at once.
        if free < (concurrency / 4).max(1) && !in_flight.is_empty() {
            return wait;
        }
        while let Some(next) = due.front() {
            if next.due_at > now_ms {
                // Sorted by due time: nothing further is due yet.
                wait = wait.min(Duration::from_millis((next.due_at - now_ms) as u64));
                break;
            }
            if free == 0 {
                break; // an attempt ending wakes the loop
            }
            let next = due.pop_front().expect("front exists");
            // No more than it had due (at least one: it is due now, even if it was not when
            // the list was read), so the slots left go to the next subscriptions.
            let n = slots
                .room(&next.subscription_id, per_sub)
                .min(free)
                .min(next.ready.max(1));
            if n == 0 {
                continue; // this subscription has its share in flight; the next scan has it
            }
            free -= n;
            plan.push((next.subscription_id, n));
        }
        if plan.is_empty() {
            return wait;
        }
        let claimed = {
            let _turn = self.write_turn.lock().await;
            self.store
                .claim_due_batch(&plan, now_ms, lease_until, per_sub)
                .await
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher could not claim deliveries");
                due.clear();
                return wait;
            }
        };
        let planned: usize = plan.iter().map(|(_, n)| n).sum();
        if claimed.len() < planned && !due.is_empty() {
            // Another replica took part of the plan: go on with the rest of the list now
            // rather than after the poll interval.
            wait = Duration::ZERO;
        }
        // What the attempts need, read for all of them at once. Should that fail, the claimed
        // deliveries are due again when their lease runs out.
        let ids: Vec<String> = claimed.iter().map(|c| c.delivery_id.clone()).collect();
        let mut tokens: HashMap<String, String> = claimed
            .into_iter()
            .map(|c| (c.delivery_id, c.claim_token))
            .collect();
        let contexts = match self.store.delivery_contexts(&ids).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher could not read claimed deliveries");
                due.clear();
                return wait;
            }
        };
        for ctx in contexts {
            let Some(claim_token) = tokens.remove(&ctx.delivery_id) else {
                continue; // read once only: a claimed id comes back once
            };
            slots.take(&ctx.subscription_id);
            let worker = self.clone();
            in_flight.spawn(async move {
                use futures_util::FutureExt;
                let sub = ctx.subscription_id.clone();
                // Even a panicking attempt gives its slot back (its lease makes the
                // delivery due again).
                let health = std::panic::AssertUnwindSafe(worker.attempt(ctx, claim_token))
                    .catch_unwind()
                    .await
                    .unwrap_or(Health::Unknown);
                (sub, health)
            });
        }
        wait
    }

    fn count(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.with_label_values(&[outcome]).inc();
        }
    }

    /// One attempt of one claimed delivery, recorded. Errors are logged: the lease makes the
    /// delivery due again, so nothing is lost.
    async fn attempt(&self, ctx: DeliveryContext, claim_token: String) -> Health {
        let delivery_id = ctx.delivery_id.clone();
        match self.try_attempt(ctx, claim_token).await {
            Ok(health) => health,
            Err(e) => {
                tracing::warn!(delivery = %delivery_id, error = %e, "webhook attempt could not be recorded; it will be retried");
                Health::Unknown
            }
        }
    }

    /// One attempt of a claimed delivery, read with its claim.
    async fn try_attempt(
        &self,
        ctx: DeliveryContext,
        claim_token: String,
    ) -> Result<Health, Box<dyn std::error::Error + Send + Sync>> {
        let Some(sub) = ctx.subscription.clone() else {
            // Deleted meanwhile; its deliveries go with it.
            self.store.drop_orphan_delivery(&ctx.delivery_id).await?;
            return Ok(Health::Unknown);
        };
        if sub.status != "active" {
            self.store
                .dead_letter_unsent(&ctx.delivery_id, "not sent: the subscription is dead")
                .await?;
            return Ok(Health::Unknown);
        }
        let inputs: SubscriptionInputs = match serde_json::from_value(sub.inputs.clone()) {
            Ok(inputs) => inputs,
            Err(e) => {
                self.store
                    .dead_letter_unsent(
                        &ctx.delivery_id,
                        &format!("not sent: the subscription's stored inputs are unreadable ({e})"),
                    )
                    .await?;
                return Ok(Health::Unknown);
            }
        };
        let body = notification_body(&ctx, &inputs);
        let secret = sub
            .secret
            .as_deref()
            .and_then(|s| SigningSecret::parse(s).ok());
        let attempted_at = Utc::now();
        let started = Instant::now();
        let result = self
            .send(&sub.notification_url, &ctx.event_id, secret.as_ref(), body)
            .await;
        let latency_ms = started.elapsed().as_millis() as i64;

        let attempts_made = (ctx.attempts + 1).max(1) as u32;
        let (decision, outcome_label, status_code, excerpt, error) = match result {
            Sent::Answered {
                status,
                retry_after,
                excerpt,
            } => match classify_status(status, retry_after.as_deref()) {
                Outcome::Delivered => (
                    Decision::Delivered,
                    "delivered",
                    Some(status),
                    excerpt,
                    None,
                ),
                Outcome::Retry { retry_after } => {
                    let error = format!("callback answered {status}");
                    let decision = self.retry_or_dead(attempts_made, retry_after);
                    (decision, "retry", Some(status), excerpt, Some(error))
                }
                Outcome::SubscriptionGone => (
                    Decision::SubscriptionGone,
                    "gone",
                    Some(status),
                    excerpt,
                    Some(format!(
                        "callback answered {status}: the flow is gone, so the subscription is dead"
                    )),
                ),
                Outcome::PermanentFailure => (
                    Decision::Failed,
                    "failed",
                    Some(status),
                    excerpt,
                    Some(format!("callback answered {status}; not retried")),
                ),
            },
            Sent::Refused(refusal) => (
                Decision::Failed,
                "refused",
                None,
                None,
                Some(format!("destination refused: {refusal}")),
            ),
            Sent::TimedOut => (
                self.retry_or_dead(attempts_made, Some(OVERLOAD_PENALTY)),
                "timeout",
                None,
                None,
                Some(format!(
                    "no complete answer within the {} ms deadline",
                    self.config.timeout.as_millis()
                )),
            ),
            Sent::Failed(message) => (
                self.retry_or_dead(attempts_made, None),
                "error",
                None,
                None,
                Some(message),
            ),
        };
        let outcome_label = match decision {
            Decision::DeadLetter => "dead",
            _ => outcome_label,
        };
        self.count(outcome_label);
        match &decision {
            Decision::DeadLetter => {
                tracing::warn!(delivery = %ctx.delivery_id, subscription = %sub.id, attempts = attempts_made, "webhook delivery dead-lettered")
            }
            Decision::SubscriptionGone => {
                tracing::warn!(subscription = %sub.id, "webhook callback is gone; subscription marked dead")
            }
            Decision::Failed => {
                tracing::warn!(delivery = %ctx.delivery_id, subscription = %sub.id, error = ?error, "webhook delivery failed for good")
            }
            _ => {
                tracing::debug!(delivery = %ctx.delivery_id, outcome = outcome_label, latency_ms, "webhook attempt")
            }
        }
        let attempt = AttemptRecord {
            attempted_at,
            status_code: status_code.map(i64::from),
            latency_ms,
            response_excerpt: excerpt.filter(|s| !s.is_empty()),
            error,
        };
        // Queued, not yet committed: the delivery keeps its claim until it is (see `Recorder`).
        self.recorder
            .record(FinishedAttempt {
                delivery_id: ctx.delivery_id.clone(),
                claim_token,
                subscription_id: sub.id.clone(),
                attempt,
                decision: decision.clone(),
            })
            .await?;
        Ok(match decision {
            Decision::Delivered => Health::Healthy,
            Decision::RetryAt(_) | Decision::DeadLetter => Health::Failing,
            Decision::Failed | Decision::SubscriptionGone => Health::Unknown,
        })
    }

    fn retry_or_dead(&self, attempts_made: u32, retry_after: Option<Duration>) -> Decision {
        match self.config.retry.next_delay(attempts_made, retry_after) {
            Some(delay) => Decision::RetryAt(epoch_ms(Utc::now()) + delay.as_millis() as i64),
            None => Decision::DeadLetter,
        }
    }

    async fn send(
        &self,
        url: &str,
        event_id: &str,
        secret: Option<&SigningSecret>,
        body: Vec<u8>,
    ) -> Sent {
        // IP literals never reach the resolver, so the URL is checked here before every attempt.
        let url = match self.config.policy.check_url(url) {
            Ok(u) => u,
            Err(refusal) => return Sent::Refused(refusal.to_string()),
        };
        let timestamp = Utc::now().timestamp();
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in signing::headers(secret, event_id, timestamp, &body) {
            request = request.header(name, value);
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Sent::from_error(e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The client's total deadline also bounds this read.
        let excerpt = read_capped(response, RESPONSE_EXCERPT_BYTES).await;
        Sent::Answered {
            status,
            retry_after,
            excerpt: Some(excerpt),
        }
    }
}

/// What an attempt says about its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// It accepted the notification.
    Healthy,
    /// It failed in a way that is retried (timeout, connection error, 408/429/5xx).
    Failing,
    /// Nothing to conclude.
    Unknown,
}

/// Attempts in flight per subscription. A subscription whose last attempt failed in a
/// retryable way gets one slot until an attempt succeeds again, so a dead or hanging callback
/// with a backlog ties up one slot, not its full share.
#[derive(Default)]
struct Slots {
    in_use: HashMap<String, usize>,
    failing: HashSet<String>,
}

impl Slots {
    fn room(&self, sub: &str, per_sub: usize) -> usize {
        let cap = if self.failing.contains(sub) {
            1
        } else {
            per_sub
        };
        cap.saturating_sub(*self.in_use.get(sub).unwrap_or(&0))
    }

    fn take(&mut self, sub: &str) {
        *self.in_use.entry(sub.to_string()).or_insert(0) += 1;
    }

    /// Frees the attempt's slot; true when the outcome was not a delivery (a retry may now be
    /// scheduled, so the caller's list of due subscriptions is stale).
    fn release(&mut self, done: Result<(String, Health), tokio::task::JoinError>) -> bool {
        let Ok((sub, health)) = done else { return true };
        if let Some(n) = self.in_use.get_mut(&sub) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_use.remove(&sub);
            }
        }
        match health {
            Health::Healthy => {
                self.failing.remove(&sub);
                false
            }
            Health::Failing => {
                self.failing.insert(sub);
                true
            }
            Health::Unknown => true,
        }
    }
}

/// The notification body of a delivery.
pub fn notification_body(ctx: &DeliveryContext, inputs: &SubscriptionInputs) -> Vec<u8> {
    let event = DomainEvent {
        id: ctx.event_id.clone(),
        instance_id: ctx.instance_id.clone(),
        occurred_at: ctx.occurred_at,
        kind: ctx.event.clone(),
    };
    serde_json::to_vec(&event.notification(inputs)).expect("notification serializes")
}

/// What happened to one request.
enum Sent {
    Answered {
        status: u16,
        retry_after: Option<String>,
        excerpt: Option<String>,
    },
    /// The destination is not allowed (checked before sending, or by the resolver).
    Refused(String),
    TimedOut,
    /// Connection or protocol failure (retried).
    Failed(String),
}

impl Sent {
    fn from_error(e: reqwest::Error) -> Self {
        // Never keep the URL: the platform's callback URLs carry a signature.
        let e = e.without_url();
        if let Some(refusal) = find_refusal(&e) {
            if !matches!(refusal, CallbackRefusal::Unresolvable(_)) {
                return Sent::Refused(refusal.to_string());
            }
        }
        if e.is_timeout() {
            return Sent::TimedOut;
        }
        let kind = if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        Sent::Failed(format!("{kind}: {}", root_cause(&e)))
    }
}

fn find_refusal<'a>(mut err: &'a (dyn std::error::Error + 'static)) -> Option<&'a CallbackRefusal> {
    loop {
        if let Some(r) = err.downcast_ref::<CallbackRefusal>() {
            return Some(r);
        }
        err = err.source()?;
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(concurrency: usize, timeout_secs: u64) -> DispatcherConfig {
        DispatcherConfig {
            policy: CallbackPolicy::default(),
            timeout: Duration::from_secs(timeout_secs),
            concurrency,
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn per_subscription_share_is_at_most_four_and_at_most_half() {
        assert_eq!(config(64, 15).per_subscription(), 4);
        assert_eq!(config(6, 15).per_subscription(), 3);
        assert_eq!(config(4, 15).per_subscription(), 2);
        assert_eq!(config(1, 15).per_subscription(), 1);
    }

    #[test]
    fn the_lease_outlasts_the_attempt_deadline() {
        assert_eq!(config(64, 15).lease(), Duration::from_millis(20_500));
        assert_eq!(config(64, 2).lease(), Duration::from_millis(4_500));
    }

    #[test]
    fn a_failing_subscription_gets_one_slot_until_it_recovers() {
        let mut slots = Slots::default();
        assert_eq!(slots.room("a", 4), 4);
        slots.take("a");
        slots.take("a");
        assert_eq!(slots.room("a", 4), 2);
        slots.release(Ok(("a".into(), Health::Failing)));
        assert_eq!(
            slots.room("a", 4),
            0,
            "one still in flight uses the single slot"
        );
        slots.release(Ok(("a".into(), Health::Unknown)));
        assert_eq!(slots.room("a", 4), 1);
        assert_eq!(slots.room("b", 4), 4, "others are not affected");
        slots.take("a");
        slots.release(Ok(("a".into(), Health::Healthy)));
        assert_eq!(slots.room("a", 4), 4);
        assert!(slots.in_use.is_empty());
    }
}
