//! Running unification: reading the mapped source entities, handing their records to the
//! entity-resolution algorithm ([`super::entity_resolution`]) and writing its profiles as the
//! next generation of the `Customer` entity, with the configuration's validation and storage.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::column_types::{ColumnType, TextColumn};
use super::entities::CUSTOMER_ENTITY;
pub use super::entity_resolution::UnificationConfig;
use super::entity_resolution::{self as resolution, CUSTOMER_ID};
use super::jobs::{Job, JobKind};
use super::schema_inference::SchemaBuilder;
use super::{Engine, EngineError, EngineResult, TenantId};
use crate::store::{Store, StoreError};
use crate::triggers::{DomainEvent, EventKind};

const PAGE: i64 = 10_000;
const BATCH: usize = 5_000;

/// Result of a unification run.
#[derive(Debug, Clone, Copy)]
pub struct UnificationStats {
    pub source_records: u64,
    pub unified_profiles: u64,
    pub matched_records: u64,
}

/// Fields of an item that can carry its last-modified time (for the `mostRecent` policy).
const TIMESTAMP_FIELDS: [&str; 4] = ["updatedAt", "modifiedOn", "lastModified", "UpdatedAt"];

/// What `PreviewUnification` answers: the counts a run would give, what each rule did, and
/// pairs near each scored rule's threshold.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnificationPreview {
    /// Source records read.
    pub source_records: u64,
    /// Profiles a run would build.
    pub unified_profiles: u64,
    /// Records in profiles of two or more.
    pub matched_records: u64,
    /// Per rule, in configuration order (deterministic rules first): pairs compared and
    /// matched, records linked, blocks, parameters.
    pub rules: Vec<resolution::RuleReport>,
    /// Pairs just above and just below each scored rule's threshold.
    pub samples: Vec<resolution::PairSample>,
}

fn check_config(config: &UnificationConfig) -> EngineResult<()> {
    config.validate().map_err(EngineError::Invalid)?;
    if config
        .sources
        .iter()
        .any(|s| s.entity_name == CUSTOMER_ENTITY)
    {
        return Err(EngineError::Invalid(format!(
            "'{CUSTOMER_ENTITY}' is the unification output and cannot be one of its sources"
        )));
    }
    Ok(())
}

impl Engine {
    pub async fn unification_config(
        &self,
        tenant: &TenantId,
        instance_id: &str,
    ) -> EngineResult<UnificationConfig> {
        self.instance(tenant, instance_id).await?;
        match self.store().get_unification_config(instance_id).await? {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| EngineError::Internal(e.to_string()))
            }
            // Never configured: an empty configuration (no sources, no rules), which cannot run.
            None => Ok(UnificationConfig {
                sources: vec![],
                rules: vec![],
                scored_rules: vec![],
                merge: resolution::MergeConfig {
                    policy: resolution::MergePolicy::SourcePriority,
                },
            }),
        }
    }

    pub async fn set_unification_config(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        config: UnificationConfig,
    ) -> EngineResult<UnificationConfig> {
        self.instance(tenant, instance_id).await?;
        check_config(&config)?;
        let text =
            serde_json::to_string(&config).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.store()
            .set_unification_config(instance_id, &text)
            .await?;
        Ok(config)
    }

    /// A dry run: what a configuration's rules would do over the current source items (per
    /// rule pairs compared and matched, records linked, blocks; pairs near each scored rule's
    /// threshold), with nothing written.
    pub async fn preview_unification(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        config: UnificationConfig,
    ) -> EngineResult<UnificationPreview> {
        self.instance(tenant, instance_id).await?;
        check_config(&config)?;
        let (records, _, _) = match self.source_records(instance_id, &config).await? {
            Ok(loaded) => loaded,
            Err(reason) => return Err(EngineError::Conflict(reason)),
        };
        let outcome = tokio::task::spawn_blocking(move || {
            resolution::check_blocking(&config, &records)?;
            Ok::<_, String>(resolution::unify(&config, records))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("unification crashed: {e}")))?
        .map_err(EngineError::Invalid)?;
        Ok(UnificationPreview {
            source_records: outcome.source_records,
            unified_profiles: outcome.unified_profiles,
            matched_records: outcome.matched_records,
            rules: outcome.rules,
            samples: outcome.samples,
        })
    }

    pub async fn run_unification(&self, tenant: &TenantId, instance_id: &str) -> EngineResult<Job> {
        self.instance(tenant, instance_id).await?;
        if self
            .store()
            .get_unification_config(instance_id)
            .await?
            .is_none()
        {
            return Err(EngineError::Conflict(
                "set a unification configuration (SetUnificationConfig) before running unification"
                    .into(),
            ));
        }
        self.enqueue_job(instance_id, JobKind::Unification, None)
            .await
    }

    /// Map: the records of every source entity, read page by page (`Err(reason)`: a source
    /// entity is missing), with the seconds spent reading and mapping.
    async fn source_records(
        &self,
        instance_id: &str,
        config: &UnificationConfig,
    ) -> EngineResult<Result<(Vec<resolution::SourceRecord>, f64, f64), String>> {
        let mut entities = Vec::new();
        for source in &config.sources {
            match self.store().entity(instance_id, &source.entity_name).await {
                Ok(e) => entities.push((source.clone(), e)),
                Err(StoreError::NotFound) => {
                    return Ok(Err(format!(
                        "source entity '{}' does not exist (refresh its data source first)",
                        source.entity_name
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        // A reader task pages through the items while a blocking thread turns the previous
        // page into records, so the database read and the JSON work overlap.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Vec<(String, String)>)>(2);
        let store = self.store().clone();
        let reader_entities: Vec<_> = entities.iter().map(|(_, e)| e.clone()).collect();
        let reader = tokio::spawn(async move {
            let started = std::time::Instant::now();
            for (i, entity) in reader_entities.iter().enumerate() {
                let mut after: Option<String> = None;
                loop {
                    let page = store
                        .items_page_after(entity, after.as_deref(), PAGE)
                        .await?;
                    let Some((last, _)) = page.last() else { break };
                    after = Some(last.clone());
                    if tx.send((i, page)).await.is_err() {
                        return Ok(started.elapsed());
                    }
                }
            }
            Ok::<_, StoreError>(started.elapsed())
        });
        let total_items: i64 = entities.iter().map(|(_, e)| e.item_count).sum();
        let sources: Vec<_> = entities.into_iter().map(|(s, _)| s).collect();
        let mapper = tokio::task::spawn_blocking(move || {
            let mut records =
                Vec::with_capacity(usize::try_from(total_items.min(1 << 24)).unwrap_or(0));
            let mappers: Vec<_> = sources.iter().map(resolution::RecordMapper::new).collect();
            let mut busy = std::time::Duration::ZERO;
            while let Some((i, page)) = rx.blocking_recv() {
                let started = std::time::Instant::now();
                let mapper = &mappers[i];
                for (key, data) in page {
                    let Ok(Value::Object(item)) = serde_json::from_str::<Value>(&data) else {
                        continue;
                    };
                    let updated_at = TIMESTAMP_FIELDS
                        .iter()
                        .find_map(|f| item.get(*f).and_then(resolution::parse_timestamp));
                    records.push(mapper.record(key, item, updated_at));
                }
                busy += started.elapsed();
            }
            (records, busy)
        });
        let read = reader
            .await
            .map_err(|e| EngineError::Internal(format!("reader crashed: {e}")))?;
        let (records, map_busy) = mapper
            .await
            .map_err(|e| EngineError::Internal(format!("mapping crashed: {e}")))?;
        let map_read_secs = read?.as_secs_f64();
        let map_busy_secs = map_busy.as_secs_f64();
        Ok(Ok((records, map_read_secs, map_busy_secs)))
    }

    /// Runs map → match → merge and replaces `Customer` atomically with the event (and the
    /// end of `job_id`, the unification's own job). `Ok(Err(reason))` is a run that failed for a
    /// domain reason. `event_job_id` is the job the event names: the unification job, or the
    /// full refresh job it runs in.
    pub(crate) async fn run_unification_now(
        &self,
        instance_id: &str,
        job_id: Option<&str>,
        event_job_id: &str,
    ) -> EngineResult<Result<UnificationStats, String>> {
        let fail = |reason: String| async move {
            if let Some(job_id) = job_id {
                self.finish_job_alone(job_id, false, None, Some(&reason))
                    .await?;
            }
            Ok::<_, EngineError>(Err(reason))
        };
        let Some(text) = self.store().get_unification_config(instance_id).await? else {
            return fail("no unification configuration is set".into()).await;
        };
        let config: UnificationConfig =
            serde_json::from_str(&text).map_err(|e| EngineError::Internal(e.to_string()))?;

        // Map: read every source entity page by page.
        let t_map = std::time::Instant::now();
        let (records, map_read_secs, map_busy_secs) =
            match self.source_records(instance_id, &config).await? {
                Ok(loaded) => loaded,
                Err(reason) => return fail(reason).await,
            };

        let map_secs = t_map.elapsed().as_secs_f64();
        // Match and merge on a blocking thread (CPU-bound).
        let t_unify = std::time::Instant::now();
        let cfg = config.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            resolution::check_blocking(&cfg, &records)?;
            Ok::<_, String>(resolution::unify(&cfg, records))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("unification crashed: {e}")))?;
        let mut outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => return fail(reason).await,
        };
        let rule_reports = std::mem::take(&mut outcome.rules);
        let stats = UnificationStats {
            source_records: outcome.source_records,
            unified_profiles: outcome.unified_profiles,
            matched_records: outcome.matched_records,
        };

        let unify_secs = t_unify.elapsed().as_secs_f64();
        // Stage the new Customer generation.
        let t_stage = std::time::Instant::now();
        let entity = self
            .store()
            .ensure_entity(instance_id, CUSTOMER_ENTITY, "unified", CUSTOMER_ID)
            .await?;
        let generation = self.store().begin_generation(&entity).await?;
        // A blocking thread builds the items' JSON while this task writes the previous batch.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, String)>>(2);
        let builder = tokio::task::spawn_blocking(move || {
            let types = profile_column_types(&outcome.profiles);
            let mut schema = SchemaBuilder::with_key(CUSTOMER_ID);
            let mut batch = Vec::with_capacity(BATCH);
            for profile in outcome.profiles {
                let mut item = Map::new();
                item.insert(CUSTOMER_ID.into(), json!(profile.customer_id));
                for (field, value) in profile.fields {
                    let typed = convert_profile_value(&types, &field, value);
                    item.insert(field, typed);
                }
                item.insert("sources".into(), json!(profile.sources));
                item.insert("matchedBy".into(), json!(profile.matched_by));
                if let Some(weight) = profile.match_weight {
                    item.insert("matchWeight".into(), json!(weight));
                }
                schema.observe(&item);
                let text =
                    serde_json::to_string(&Value::Object(item)).expect("JSON values serialize");
                batch.push((profile.customer_id, text));
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.blocking_send(full).is_err() {
                        return schema.finish();
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            schema.finish()
        });
        let mut write_error = None;
        while let Some(batch) = rx.recv().await {
            if let Err(e) = self.store().stage_items(entity.id, generation, batch).await {
                write_error = Some(e);
                rx.close();
                break;
            }
        }
        drop(rx);
        let schema = builder
            .await
            .map_err(|e| EngineError::Internal(format!("staging crashed: {e}")))?;
        if let Some(e) = write_error {
            let _ = self.store().drop_generation(entity.id, generation).await;
            return Err(e.into());
        }
        let stage_secs = t_stage.elapsed().as_secs_f64();
        let completed_at = super::now();
        let result = json!({
            "sourceRecords": stats.source_records,
            "unifiedProfiles": stats.unified_profiles,
            "matchedRecords": stats.matched_records,
            "rules": rule_reports,
        });
        let mut tx = self.store().begin().await?;
        Store::switch_generation(
            &mut tx,
            entity.id,
            generation,
            stats.unified_profiles as i64,
            CUSTOMER_ID,
            &schema,
        )
        .await?;
        let event = DomainEvent::new(
            instance_id,
            EventKind::UnificationCompleted {
                job_id: event_job_id.to_string(),
                source_records: stats.source_records,
                unified_profiles: stats.unified_profiles,
                matched_records: stats.matched_records,
                completed_at,
            },
        );
        Store::record_event(&mut tx, &event).await?;
        if let Some(job_id) = job_id {
            Store::finish_job(&mut tx, job_id, true, Some(&result), None).await?;
        }
        self.store().commit(tx).await?;
        self.events_committed();
        let t_drop = std::time::Instant::now();
        self.store()
            .drop_generation(entity.id, entity.generation)
            .await?;
        tracing::info!(
            records = stats.source_records,
            profiles = stats.unified_profiles,
            map_secs,
            map_read_secs,
            map_busy_secs,
            unify_secs,
            stage_secs,
            drop_old_secs = t_drop.elapsed().as_secs_f64(),
            "unification finished"
        );
        Ok(Ok(stats))
    }
}

/// Merged values are text; each field gets one type over all profiles (the rule CSV columns
/// follow), so segment filters such as `spend gt 100` compare numbers.
fn profile_column_types(profiles: &[resolution::Profile]) -> HashMap<String, ColumnType> {
    let mut columns: HashMap<&str, TextColumn> = HashMap::new();
    for profile in profiles {
        for (field, value) in &profile.fields {
            if let Value::String(text) = value {
                columns.entry(field.as_str()).or_default().observe(text);
            }
        }
    }
    columns
        .into_iter()
        .filter_map(|(field, column)| Some((field.to_owned(), column.decide()?)))
        .collect()
}

/// A merged value converted by its field's type; empty text and non-text values stay as they are.
fn convert_profile_value(types: &HashMap<String, ColumnType>, field: &str, value: Value) -> Value {
    match (&value, types.get(field)) {
        (Value::String(text), Some(t)) if !text.is_empty() => t.convert(text),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: &str, fields: Value) -> resolution::Profile {
        resolution::Profile {
            customer_id: id.into(),
            fields: fields.as_object().unwrap().clone(),
            sources: vec![],
            matched_by: vec![],
            match_weight: None,
        }
    }

    #[test]
    fn profile_fields_are_typed_as_columns() {
        let profiles = [
            profile(
                "a",
                json!({"postcode":"4129","spend":"10","rate":"1","vip":"true","since":"2024-01-31","note":""}),
            ),
            profile(
                "b",
                json!({"postcode":"0812","spend":"250","rate":"0.5","vip":"false","since":"2023-05-02"}),
            ),
        ];
        let types = profile_column_types(&profiles);
        assert_eq!(types["postcode"], ColumnType::String);
        assert_eq!(types["spend"], ColumnType::Integer);
        assert_eq!(types["rate"], ColumnType::Number);
        assert_eq!(types["vip"], ColumnType::Boolean);
        assert_eq!(types["since"], ColumnType::Date);
        assert!(!types.contains_key("note"));
        let convert = |f: &str, v: Value| convert_profile_value(&types, f, v);
        assert_eq!(convert("postcode", json!("4129")), json!("4129"));
        assert_eq!(convert("spend", json!("250")), json!(250));
        assert_eq!(convert("rate", json!("1")), json!(1));
        assert_eq!(convert("rate", json!("0.5")), json!(0.5));
        assert_eq!(convert("vip", json!("true")), json!(true));
        assert_eq!(convert("since", json!("2024-01-31")), json!("2024-01-31"));
        assert_eq!(convert("note", json!("")), json!(""));
        assert_eq!(convert("spend", json!("")), json!(""));
    }
}
