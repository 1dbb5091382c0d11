//! PostgreSQL: instances.

use super::PgDb;
use crate::store::instances::*;
use crate::store::*;

impl PgDb {
    pub async fn insert_instance(&self, _rec: &InstanceRecord) -> StoreResult<()> {
        todo!("postgres insert_instance")
    }

    pub async fn list_instances(&self, _tenant: &str) -> StoreResult<Vec<InstanceRecord>> {
        todo!("postgres list_instances")
    }

    pub async fn get_instance(&self, _tenant: &str, _id: &str) -> StoreResult<InstanceRecord> {
        todo!("postgres get_instance")
    }

    pub async fn all_scheduled_instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        todo!("postgres all_scheduled_instances")
    }

    pub async fn update_instance(
        &self,
        _tenant: &str,
        _id: &str,
        _name: &str,
        _refresh_schedule: Option<&str>,
    ) -> StoreResult<()> {
        todo!("postgres update_instance")
    }

    pub async fn delete_instance(&self, _tenant: &str, _id: &str) -> StoreResult<()> {
        todo!("postgres delete_instance")
    }
}
