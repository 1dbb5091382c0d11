//! SQLite: unification.

use super::ts;
use super::SqliteDb;
use crate::store::StoreResult;
use chrono::Utc;

impl SqliteDb {
    pub async fn get_unification_config(&self, instance_id: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT config FROM unification_configs WHERE instance_id = ?")
                .bind(instance_id)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    pub async fn set_unification_config(&self, instance_id: &str, config: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO unification_configs (instance_id, config, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (instance_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(instance_id)
        .bind(config)
        .bind(ts(Utc::now()))
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(())
    }
}
