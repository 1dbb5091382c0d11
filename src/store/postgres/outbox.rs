//! PostgreSQL: outbox.

use super::{PgDb, PgTx};
use crate::store::outbox::*;
use crate::store::*;
use crate::triggers::DomainEvent;

impl PgDb {
    pub async fn record_event(_tx: &mut PgTx<'_>, _event: &DomainEvent) -> StoreResult<u64> {
        todo!("postgres record_event")
    }

    pub async fn list_deliveries(
        &self,
        _subscription_id: &str,
        _status: Option<&str>,
        _limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        todo!("postgres list_deliveries")
    }

    pub async fn get_delivery(
        &self,
        _subscription_id: &str,
        _id: &str,
    ) -> StoreResult<DeliveryRecord> {
        todo!("postgres get_delivery")
    }

    pub async fn recent_attempts(
        &self,
        _delivery_id: &str,
        _limit: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        todo!("postgres recent_attempts")
    }

    pub async fn requeue_delivery(
        &self,
        _subscription_id: &str,
        _id: &str,
    ) -> StoreResult<Requeue> {
        todo!("postgres requeue_delivery")
    }

    pub async fn due_by_subscription(&self, _now_ms: i64, _cap: usize) -> StoreResult<Vec<Due>> {
        todo!("postgres due_by_subscription")
    }

    pub async fn claim_due_batch(
        &self,
        _plan: &[(String, usize)],
        _now_ms: i64,
        _lease_until_ms: i64,
    ) -> StoreResult<Vec<Claimed>> {
        todo!("postgres claim_due_batch")
    }

    pub async fn prune_outbox(
        &self,
        _before: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<(u64, u64)> {
        todo!("postgres prune_outbox")
    }

    pub async fn delivery_context(&self, _delivery_id: &str) -> StoreResult<DeliveryContext> {
        todo!("postgres delivery_context")
    }

    pub async fn delivery_contexts(&self, _ids: &[String]) -> StoreResult<Vec<DeliveryContext>> {
        todo!("postgres delivery_contexts")
    }

    pub async fn drop_orphan_delivery(&self, _delivery_id: &str) -> StoreResult<()> {
        todo!("postgres drop_orphan_delivery")
    }

    pub async fn dead_letter_unsent(&self, _delivery_id: &str, _reason: &str) -> StoreResult<()> {
        todo!("postgres dead_letter_unsent")
    }

    pub async fn finish_attempts(
        &self,
        _attempts: &[FinishedAttempt],
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        todo!("postgres finish_attempts")
    }
}
