//! PostgreSQL: subscriptions.

use super::PgDb;
use crate::store::subscriptions::*;
use crate::store::*;

impl PgDb {
    pub async fn data_source_exists(
        &self,
        _tenant: &str,
        _instance_id: &str,
        _id: &str,
    ) -> StoreResult<bool> {
        todo!("postgres data_source_exists")
    }

    pub async fn segment_exists(
        &self,
        _tenant: &str,
        _instance_id: &str,
        _id: &str,
    ) -> StoreResult<bool> {
        todo!("postgres segment_exists")
    }

    pub async fn measure_exists(
        &self,
        _tenant: &str,
        _instance_id: &str,
        _id: &str,
    ) -> StoreResult<bool> {
        todo!("postgres measure_exists")
    }

    pub async fn upsert_subscription(
        &self,
        _rec: &SubscriptionRecord,
    ) -> StoreResult<SubscriptionRecord> {
        todo!("postgres upsert_subscription")
    }

    pub async fn list_subscriptions(
        &self,
        _tenant: &str,
        _instance_id: &str,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        todo!("postgres list_subscriptions")
    }

    pub async fn get_subscription(
        &self,
        _tenant: &str,
        _instance_id: &str,
        _id: &str,
    ) -> StoreResult<SubscriptionRecord> {
        todo!("postgres get_subscription")
    }

    pub async fn delete_subscription(
        &self,
        _tenant: &str,
        _instance_id: &str,
        _id: &str,
    ) -> StoreResult<bool> {
        todo!("postgres delete_subscription")
    }
}
