//! Instances: a tenant's workspaces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{not_found, parse_name, Engine, EngineError, EngineResult, TenantId};
use crate::store::InstanceRecord;

/// A workspace that holds data sources, entities, segments, measures and trigger subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Unique identifier of the instance.
    pub instance_id: String,
    /// Display name of the instance.
    pub name: String,
    /// Cron expression (UTC) of the automatic full refresh, if any.
    #[schema(extensions(("x-ms-summary" = json!("Refresh schedule"))))]
    pub refresh_schedule: Option<String>,
    /// When the instance was created.
    #[schema(extensions(("x-ms-summary" = json!("Created at"))))]
    pub created_at: DateTime<Utc>,
}

/// Input of `CreateInstance`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewInstance {
    /// Display name of the instance (1–200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Optional cron expression (UTC, seconds optional) for automatic full refreshes, e.g. `0 0 3 * * *`.
    #[serde(default)]
    #[schema(extensions(("x-ms-summary" = json!("Refresh schedule")), ("x-ms-visibility" = json!("advanced"))))]
    pub refresh_schedule: Option<String>,
}

impl From<InstanceRecord> for Instance {
    fn from(r: InstanceRecord) -> Self {
        Self {
            instance_id: r.id,
            name: r.name,
            refresh_schedule: r.refresh_schedule,
            created_at: r.created_at,
        }
    }
}

/// Parses a cron expression for the refresh schedule (UTC).
pub fn parse_schedule(expr: &str) -> EngineResult<croner::Cron> {
    use std::str::FromStr;
    croner::Cron::from_str(expr.trim()).map_err(|e| {
        EngineError::Invalid(format!(
            "refreshSchedule '{expr}' is not a valid cron expression: {e}"
        ))
    })
}

impl Engine {
    pub async fn list_instances(&self, tenant: &TenantId) -> EngineResult<Vec<Instance>> {
        Ok(self
            .store()
            .list_instances(tenant.as_str())
            .await?
            .into_iter()
            .map(Instance::from)
            .collect())
    }

    pub async fn create_instance(
        &self,
        tenant: &TenantId,
        input: NewInstance,
    ) -> EngineResult<Instance> {
        let name = parse_name("name", &input.name)?;
        let refresh_schedule = match input.refresh_schedule.as_deref().map(str::trim) {
            Some("") | None => None,
            Some(expr) => {
                parse_schedule(expr)?;
                Some(expr.to_string())
            }
        };
        let rec = InstanceRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: tenant.0.clone(),
            name,
            refresh_schedule,
            created_at: super::now(),
        };
        self.store().insert_instance(&rec).await?;
        Ok(rec.into())
    }

    /// The instance if it belongs to the tenant; otherwise NotFound.
    pub async fn instance(&self, tenant: &TenantId, instance_id: &str) -> EngineResult<Instance> {
        self.store()
            .get_instance(tenant.as_str(), instance_id)
            .await
            .map(Instance::from)
            .map_err(|e| not_found(e, "instance", instance_id))
    }

    pub async fn delete_instance(&self, tenant: &TenantId, instance_id: &str) -> EngineResult<()> {
        self.store()
            .delete_instance(tenant.as_str(), instance_id)
            .await
            .map_err(|e| not_found(e, "instance", instance_id))
    }
}
