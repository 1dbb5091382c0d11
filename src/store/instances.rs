//! Instances: a tenant's workspaces, and deleting one with everything in it.

use super::{Db, Store, StoreResult};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub refresh_schedule: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    pub async fn insert_instance(&self, rec: &InstanceRecord) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.insert_instance(rec).await,
            Db::Postgres(db) => db.insert_instance(rec).await,
        }
    }

    pub async fn list_instances(&self, tenant: &str) -> StoreResult<Vec<InstanceRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_instances(tenant).await,
            Db::Postgres(db) => db.list_instances(tenant).await,
        }
    }

    /// Another tenant's instance is `NotFound`, exactly like a missing one.
    pub async fn get_instance(&self, tenant: &str, id: &str) -> StoreResult<InstanceRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_instance(tenant, id).await,
            Db::Postgres(db) => db.get_instance(tenant, id).await,
        }
    }

    /// The tenant an instance belongs to (for work that runs without a request, such as a
    /// refresh job reading the tenant's files).
    pub async fn instance_tenant(&self, id: &str) -> StoreResult<String> {
        match &self.db {
            Db::Sqlite(db) => db.instance_tenant(id).await,
            Db::Postgres(db) => db.instance_tenant(id).await,
        }
    }

    pub async fn all_scheduled_instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.all_scheduled_instances().await,
            Db::Postgres(db) => db.all_scheduled_instances().await,
        }
    }

    pub async fn update_instance(
        &self,
        tenant: &str,
        id: &str,
        name: &str,
        refresh_schedule: Option<&str>,
    ) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.update_instance(tenant, id, name, refresh_schedule).await,
            Db::Postgres(db) => db.update_instance(tenant, id, name, refresh_schedule).await,
        }
    }

    /// Deletes the instance and, through foreign keys, everything in it.
    pub async fn delete_instance(&self, tenant: &str, id: &str) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.delete_instance(tenant, id).await,
            Db::Postgres(db) => db.delete_instance(tenant, id).await,
        }
    }
}
