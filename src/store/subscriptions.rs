//! Trigger subscriptions: the queries behind subscribe, list, get and unsubscribe, and the
//! tenant-scoped existence checks of subscribe inputs. The delivery side is in `outbox.rs`.

use super::{Db, Store, StoreResult};
use chrono::{DateTime, Utc};
use serde_json::Value;

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

impl Store {
    /// Is there a data source `id` in this tenant's instance?
    pub async fn data_source_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        match &self.db {
            Db::Sqlite(db) => db.data_source_exists(tenant, instance_id, id).await,
            Db::Postgres(db) => db.data_source_exists(tenant, instance_id, id).await,
        }
    }

    pub async fn segment_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        match &self.db {
            Db::Sqlite(db) => db.segment_exists(tenant, instance_id, id).await,
            Db::Postgres(db) => db.segment_exists(tenant, instance_id, id).await,
        }
    }

    pub async fn measure_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        match &self.db {
            Db::Sqlite(db) => db.measure_exists(tenant, instance_id, id).await,
            Db::Postgres(db) => db.measure_exists(tenant, instance_id, id).await,
        }
    }

    /// Inserts the subscription, or, when one with the same instance, trigger, callback URL and
    /// inputs exists, returns that one (with the new secret; a dead one becomes active again,
    /// since the platform only re-subscribes for a flow that exists). Race-free: one statement.
    pub async fn upsert_subscription(
        &self,
        rec: &SubscriptionRecord,
    ) -> StoreResult<SubscriptionRecord> {
        match &self.db {
            Db::Sqlite(db) => db.upsert_subscription(rec).await,
            Db::Postgres(db) => db.upsert_subscription(rec).await,
        }
    }

    /// The tenant's subscriptions of one instance, oldest first.
    pub async fn list_subscriptions(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_subscriptions(tenant, instance_id).await,
            Db::Postgres(db) => db.list_subscriptions(tenant, instance_id).await,
        }
    }

    /// Another tenant's subscription is `NotFound`, exactly like a missing one.
    pub async fn get_subscription(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<SubscriptionRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_subscription(tenant, instance_id, id).await,
            Db::Postgres(db) => db.get_subscription(tenant, instance_id, id).await,
        }
    }

    /// Deletes the subscription with its queued and past deliveries. `false` when there was
    /// nothing to delete (already gone, or not the tenant's).
    pub async fn delete_subscription(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        match &self.db {
            Db::Sqlite(db) => db.delete_subscription(tenant, instance_id, id).await,
            Db::Postgres(db) => db.delete_subscription(tenant, instance_id, id).await,
        }
    }
}
