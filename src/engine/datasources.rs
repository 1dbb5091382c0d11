//! Data sources and their refresh: a streamed parse into a staged generation of the entity's
//! items, switched in atomically with the outcome and its event.

use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::entities::CUSTOMER_ENTITY;
use super::ingest::{self, Format, ParseFailure};
use super::jobs::{Job, JobKind};
use super::schema_inference::SchemaBuilder;
use super::{not_found, parse_name, Engine, EngineError, EngineResult, TenantId};
use crate::store::datasources::DataSourceRecord;
use crate::store::Store;
use crate::triggers::{DomainEvent, EventKind};

/// Rows per staged batch (one transaction each).
const BATCH_ROWS: usize = 5_000;

/// File format of a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    Csv,
    Jsonl,
}

impl From<DataFormat> for Format {
    fn from(f: DataFormat) -> Self {
        match f {
            DataFormat::Csv => Format::Csv,
            DataFormat::Jsonl => Format::Jsonl,
        }
    }
}

/// The outcome of the last refresh of a data source.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshStatus {
    /// succeeded or failed.
    pub status: String,
    /// Rows ingested by the refresh (0 when it failed).
    #[schema(extensions(("x-ms-summary" = json!("Rows ingested"))))]
    pub rows_ingested: i64,
    /// Why the refresh failed (with the line number for malformed rows).
    pub error: Option<String>,
    /// When the refresh started.
    #[schema(extensions(("x-ms-summary" = json!("Started at"))))]
    pub started_at: Option<DateTime<Utc>>,
    /// When the refresh completed.
    #[schema(extensions(("x-ms-summary" = json!("Completed at"))))]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A data source: a CSV or JSON Lines file ingested into an entity on refresh.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Unique identifier of the data source.
    #[schema(extensions(("x-ms-summary" = json!("Data source ID"))))]
    pub data_source_id: String,
    /// Display name.
    pub name: String,
    /// The entity its rows are ingested into.
    #[schema(extensions(("x-ms-summary" = json!("Entity name"))))]
    pub entity_name: String,
    /// csv or jsonl.
    pub format: DataFormat,
    /// The field that identifies a row.
    #[schema(extensions(("x-ms-summary" = json!("Key field"))))]
    pub key_field: String,
    /// Server-side file path relative to the tenant's folder (files/<tenant>/ of the data directory), when the data is not inline.
    pub path: Option<String>,
    /// Whether the data is stored inline.
    #[schema(extensions(("x-ms-summary" = json!("Has inline content"))))]
    pub has_content: bool,
    /// When the data source was created.
    #[schema(extensions(("x-ms-summary" = json!("Created at"))))]
    pub created_at: DateTime<Utc>,
    /// The last refresh; absent before the first one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(extensions(("x-ms-summary" = json!("Last refresh"))))]
    pub last_refresh: Option<RefreshStatus>,
}

impl From<DataSourceRecord> for DataSource {
    fn from(r: DataSourceRecord) -> Self {
        let last_refresh = r.last_status.clone().map(|status| RefreshStatus {
            status,
            rows_ingested: r.last_rows.unwrap_or(0),
            error: r.last_error.clone(),
            started_at: r.last_started_at,
            completed_at: r.last_completed_at,
        });
        Self {
            data_source_id: r.id,
            name: r.name,
            entity_name: r.entity_name,
            format: if r.format == "jsonl" {
                DataFormat::Jsonl
            } else {
                DataFormat::Csv
            },
            key_field: r.key_field,
            path: r.path,
            has_content: r.content.is_some(),
            created_at: r.created_at,
            last_refresh,
        }
    }
}

/// Input of `CreateDataSource`: inline `content` or a server-side `path`, not both.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDataSource {
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The entity to ingest into (letters, digits and underscores, starting with a letter).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z][A-Za-z0-9_]*$", extensions(("x-ms-summary" = json!("Entity name"))))]
    pub entity_name: String,
    /// csv or jsonl.
    pub format: DataFormat,
    /// The field (CSV column) that identifies a row.
    #[schema(min_length = 1, max_length = 200, extensions(("x-ms-summary" = json!("Key field"))))]
    pub key_field: String,
    /// The file's content, inline.
    #[serde(default)]
    pub content: Option<String>,
    /// A file path relative to the tenant's folder (files/<tenant>/ of the service's data directory).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1024, extensions(("x-ms-visibility" = json!("advanced"))))]
    pub path: Option<String>,
}

/// Checks an entity name: `^[A-Za-z][A-Za-z0-9_]{0,63}$`, not the unified `Customer` entity.
pub fn parse_entity_name(name: &str) -> EngineResult<String> {
    let ok = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(EngineError::Invalid(format!(
            "entityName '{name}' must start with a letter and contain only letters, digits and underscores (at most 64)"
        )));
    }
    if name == CUSTOMER_ENTITY {
        return Err(EngineError::Invalid(format!(
            "entityName '{CUSTOMER_ENTITY}' is reserved for unified profiles"
        )));
    }
    Ok(name.to_string())
}

/// A relative path that stays inside the data directory (checked lexically here and again,
/// after resolving symlinks, at refresh time).
fn parse_relative_path(path: &str) -> EngineResult<String> {
    let p = Path::new(path);
    let refused = || {
        EngineError::Invalid(format!(
            "path '{path}' must be relative to the tenant's folder of the data directory and stay inside it"
        ))
    };
    if path.trim().is_empty() || path.chars().count() > 1024 || path.contains('\0') {
        return Err(refused());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(refused()),
        }
    }
    Ok(path.to_string())
}

/// The folder of the data directory whose files a tenant's data sources may read:
/// `files/<tenant>/` (a tenant name that is not a plain file name is hex-encoded).
pub fn tenant_files(data_dir: &Path, tenant: &str) -> PathBuf {
    let plain = !tenant.is_empty()
        && !tenant.starts_with('.')
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let folder = if plain {
        tenant.to_string()
    } else {
        tenant.bytes().map(|b| format!("{b:02x}")).collect()
    };
    data_dir.join("files").join(folder)
}

/// Resolves a stored relative path inside the tenant's folder `root`. A missing file, one whose
/// real location is outside the folder, a directory and the service's own database files get
/// the same answer, so nothing tells another tenant's files from missing ones.
fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let not_found = || {
        // With several replicas the refresh runs on any of them: say where it looked.
        format!(
            "the file '{rel}' is not in this tenant's folder ({}) of the data directory of the \
             server that ran this refresh; with several replicas, --data-dir must be storage \
             every replica sees, or upload the content inline",
            root.display()
        )
    };
    let root = root.canonicalize().map_err(|_| not_found())?;
    let real = root.join(rel).canonicalize().map_err(|_| not_found())?;
    if !real.starts_with(&root) || !real.is_file() || is_database_file(&real) {
        return Err(not_found());
    }
    Ok(real)
}

/// An SQLite database (by its header, whatever its name) or its journal, WAL or shared-memory
/// file (by the suffixes SQLite gives them).
fn is_database_file(path: &Path) -> bool {
    use std::io::Read;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if [
        ".db-wal",
        ".db-shm",
        ".db-journal",
        "-wal",
        "-shm",
        "-journal",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
    {
        return true;
    }
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"SQLite format 3\0")
}

impl Engine {
    pub async fn create_data_source(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        input: NewDataSource,
    ) -> EngineResult<DataSource> {
        self.instance(tenant, instance_id).await?;
        let name = parse_name("name", &input.name)?;
        let entity_name = parse_entity_name(input.entity_name.trim())?;
        let key_field = parse_name("keyField", &input.key_field)?;
        let path = match (&input.content, &input.path) {
            (Some(_), Some(_)) | (None, None) => return Err(EngineError::Invalid(
                "give exactly one of content (inline data) and path (a file in the data directory)"
                    .into(),
            )),
            (None, Some(p)) => Some(parse_relative_path(p)?),
            (Some(content), None) if content.contains('\0') => {
                return Err(EngineError::Invalid(format!(
                    "content: {}",
                    crate::engine::ingest::NUL_REFUSED
                )))
            }
            (Some(_), None) => None,
        };
        if let Ok(existing) = self.store().entity(instance_id, &entity_name).await {
            if existing.kind == "unified" {
                return Err(EngineError::Invalid(format!(
                    "entity '{entity_name}' is produced by unification"
                )));
            }
        }
        let rec = DataSourceRecord {
            id: uuid::Uuid::new_v4().to_string(),
            instance_id: instance_id.to_string(),
            name,
            entity_name,
            format: match input.format {
                DataFormat::Csv => "csv",
                DataFormat::Jsonl => "jsonl",
            }
            .into(),
            key_field,
            content: input.content,
            path,
            created_at: super::now(),
            last_status: None,
            last_rows: None,
            last_error: None,
            last_started_at: None,
            last_completed_at: None,
        };
        self.store().insert_data_source(&rec).await?;
        Ok(rec.into())
    }

    pub async fn list_data_sources(
        &self,
        tenant: &TenantId,
        instance_id: &str,
    ) -> EngineResult<Vec<DataSource>> {
        self.instance(tenant, instance_id).await?;
        Ok(self
            .store()
            .list_data_sources(instance_id)
            .await?
            .into_iter()
            .map(DataSource::from)
            .collect())
    }

    pub async fn data_source(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        data_source_id: &str,
    ) -> EngineResult<DataSource> {
        self.instance(tenant, instance_id).await?;
        self.store()
            .get_data_source(instance_id, data_source_id)
            .await
            .map(DataSource::from)
            .map_err(|e| not_found(e, "data source", data_source_id))
    }

    /// Queues a refresh job.
    pub async fn refresh_data_source(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        data_source_id: &str,
    ) -> EngineResult<Job> {
        self.data_source(tenant, instance_id, data_source_id)
            .await?;
        self.enqueue_job(
            instance_id,
            JobKind::DataSourceRefresh,
            Some(data_source_id),
        )
        .await
    }

    /// Runs a refresh now. Returns whether it succeeded and its rows or error. The outcome, the
    /// event and (with `job_id`) the job's end commit in one transaction.
    pub(crate) async fn refresh_data_source_now(
        &self,
        instance_id: &str,
        data_source_id: &str,
        job_id: Option<&str>,
    ) -> EngineResult<Result<u64, String>> {
        let source = self
            .store()
            .get_data_source(instance_id, data_source_id)
            .await
            .map_err(|e| not_found(e, "data source", data_source_id))?;
        let started_at = super::now();
        let outcome = self.ingest(&source).await;
        let completed_at = super::now();
        let (succeeded, rows, error) = match &outcome {
            Ok((rows, _, _)) => (true, *rows, None),
            Err(e) => (false, 0, Some(e.clone())),
        };
        let event = DomainEvent::new(
            instance_id,
            EventKind::DataSourceRefreshed {
                data_source_id: source.id.clone(),
                data_source_name: source.name.clone(),
                succeeded,
                rows_ingested: rows,
                error: error.clone(),
                started_at,
                completed_at,
            },
        );
        let result = json!({
            "dataSourceId": source.id,
            "status": if succeeded { "succeeded" } else { "failed" },
            "rowsIngested": rows,
        });
        // Read before taking the write lock: a task holding it asks for no other connection.
        let entity = match &outcome {
            Ok(_) => Some(
                self.store()
                    .entity(instance_id, &source.entity_name)
                    .await?,
            ),
            Err(_) => None,
        };
        let mut tx = self.store().begin().await?;
        let mut replaced = None;
        if let (Ok((rows, staged, schema)), Some(entity)) = (&outcome, entity) {
            Store::switch_generation(
                &mut tx,
                entity.id,
                *staged,
                *rows as i64,
                &source.key_field,
                schema,
            )
            .await?;
            replaced = Some((entity.id, entity.generation));
        }
        Store::record_data_source_refresh(
            &mut tx,
            &source.id,
            succeeded,
            rows as i64,
            error.as_deref(),
            started_at,
            completed_at,
        )
        .await?;
        Store::record_event(&mut tx, &event).await?;
        if let Some(job_id) = job_id {
            Store::finish_job(&mut tx, job_id, succeeded, Some(&result), error.as_deref()).await?;
        }
        self.store().commit(tx).await?;
        self.events_committed();
        if let Some((entity_id, old)) = replaced {
            self.store().drop_generation(entity_id, old).await?;
        }
        Ok(outcome.map(|(rows, _, _)| rows))
    }

    /// Parses the source into a staged generation. On failure the staged rows are removed and
    /// the current items stay as they were.
    async fn ingest(
        &self,
        source: &DataSourceRecord,
    ) -> Result<(u64, i64, serde_json::Value), String> {
        let entity = self
            .store()
            .ensure_entity(
                &source.instance_id,
                &source.entity_name,
                "source",
                &source.key_field,
            )
            .await
            .map_err(|e| e.to_string())?;
        let generation = self
            .store()
            .begin_generation(&entity)
            .await
            .map_err(|e| e.to_string())?;
        // The parse reads the input twice (types first, then rows), so it gets an opener.
        let open: Box<dyn FnMut() -> std::io::Result<Box<dyn std::io::Read + Send>> + Send> =
            match (&source.content, &source.path) {
                (Some(content), _) => {
                    let bytes: std::sync::Arc<[u8]> = content.as_bytes().into();
                    Box::new(move || Ok(Box::new(std::io::Cursor::new(bytes.clone())) as _))
                }
                (None, Some(rel)) => {
                    let tenant = self
                        .store()
                        .instance_tenant(&source.instance_id)
                        .await
                        .map_err(|e| e.to_string())?;
                    let path = resolve_inside(&tenant_files(self.data_dir(), &tenant), rel)?;
                    // Opened here once so a missing file is reported as before.
                    let mut first = Some(
                        std::fs::File::open(&path)
                            .map_err(|e| format!("cannot open '{rel}': {e}"))?,
                    );
                    Box::new(move || {
                        let file = match first.take() {
                            Some(file) => file,
                            None => std::fs::File::open(&path)?,
                        };
                        Ok(Box::new(file) as _)
                    })
                }
                (None, None) => return Err("the data source has neither content nor path".into()),
            };
        let format = if source.format == "jsonl" {
            Format::Jsonl
        } else {
            Format::Csv
        };
        let key_field = source.key_field.clone();
        // Parse on a blocking thread; batches flow through a small channel (back-pressure keeps
        // memory bounded) to this task, which writes them.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, String)>>(2);
        let parser = tokio::task::spawn_blocking(move || {
            let mut schema = SchemaBuilder::with_key(&key_field);
            let parsed = ingest::parse(open, format, &key_field, BATCH_ROWS, |rows| {
                let batch = rows
                    .into_iter()
                    .map(|row| {
                        schema.observe(&row.data);
                        (row.key, serde_json::Value::Object(row.data).to_string())
                    })
                    .collect();
                tx.blocking_send(batch)
                    .map_err(|_| "writer stopped".to_string())
            });
            (parsed, schema.finish())
        });
        let mut write_error = None;
        while let Some(batch) = rx.recv().await {
            if write_error.is_none() {
                if let Err(e) = self.store().stage_items(entity.id, generation, batch).await {
                    write_error = Some(e.to_string());
                    rx.close();
                }
            }
        }
        let (parsed, schema) = parser.await.map_err(|e| format!("parser crashed: {e}"))?;
        let result = match (parsed, write_error) {
            (_, Some(e)) => Err(format!("could not store the rows: {e}")),
            (Ok(rows), None) => Ok(rows),
            (Err(ParseFailure::Ingest(e)), None) => Err(e.to_string()),
            (Err(ParseFailure::Sink(e)), None) => Err(e),
        };
        match result {
            Ok(rows) => Ok((rows, generation, schema)),
            Err(e) => {
                let _ = self.store().drop_generation(entity.id, generation).await;
                Err(e)
            }
        }
    }
}
