//! PostgreSQL: subscriptions.

use super::{parse_id, PgDb};
use crate::store::subscriptions::*;
use crate::store::{StoreError, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "s.id, s.instance_id, s.trigger, s.notification_url, s.inputs, s.inputs_key, \
     s.secret, s.status, s.created_at, s.last_delivery_at, s.consecutive_failures, s.last_error";

pub(super) fn subscription_from_row(r: &PgRow) -> StoreResult<SubscriptionRecord> {
    Ok(SubscriptionRecord {
        id: r.try_get::<Uuid, _>("id")?.to_string(),
        instance_id: r.try_get::<Uuid, _>("instance_id")?.to_string(),
        trigger: r.try_get("trigger")?,
        notification_url: r.try_get("notification_url")?,
        inputs: r.try_get("inputs")?,
        inputs_key: r.try_get("inputs_key")?,
        secret: r.try_get("secret")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        last_delivery_at: r.try_get("last_delivery_at")?,
        consecutive_failures: r.try_get("consecutive_failures")?,
        last_error: r.try_get("last_error")?,
    })
}

/// The tables whose rows subscribe inputs name.
#[derive(Clone, Copy)]
enum InputTable {
    DataSources,
    Segments,
    Measures,
}

impl PgDb {
    // ----- existence checks for subscribe inputs (tenant-scoped) -----

    async fn exists_in_instance(
        &self,
        table: InputTable,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let (Some(id), Some(instance_id)) = (parse_id(id), parse_id(instance_id)) else {
            return Ok(false);
        };
        let sql = match table {
            InputTable::DataSources => {
                "SELECT EXISTS (SELECT 1 FROM data_sources x JOIN instances i ON i.id = x.instance_id
                 WHERE x.id = $1 AND x.instance_id = $2 AND i.tenant = $3)"
            }
            InputTable::Segments => {
                "SELECT EXISTS (SELECT 1 FROM segments x JOIN instances i ON i.id = x.instance_id
                 WHERE x.id = $1 AND x.instance_id = $2 AND i.tenant = $3)"
            }
            InputTable::Measures => {
                "SELECT EXISTS (SELECT 1 FROM measures x JOIN instances i ON i.id = x.instance_id
                 WHERE x.id = $1 AND x.instance_id = $2 AND i.tenant = $3)"
            }
        };
        Ok(sqlx::query_scalar(sql)
            .bind(id)
            .bind(instance_id)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Is there a data source `id` in this tenant's instance?
    pub async fn data_source_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.exists_in_instance(InputTable::DataSources, tenant, instance_id, id)
            .await
    }

    pub async fn segment_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.exists_in_instance(InputTable::Segments, tenant, instance_id, id)
            .await
    }

    pub async fn measure_exists(
        &self,
        tenant: &str,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        self.exists_in_instance(InputTable::Measures, tenant, instance_id, id)
            .await
    }

    // ----- subscriptions -----

    /// Inserts the subscription, or, when one with the same instance, trigger, callback URL and
    /// inputs exists, returns that one (with the new secret; a dead one becomes active again,
    /// since the platform only re-subscribes for a flow that exists). Race-free: one statement
    /// (`ON CONFLICT` waits for a concurrent insert of the same key and then updates it).
    pub async fn upsert_subscription(
        &self,
        rec: &SubscriptionRecord,
    ) -> StoreResult<SubscriptionRecord> {
        let (Some(id), Some(instance_id)) = (parse_id(&rec.id), parse_id(&rec.instance_id)) else {
            return Err(StoreError::NotFound);
        };
        let sql = format!(
            "INSERT INTO subscriptions AS s
                (id, instance_id, trigger, notification_url, inputs, inputs_key, secret, status,
                 created_at, consecutive_failures)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, 0)
             ON CONFLICT (instance_id, trigger, notification_url, inputs_key) DO UPDATE SET
                secret = excluded.secret,
                consecutive_failures = CASE WHEN s.status = 'active' THEN s.consecutive_failures ELSE 0 END,
                last_error = CASE WHEN s.status = 'active' THEN s.last_error ELSE NULL END,
                status = 'active'
             RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(instance_id)
            .bind(&rec.trigger)
            .bind(&rec.notification_url)
            .bind(&rec.inputs)
            .bind(&rec.inputs_key)
            .bind(&rec.secret)
            .bind(rec.created_at)
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
        let Some(instance_id) = parse_id(instance_id) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN instances i ON i.id = s.instance_id
             WHERE s.instance_id = $1 AND i.tenant = $2 ORDER BY s.created_at, s.id"
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
        let (Some(id), Some(instance_id)) = (parse_id(id), parse_id(instance_id)) else {
            return Err(StoreError::NotFound);
        };
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s JOIN instances i ON i.id = s.instance_id
             WHERE s.id = $1 AND s.instance_id = $2 AND i.tenant = $3"
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
        let (Some(id), Some(instance_id)) = (parse_id(id), parse_id(instance_id)) else {
            return Ok(false);
        };
        // One statement: the deliveries go only if the subscription did (attempts go with their
        // deliveries: foreign key, ON DELETE CASCADE).
        let deleted: i64 = sqlx::query_scalar(
            "WITH s AS (
                DELETE FROM subscriptions WHERE id = $1 AND instance_id = $2
                  AND instance_id IN (SELECT id FROM instances WHERE tenant = $3)
                RETURNING id
             ), d AS (
                DELETE FROM deliveries WHERE subscription_id IN (SELECT id FROM s)
             )
             SELECT count(*) FROM s",
        )
        .bind(id)
        .bind(instance_id)
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(deleted > 0)
    }
}
