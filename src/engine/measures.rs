//! Business measures: an aggregate of a field of an entity, with an optional filter.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::entities::parse_filter_for;
use super::jobs::{Job, JobKind};
use super::{not_found, odata, parse_name, Engine, EngineError, EngineResult, TenantId};
use crate::item_query::{Aggregate, Filter, ItemQuery};
use crate::store::measures::MeasureRecord;
use crate::store::{Store, StoreError};
use crate::triggers::{DomainEvent, EventKind};

/// A business measure and its last computed value.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measure {
    /// Unique identifier of the measure.
    pub measure_id: String,
    /// Display name.
    pub name: String,
    /// The entity aggregated over.
    #[schema(extensions(("x-ms-summary" = json!("Entity name"))))]
    pub entity_name: String,
    /// count, sum, avg, min, max or distinctCount.
    pub aggregate: Aggregate,
    /// The aggregated field (optional for count).
    pub field: Option<String>,
    /// Optional OData filter over the entity's items.
    pub filter: Option<String>,
    /// Value at the last refresh (absent before it, or when no item had a value).
    pub value: Option<f64>,
    /// When the measure was last refreshed.
    #[schema(extensions(("x-ms-summary" = json!("Last refreshed at"))))]
    pub last_refreshed_at: Option<DateTime<Utc>>,
    /// When the measure was created.
    #[schema(extensions(("x-ms-summary" = json!("Created at"))))]
    pub created_at: DateTime<Utc>,
}

impl From<MeasureRecord> for Measure {
    fn from(r: MeasureRecord) -> Self {
        Self {
            aggregate: Aggregate::parse(&r.aggregate).unwrap_or(Aggregate::Count),
            measure_id: r.id,
            name: r.name,
            entity_name: r.entity_name,
            field: r.field,
            filter: r.filter,
            value: r.value,
            last_refreshed_at: r.last_refreshed_at,
            created_at: r.created_at,
        }
    }
}

/// Input of `CreateMeasure`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMeasure {
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The entity to aggregate over.
    #[schema(min_length = 1, extensions(("x-ms-summary" = json!("Entity name"))))]
    pub entity_name: String,
    /// count, sum, avg, min, max or distinctCount.
    pub aggregate: Aggregate,
    /// The field to aggregate (required except for count).
    #[serde(default)]
    pub field: Option<String>,
    /// Optional OData filter over the entity's items.
    #[serde(default)]
    pub filter: Option<String>,
}

impl Engine {
    pub async fn create_measure(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        input: NewMeasure,
    ) -> EngineResult<Measure> {
        self.instance(tenant, instance_id).await?;
        let name = parse_name("name", &input.name)?;
        let entity_name = parse_name("entityName", &input.entity_name)?;
        let field = input
            .field
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from);
        if field.is_none() && input.aggregate != Aggregate::Count {
            return Err(EngineError::Invalid(format!(
                "aggregate '{}' needs a field",
                input.aggregate.as_str()
            )));
        }
        if let Some(f) = &field {
            if !f
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(EngineError::Invalid(format!(
                    "field '{f}' is not a valid field name"
                )));
            }
        }
        let filter = input
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from);
        if let Some(f) = &filter {
            odata::check_filter_syntax(f)
                .map_err(|e| EngineError::Invalid(format!("invalid filter: {e}")))?;
        }
        let rec = MeasureRecord {
            id: uuid::Uuid::new_v4().to_string(),
            instance_id: instance_id.into(),
            name,
            entity_name,
            aggregate: input.aggregate.as_str().into(),
            field,
            filter,
            value: None,
            last_refreshed_at: None,
            created_at: super::now(),
        };
        self.store().insert_measure(&rec).await?;
        Ok(rec.into())
    }

    pub async fn list_measures(
        &self,
        tenant: &TenantId,
        instance_id: &str,
    ) -> EngineResult<Vec<Measure>> {
        self.instance(tenant, instance_id).await?;
        Ok(self
            .store()
            .list_measures(instance_id)
            .await?
            .into_iter()
            .map(Measure::from)
            .collect())
    }

    pub async fn measure(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        measure_id: &str,
    ) -> EngineResult<Measure> {
        self.instance(tenant, instance_id).await?;
        self.store()
            .get_measure(instance_id, measure_id)
            .await
            .map(Measure::from)
            .map_err(|e| not_found(e, "measure", measure_id))
    }

    pub async fn refresh_measure(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        measure_id: &str,
    ) -> EngineResult<Job> {
        self.measure(tenant, instance_id, measure_id).await?;
        self.enqueue_job(instance_id, JobKind::MeasureRefresh, Some(measure_id))
            .await
    }

    /// Recomputes the value; commits it with the event (and the job's end).
    pub(crate) async fn refresh_measure_now(
        &self,
        instance_id: &str,
        measure_id: &str,
        job_id: Option<&str>,
    ) -> EngineResult<Result<Option<f64>, String>> {
        let measure = self
            .store()
            .get_measure(instance_id, measure_id)
            .await
            .map_err(|e| not_found(e, "measure", measure_id))?;
        let entity = match self.store().entity(instance_id, &measure.entity_name).await {
            Ok(e) => Ok(e),
            Err(StoreError::NotFound) => Err(format!(
                "entity '{}' does not exist (yet)",
                measure.entity_name
            )),
            Err(e) => return Err(e.into()),
        };
        let prepared = entity.and_then(|entity| {
            let filter = match &measure.filter {
                Some(f) => Some(parse_filter_for(&entity, f, "filter").map_err(|e| e.to_string())?),
                None => None,
            };
            Ok((entity, filter))
        });
        let (entity, filter) = match prepared {
            Ok(p) => p,
            Err(reason) => {
                if let Some(job_id) = job_id {
                    self.finish_job_alone(job_id, false, None, Some(&reason))
                        .await?;
                }
                return Ok(Err(reason));
            }
        };
        let aggregate = Aggregate::parse(&measure.aggregate).unwrap_or(Aggregate::Count);
        let field = measure.field.as_deref();
        let value = match &filter {
            Some(Filter {
                predicate: None, ..
            }) => {
                // No SQL form: the filter is evaluated over the items, then aggregated here.
                let query = ItemQuery {
                    filter: filter.clone(),
                    ..ItemQuery::default()
                };
                let kept = self.store().items_kept(&entity, &query).await?;
                aggregate.over(field, kept.iter().map(|(_, text)| text.as_str()))
            }
            _ => {
                let predicate = filter.as_ref().and_then(|f| f.predicate.as_ref());
                self.store()
                    .aggregate(&entity, aggregate, field, predicate)
                    .await?
            }
        };
        let now = super::now();
        let mut tx = self.store().begin().await?;
        Store::set_measure_value(&mut tx, &measure.id, value, now).await?;
        let event = DomainEvent::new(
            instance_id,
            EventKind::MeasureRefreshed {
                measure_id: measure.id.clone(),
                measure_name: measure.name.clone(),
                previous_value: measure.value,
                current_value: value,
            },
        );
        Store::record_event(&mut tx, &event).await?;
        if let Some(job_id) = job_id {
            let result =
                json!({"measureId": measure.id, "value": value, "previousValue": measure.value});
            Store::finish_job(&mut tx, job_id, true, Some(&result), None).await?;
        }
        self.store().commit(tx).await?;
        self.events_committed();
        Ok(Ok(value))
    }
}
