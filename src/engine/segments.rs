//! Segments: OData filters over the unified `Customer` profiles, with member counts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::entities::{parse_filter_for, CUSTOMER_ENTITY, DEFAULT_TOP, MAX_TOP};
use super::jobs::{Job, JobKind};
use super::{not_found, odata, parse_name, Engine, EngineError, EngineResult, TenantId};
use crate::item_query::ItemQuery;
use crate::store::segments::{Members, SegmentRecord};
use crate::store::{Store, StoreError};
use crate::triggers::{DomainEvent, EventKind};

/// A segment: the unified customers matching a filter.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// Unique identifier of the segment.
    pub segment_id: String,
    /// Display name.
    pub name: String,
    /// OData filter over the Customer entity.
    pub filter: String,
    /// Members at the last refresh (absent before the first refresh).
    #[schema(extensions(("x-ms-summary" = json!("Member count"))))]
    pub member_count: Option<i64>,
    /// When the segment was last refreshed.
    #[schema(extensions(("x-ms-summary" = json!("Last refreshed at"))))]
    pub last_refreshed_at: Option<DateTime<Utc>>,
    /// When the segment was created.
    #[schema(extensions(("x-ms-summary" = json!("Created at"))))]
    pub created_at: DateTime<Utc>,
}

impl From<SegmentRecord> for Segment {
    fn from(r: SegmentRecord) -> Self {
        Self {
            segment_id: r.id,
            name: r.name,
            filter: r.filter,
            member_count: r.member_count,
            last_refreshed_at: r.last_refreshed_at,
            created_at: r.created_at,
        }
    }
}

/// Input of `CreateSegment`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSegment {
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// OData filter over the Customer entity, for example city eq 'Berlin'.
    #[schema(min_length = 1)]
    pub filter: String,
}

/// A page of segment members.
pub struct MembersPage {
    pub items: Vec<Value>,
    pub next_skip: Option<i64>,
    pub top: i64,
}

impl Engine {
    pub async fn create_segment(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        input: NewSegment,
    ) -> EngineResult<Segment> {
        self.instance(tenant, instance_id).await?;
        let name = parse_name("name", &input.name)?;
        let filter = input.filter.trim().to_string();
        odata::check_filter_syntax(&filter)
            .map_err(|e| EngineError::Invalid(format!("invalid filter: {e}")))?;
        // When profiles exist, unknown fields are caught now rather than at refresh.
        if let Ok(customer) = self.store().entity(instance_id, CUSTOMER_ENTITY).await {
            parse_filter_for(&customer, &filter, "filter")?;
        }
        let rec = SegmentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            instance_id: instance_id.into(),
            name,
            filter,
            member_count: None,
            last_refreshed_at: None,
            created_at: super::now(),
        };
        self.store().insert_segment(&rec).await?;
        Ok(rec.into())
    }

    pub async fn list_segments(
        &self,
        tenant: &TenantId,
        instance_id: &str,
    ) -> EngineResult<Vec<Segment>> {
        self.instance(tenant, instance_id).await?;
        Ok(self
            .store()
            .list_segments(instance_id)
            .await?
            .into_iter()
            .map(Segment::from)
            .collect())
    }

    pub async fn segment(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        segment_id: &str,
    ) -> EngineResult<Segment> {
        self.instance(tenant, instance_id).await?;
        self.store()
            .get_segment(instance_id, segment_id)
            .await
            .map(Segment::from)
            .map_err(|e| not_found(e, "segment", segment_id))
    }

    pub async fn refresh_segment(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        segment_id: &str,
    ) -> EngineResult<Job> {
        self.segment(tenant, instance_id, segment_id).await?;
        self.enqueue_job(instance_id, JobKind::SegmentRefresh, Some(segment_id))
            .await
    }

    /// Recomputes members and count; commits them with the event (and the job's end).
    /// `Ok(Err(reason))` is a refresh that failed for a domain reason.
    pub(crate) async fn refresh_segment_now(
        &self,
        instance_id: &str,
        segment_id: &str,
        job_id: Option<&str>,
    ) -> EngineResult<Result<i64, String>> {
        let segment = self
            .store()
            .get_segment(instance_id, segment_id)
            .await
            .map_err(|e| not_found(e, "segment", segment_id))?;
        let prepared = match self.store().entity(instance_id, CUSTOMER_ENTITY).await {
            Ok(customer) => parse_filter_for(&customer, &segment.filter, "filter")
                .map(|expr| (customer, expr))
                .map_err(|e| e.to_string()),
            Err(StoreError::NotFound) => {
                Err("there are no unified profiles yet: run unification first".into())
            }
            Err(e) => return Err(e.into()),
        };
        let (customer, filter) = match prepared {
            Ok(p) => p,
            Err(reason) => {
                if let Some(job_id) = job_id {
                    self.finish_job_alone(job_id, false, None, Some(&reason))
                        .await?;
                }
                return Ok(Err(reason));
            }
        };
        // A filter without a SQL form is evaluated over the profiles before the transaction
        // (the profiles of one generation do not change).
        let keys: Vec<String> = match &filter.predicate {
            Some(_) => Vec::new(),
            None => {
                let query = ItemQuery {
                    filter: Some(filter.clone()),
                    ..ItemQuery::default()
                };
                let kept = self.store().items_kept(&customer, &query).await?;
                kept.into_iter().map(|(key, _)| key).collect()
            }
        };
        let members = match &filter.predicate {
            Some(predicate) => Members::Matching(predicate),
            None => Members::Keys(&keys),
        };
        let now = super::now();
        let mut tx = self.store().begin().await?;
        let count = Store::compute_segment(&mut tx, &segment.id, &customer, members, now).await?;
        let event = DomainEvent::new(
            instance_id,
            EventKind::SegmentRefreshed {
                segment_id: segment.id.clone(),
                segment_name: segment.name.clone(),
                previous_count: segment.member_count,
                current_count: count,
            },
        );
        Store::record_event(&mut tx, &event).await?;
        if let Some(job_id) = job_id {
            let result = json!({"segmentId": segment.id, "memberCount": count, "previousCount": segment.member_count});
            Store::finish_job(&mut tx, job_id, true, Some(&result), None).await?;
        }
        self.store().commit(tx).await?;
        self.events_committed();
        Ok(Ok(count))
    }

    pub async fn segment_members(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        segment_id: &str,
        top: Option<i64>,
        skip: Option<i64>,
    ) -> EngineResult<MembersPage> {
        self.segment(tenant, instance_id, segment_id).await?;
        let top = top.unwrap_or(DEFAULT_TOP);
        if !(1..=MAX_TOP).contains(&top) {
            return Err(EngineError::Invalid(format!(
                "invalid $top: {top}; it must be between 1 and {MAX_TOP}"
            )));
        }
        let skip = skip.unwrap_or(0);
        if skip < 0 {
            return Err(EngineError::Invalid(
                "invalid $skip: it must not be negative".into(),
            ));
        }
        let customer = match self.store().entity(instance_id, CUSTOMER_ENTITY).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => {
                return Ok(MembersPage {
                    items: vec![],
                    next_skip: None,
                    top,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let mut rows = self
            .store()
            .segment_members(segment_id, &customer, top + 1, skip)
            .await?;
        let has_more = rows.len() as i64 > top;
        rows.truncate(top as usize);
        Ok(MembersPage {
            items: rows
                .iter()
                .map(|d| serde_json::from_str(d).unwrap_or(Value::Null))
                .collect(),
            next_skip: has_more.then_some(skip + top),
            top,
        })
    }
}
