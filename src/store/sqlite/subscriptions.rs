//! SQLite: subscriptions.

use super::{parse_opt_ts, parse_ts, ts};
use super::{Columns, SqliteDb};
use crate::store::subscriptions::*;
use crate::store::{StoreError, StoreResult};

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "s.id, s.instance_id, s.trigger, s.notification_url, s.inputs, s.inputs_key, \
     s.secret, s.status, s.created_at, s.last_delivery_at, s.consecutive_failures, s.last_error";

/// The same columns without the table alias (`RETURNING` does not accept it).
const RETURNING_COLUMNS: &str = "id, instance_id, trigger, notification_url, inputs, inputs_key, \
     secret, status, created_at, last_delivery_at, consecutive_failures, last_error";

/// A subscription row of either driver (sqlx or the synchronous connections), over the columns
/// of [`SUBSCRIPTION_COLUMNS`].
pub(super) fn subscription_from_row(r: &impl Columns) -> StoreResult<SubscriptionRecord> {
    let inputs: String = r.column("inputs")?;
    Ok(SubscriptionRecord {
        id: r.column("id")?,
        instance_id: r.column("instance_id")?,
        trigger: r.column("trigger")?,
        notification_url: r.column("notification_url")?,
        inputs: serde_json::from_str(&inputs)
            .map_err(|e| StoreError::Corrupt(format!("subscription inputs: {e}")))?,
        inputs_key: r.column("inputs_key")?,
        secret: r.column("secret")?,
        status: r.column("status")?,
        created_at: parse_ts(&r.column::<String>("created_at")?)?,
        last_delivery_at: parse_opt_ts(r.column("last_delivery_at")?)?,
        consecutive_failures: r.column("consecutive_failures")?,
        last_error: r.column("last_error")?,
    })
}

impl SqliteDb {
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
            .fetch_optional(&self.reader)
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
            .fetch_one(&mut *self.write_alone().await?)
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
            .fetch_all(&self.reader)
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
            .fetch_optional(&self.reader)
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
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "DELETE FROM subscriptions WHERE id = ? AND instance_id = ?
               AND instance_id IN (SELECT id FROM instances WHERE tenant = ?)",
        )
        .bind(id)
        .bind(instance_id)
        .bind(tenant)
        .execute(tx.connection())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Attempts go with their deliveries (foreign key, ON DELETE CASCADE).
        sqlx::query("DELETE FROM deliveries WHERE subscription_id = ?")
            .bind(id)
            .execute(tx.connection())
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
