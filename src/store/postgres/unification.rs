//! PostgreSQL: unification.

use super::{parse_id, PgDb};
use crate::store::*;

impl PgDb {
    pub async fn get_unification_config(&self, instance_id: &str) -> StoreResult<Option<String>> {
        let Some(instance_id) = parse_id(instance_id) else {
            return Ok(None);
        };
        // jsonb normalises the text; the engine parses it again, so that is all it sees.
        Ok(sqlx::query_scalar(
            "SELECT config::text FROM unification_configs WHERE instance_id = $1",
        )
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn set_unification_config(&self, instance_id: &str, config: &str) -> StoreResult<()> {
        let instance_id = super::id_or_not_found(instance_id)?;
        sqlx::query(
            "INSERT INTO unification_configs (instance_id, config, updated_at) VALUES ($1, $2::jsonb, now())
             ON CONFLICT (instance_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(instance_id)
        .bind(config)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
