//! PostgreSQL: jobs.

use super::{PgDb, PgTx};
use crate::store::jobs::*;
use crate::store::*;
use serde_json::Value;

impl PgDb {
    pub async fn insert_job(&self, _job: &JobRecord) -> StoreResult<()> {
        todo!("postgres insert_job")
    }

    pub async fn get_job(&self, _instance_id: &str, _job_id: &str) -> StoreResult<JobRecord> {
        todo!("postgres get_job")
    }

    pub async fn claim_next_job(&self) -> StoreResult<Option<JobRecord>> {
        todo!("postgres claim_next_job")
    }

    pub async fn finish_job(
        _tx: &mut PgTx<'_>,
        _job_id: &str,
        _succeeded: bool,
        _result: Option<&Value>,
        _error: Option<&str>,
    ) -> StoreResult<()> {
        todo!("postgres finish_job")
    }

    pub async fn fail_interrupted_jobs(&self) -> StoreResult<u64> {
        todo!("postgres fail_interrupted_jobs")
    }
}
