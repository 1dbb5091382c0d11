//! Unification: map → match → merge source records into `Customer` profiles.
//!
//! * **Map**: [`map_item`] applies a source's `fields` (profile field → source column) to an item.
//! * **Match**: rules are ORed, the conditions of a rule ANDed; matching records are clustered
//!   transitively with a union-find. Nothing compares all pairs:
//!   - every rule *blocks* on the normalized values of its exact conditions (records sharing all
//!     of them form a block); a block of a rule without fuzzy conditions is unioned as a whole;
//!   - a block of a rule with fuzzy conditions is compared pairwise when it has at most
//!     [`MatchLimits::max_pairwise_block`] records, otherwise by a two-pass *sorted
//!     neighbourhood*: the block is sorted by the fuzzy values and each record is compared with
//!     the next [`MatchLimits::window`] records, once in forward order and once sorted by the
//!     values read backwards (so a typo in the first characters is still caught via the suffix);
//!   - a rule with only fuzzy conditions is one block of all records, hence sorted neighbourhood.
//!
//!   Trade-off: two records that satisfy a fuzzy rule but differ near both their start and their
//!   end, inside a large block, can be missed; in exchange the work is at most about
//!   `n · (2 · window + max_pairwise_block / 2)` comparisons per rule whatever the data, and each
//!   comparison looks at no more than [`MAX_FUZZY_CHARS`] characters of a value.
//!   Similarity is `strsim::jaro_winkler` on the normalized values (computed by an equivalent
//!   allocation-free routine for short ASCII values, after a cheap upper bound that skips most
//!   non-matches). Records with an empty normalized value in any field of a rule never match by
//!   that rule.
//!
//!   Feature extraction, fuzzy blocks and merging run on up to [`MatchLimits::threads`] threads
//!   for large inputs; the clusters are the transitive closure of the matching pairs either way,
//!   so the result does not depend on the number of threads.
//! * **Merge**: one [`Profile`] per cluster; every profile field is taken from the first record,
//!   in the order the merge policy defines, that has a non-empty value for it.
//!
//! The result does not depend on the input order: records are put in canonical order
//! (entity name, key) first, and the `CustomerId` is derived from the cluster's smallest source
//! reference (see [`customer_id`]), so the same cluster gets the same id on every run.

pub use super::comparators::{Comparator, Normalization};
pub use super::scored_rules::RuleReport;
use super::scored_rules::{self, Comparison, PairwiseRule, ScoredRule};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Name of the profile key the caller adds; no source may map a profile field with this name.
pub const CUSTOMER_ID: &str = "CustomerId";

/// At most this many characters of a value take part in a fuzzy comparison (bounds the cost of a
/// Jaro-Winkler comparison, which is quadratic in the length).
pub const MAX_FUZZY_CHARS: usize = 64;

/// At most this many rules: a profile records which of them linked its records.
pub const MAX_RULES: usize = 64;

/// Unification configuration (public contract, camelCase JSON).
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnificationConfig {
    /// Map: the entities that feed the profile and which of their fields become profile fields.
    pub sources: Vec<SourceConfig>,
    /// Match: rules, each a list of conditions that must all hold; rules are combined with or.
    pub rules: Vec<MatchRule>,
    /// Match: scored (Fellegi–Sunter) rules; a pair matches if any rule, of either list, matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scored_rules: Vec<ScoredRule>,
    /// Merge: how a profile field's value is chosen among the matched records.
    pub merge: MergeConfig,
}

/// One entity feeding the profile.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// The source entity.
    pub entity_name: String,
    /// Profile field → source column.
    pub fields: BTreeMap<String, String>,
    /// Lower wins under the `sourcePriority` merge policy.
    pub priority: i64,
}

#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchRule {
    /// Name of the rule.
    pub name: String,
    /// Conditions that must all hold for two records to match (or `minAgree` of them).
    pub conditions: Vec<MatchCondition>,
    /// "k of n": the rule matches when at least this many conditions hold; needs `blocking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agree: Option<usize>,
    /// Blocking keys (lists of fields): only records equal on all fields of some key are
    /// compared. Default: the fields of the rule's exact conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<Vec<Vec<String>>>,
}

impl MatchRule {
    /// Whether the rule uses what only pairwise evaluation over blocks does (a comparator
    /// other than Jaro-Winkler, cross-field conditions, "k of n" or explicit blocking).
    fn is_pairwise(&self) -> bool {
        self.min_agree.is_some()
            || self.blocking.is_some()
            || self.conditions.iter().any(|c| {
                !c.also_against.is_empty()
                    || !matches!(
                        (c.precision, c.comparator),
                        (_, None)
                            | (Precision::Fuzzy, Some(Comparator::JaroWinkler))
                            | (Precision::Exact, Some(Comparator::Exact))
                    )
            })
    }

    /// The condition as a comparison: it holds when its level is not "different".
    fn comparison(cond: &MatchCondition) -> Comparison {
        let comparator = cond.comparator.unwrap_or(match cond.precision {
            Precision::Exact => Comparator::Exact,
            Precision::Fuzzy => Comparator::JaroWinkler,
        });
        Comparison {
            field: cond.field.clone(),
            also_against: cond.also_against.clone(),
            normalization: cond.normalization,
            comparator,
            levels: if comparator.takes_levels() {
                cond.threshold.into_iter().collect()
            } else {
                Vec::new()
            },
            m: None,
            u: None,
        }
    }

    /// The blocking keys: given, or the fields of the exact conditions as one key.
    fn blocking_keys(&self) -> Vec<Vec<String>> {
        match &self.blocking {
            Some(keys) => keys.clone(),
            None => {
                let key: Vec<String> = self
                    .conditions
                    .iter()
                    .filter(|c| {
                        c.precision == Precision::Exact
                            && c.also_against.is_empty()
                            && c.comparator.is_none_or(|k| k == Comparator::Exact)
                    })
                    .map(|c| c.field.clone())
                    .collect();
                if key.is_empty() {
                    Vec::new()
                } else {
                    vec![key]
                }
            }
        }
    }
}

#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchCondition {
    /// A profile field.
    pub field: String,
    /// How values are normalized before comparing: exact, case-insensitive, whitespace, alphanumeric, email or phone.
    pub normalization: Normalization,
    /// exact, or fuzzy with a Jaro-Winkler threshold.
    pub precision: Precision,
    /// For `fuzzy`: the similarity (jaroWinkler, jaro, tokenSet; in (0, 1]), distance
    /// (levenshtein, damerauLevenshtein), days (date) or tolerance (number) that still holds;
    /// none for soundex and doubleMetaphone. Refused for `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// For `fuzzy`: how values compare (default jaroWinkler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<Comparator>,
    /// Other fields of the other record compared too, swapped (given name and surname
    /// exchanged): the condition also holds when both swapped comparisons do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_against: Vec<String>,
}

#[derive(utoipa::ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Exact,
    Fuzzy,
}

#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeConfig {
    /// sourcePriority, mostRecent or mostComplete.
    pub policy: MergePolicy,
}

#[derive(utoipa::ToSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MergePolicy {
    /// Lower `priority` first, then entity name, then key.
    SourcePriority,
    /// Newest `updated_at` first; records without a timestamp after those with one; ties by
    /// source priority.
    MostRecent,
    /// Records with more non-empty fields first; ties by source priority.
    MostComplete,
}

impl UnificationConfig {
    /// Checks the configuration; the message names the offending source / rule / condition.
    pub fn validate(&self) -> Result<(), String> {
        if self.sources.is_empty() {
            return Err("at least one source is required".into());
        }
        let mut entities = BTreeSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let name = &source.entity_name;
            if name.trim().is_empty() {
                return Err(format!("sources[{i}]: entityName must not be empty"));
            }
            if !entities.insert(name.as_str()) {
                return Err(format!(
                    "sources[{i}]: entity '{name}' is listed more than once"
                ));
            }
            if source.fields.is_empty() {
                return Err(format!(
                    "sources[{i}] ('{name}'): fields must map at least one profile field"
                ));
            }
            for (field, column) in &source.fields {
                if field.trim().is_empty() {
                    return Err(format!(
                        "sources[{i}] ('{name}'): a profile field name is empty"
                    ));
                }
                if field == CUSTOMER_ID {
                    return Err(format!(
                        "sources[{i}] ('{name}'): '{CUSTOMER_ID}' is reserved and cannot be mapped"
                    ));
                }
                if column.trim().is_empty() {
                    return Err(format!(
                        "sources[{i}] ('{name}'): profile field '{field}' is mapped to an empty column name"
                    ));
                }
            }
        }
        let fields = self.profile_fields();
        let mut rule_names = BTreeSet::new();
        for (r, rule) in self.rules.iter().enumerate() {
            let name = &rule.name;
            if name.trim().is_empty() {
                return Err(format!("rules[{r}]: name must not be empty"));
            }
            if !rule_names.insert(name.as_str()) {
                return Err(format!(
                    "rules[{r}]: rule name '{name}' is used more than once"
                ));
            }
            if rule.conditions.is_empty() {
                return Err(format!(
                    "rules[{r}] ('{name}'): at least one condition is required"
                ));
            }
            for (c, cond) in rule.conditions.iter().enumerate() {
                let at = format!("rules[{r}] ('{name}') conditions[{c}]");
                if !fields.contains(cond.field.as_str()) {
                    return Err(format!(
                        "{at}: field '{}' is not a profile field mapped by any source",
                        cond.field
                    ));
                }
                for other in &cond.also_against {
                    if !fields.contains(other.as_str()) {
                        return Err(format!(
                            "{at}: alsoAgainst field '{other}' is not a profile field mapped by any source"
                        ));
                    }
                }
                let comparator = cond.comparator.unwrap_or(Comparator::JaroWinkler);
                match (cond.precision, cond.threshold) {
                    (Precision::Exact, Some(_)) => {
                        return Err(format!("{at}: a threshold applies only to fuzzy precision"))
                    }
                    (Precision::Exact, None) => {
                        if cond.comparator.is_some_and(|c| c != Comparator::Exact) {
                            return Err(format!(
                                "{at}: a comparator applies only to fuzzy precision"
                            ));
                        }
                    }
                    (Precision::Fuzzy, None) if comparator.takes_levels() => {
                        return Err(format!(
                            "{at}: fuzzy precision needs a threshold{}",
                            if comparator.levels_are_similarities() {
                                " in (0, 1]"
                            } else {
                                ""
                            }
                        ))
                    }
                    (Precision::Fuzzy, Some(_)) if !comparator.takes_levels() => {
                        return Err(format!("{at}: {comparator:?} takes no threshold"))
                    }
                    (Precision::Fuzzy, Some(t)) => {
                        if comparator.levels_are_similarities() && !(t > 0.0 && t <= 1.0) {
                            return Err(format!("{at}: threshold must be in (0, 1], got {t}"));
                        }
                        comparator
                            .check_levels(&[t])
                            .map_err(|e| format!("{at}: threshold: {e}"))?;
                    }
                    (Precision::Fuzzy, None) => {}
                }
            }
            if let Some(k) = rule.min_agree {
                if k == 0 || k > rule.conditions.len() {
                    return Err(format!(
                        "rules[{r}] ('{name}'): minAgree must be between 1 and the number of conditions ({})",
                        rule.conditions.len()
                    ));
                }
                if rule.blocking.is_none() {
                    return Err(format!(
                        "rules[{r}] ('{name}'): a rule with minAgree needs blocking keys (no condition is shared by every match)"
                    ));
                }
            }
            if let Some(keys) = &rule.blocking {
                if keys.is_empty() || keys.iter().any(Vec::is_empty) {
                    return Err(format!(
                        "rules[{r}] ('{name}'): blocking needs keys of at least one field each"
                    ));
                }
                if let Some(f) = keys.iter().flatten().find(|f| !fields.contains(f.as_str())) {
                    return Err(format!(
                        "rules[{r}] ('{name}'): blocking field '{f}' is not a profile field mapped by any source"
                    ));
                }
            }
            if rule.is_pairwise() && rule.blocking_keys().is_empty() {
                return Err(format!(
                    "rules[{r}] ('{name}'): this rule needs blocking keys: it has no exact condition to block on"
                ));
            }
        }
        for (r, rule) in self.scored_rules.iter().enumerate() {
            let at = format!("scoredRules[{r}] ('{}')", rule.name);
            if rule.name.trim().is_empty() {
                return Err(format!("scoredRules[{r}]: name must not be empty"));
            }
            if !rule_names.insert(rule.name.as_str()) {
                return Err(format!(
                    "{at}: rule name '{}' is used more than once",
                    rule.name
                ));
            }
            rule.validate(&at, &fields)?;
        }
        if self.rules.len() + self.scored_rules.len() > MAX_RULES {
            return Err(format!(
                "at most {MAX_RULES} rules (deterministic and scored together)"
            ));
        }
        Ok(())
    }

    /// All profile fields mapped by at least one source.
    pub fn profile_fields(&self) -> BTreeSet<&str> {
        self.sources
            .iter()
            .flat_map(|s| s.fields.keys().map(String::as_str))
            .collect()
    }

    /// The source configuration of an entity.
    pub fn source(&self, entity_name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.entity_name == entity_name)
    }
}

/// A source item after mapping, ready for matching.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    pub entity_name: String,
    pub key: String,
    /// Profile field → raw value (already mapped; see [`map_item`]).
    pub fields: BTreeMap<String, String>,
    pub priority: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A unified customer profile.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub customer_id: String,
    /// Merged profile fields (values are the winning records' raw text).
    pub fields: Map<String, Value>,
    /// The cluster's source references, sorted by entity name then key.
    pub sources: Vec<SourceRef>,
    /// The rules that linked the cluster's records (in configuration order, deterministic
    /// rules first); empty for a profile of one record.
    pub matched_by: Vec<String>,
    /// The highest match weight of a scored rule's match inside the cluster, if any.
    pub match_weight: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    pub entity_name: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UnifyOutcome {
    /// Profiles sorted by `customer_id`.
    pub profiles: Vec<Profile>,
    pub source_records: u64,
    pub unified_profiles: u64,
    /// Records in clusters of two or more distinct source references.
    pub matched_records: u64,
    /// What each rule did, deterministic rules first.
    pub rules: Vec<RuleReport>,
    /// Pairs near each scored rule's threshold.
    pub samples: Vec<PairSample>,
}

/// Bounds on fuzzy-matching work (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchLimits {
    /// Blocks up to this size are compared pairwise.
    pub max_pairwise_block: usize,
    /// Sorted-neighbourhood window for larger blocks.
    pub window: usize,
    /// Worker threads for feature extraction, fuzzy matching and merging; 0 = one per available
    /// core (at most 8) from 50,000 records on, else 1. The result is the same for any number.
    pub threads: usize,
}

impl Default for MatchLimits {
    fn default() -> Self {
        MatchLimits {
            max_pairwise_block: 32,
            window: 8,
            threads: 0,
        }
    }
}

/// Applies a source's `fields` to an item: strings as they are, numbers and booleans as their
/// JSON text; missing, `null`, blank strings, arrays and objects are skipped.
pub fn map_item(source: &SourceConfig, item: &Map<String, Value>) -> BTreeMap<String, String> {
    source
        .fields
        .iter()
        .filter_map(|(field, column)| {
            let text = match item.get(column)? {
                Value::String(s) if !s.trim().is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((field.clone(), text))
        })
        .collect()
}

/// [`source_record`] for items the caller no longer needs: strings are moved out of the item,
/// not copied (a column mapped to several profile fields is copied for all but its last use).
/// Build one per source and reuse it for every item.
pub struct RecordMapper<'a> {
    source: &'a SourceConfig,
    /// Per mapped field, in `fields` order: the column is used again by a later field.
    used_again: Vec<bool>,
}

impl<'a> RecordMapper<'a> {
    pub fn new(source: &'a SourceConfig) -> Self {
        let columns: Vec<&String> = source.fields.values().collect();
        let used_again = (0..columns.len())
            .map(|i| columns[i + 1..].contains(&columns[i]))
            .collect();
        RecordMapper { source, used_again }
    }

    /// [`map_item`], consuming the item.
    pub fn map_item(&self, mut item: Map<String, Value>) -> BTreeMap<String, String> {
        // `fields` is sorted, so collecting builds the map without comparisons per insert.
        self.source
            .fields
            .iter()
            .zip(&self.used_again)
            .filter_map(|((field, column), &used_again)| {
                let value = if used_again {
                    item.get(column).cloned()
                } else {
                    item.remove(column)
                };
                let text = match value? {
                    Value::String(s) if !s.trim().is_empty() => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((field.clone(), text))
            })
            .collect()
    }

    pub fn record(
        &self,
        key: String,
        item: Map<String, Value>,
        updated_at: Option<DateTime<Utc>>,
    ) -> SourceRecord {
        SourceRecord {
            entity_name: self.source.entity_name.clone(),
            key,
            fields: self.map_item(item),
            priority: self.source.priority,
            updated_at,
        }
    }
}

/// Builds a [`SourceRecord`] from an item of `source`'s entity.
pub fn source_record(
    source: &SourceConfig,
    key: impl Into<String>,
    item: &Map<String, Value>,
    updated_at: Option<DateTime<Utc>>,
) -> SourceRecord {
    SourceRecord {
        entity_name: source.entity_name.clone(),
        key: key.into(),
        fields: map_item(source, item),
        priority: source.priority,
        updated_at,
    }
}

/// Reads a timestamp from an item value: RFC 3339 (`2024-05-01T10:00:00Z`), a naive date-time
/// (`2024-05-01T10:00:00` / `2024-05-01 10:00:00`, taken as UTC) or a date (midnight UTC).
pub fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let s = value.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The stable CustomerId of a cluster whose smallest source reference (by
/// `entityName + "\u{1f}" + key`) is `entity_name`/`key`: the first 16 bytes of the SHA-256 of
/// that text, formatted as a UUID with version 8 (RFC 9562 custom) and the RFC variant bits.
pub fn customer_id(entity_name: &str, key: &str) -> String {
    format_uuid(&customer_id_bytes(entity_name, key))
}

fn customer_id_bytes(entity_name: &str, key: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(entity_name.as_bytes());
    hasher.update([0x1f]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn format_uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(x >> 4)]));
        id.push(char::from(HEX[usize::from(x & 0x0f)]));
    }
    id
}

/// Runs match and merge with the default [`MatchLimits`].
pub fn unify(config: &UnificationConfig, records: Vec<SourceRecord>) -> UnifyOutcome {
    unify_with_limits(config, records, MatchLimits::default())
}

/// Runs match and merge. The config should have passed [`UnificationConfig::validate`]; if not,
/// a fuzzy condition without threshold behaves as threshold 1 and unknown fields never match.
pub fn unify_with_limits(
    config: &UnificationConfig,
    mut records: Vec<SourceRecord>,
    limits: MatchLimits,
) -> UnifyOutcome {
    let source_records = records.len() as u64;
    assert!(
        records.len() < u32::MAX as usize,
        "unify supports fewer than 2^32 records"
    );
    // Canonical order: the outcome must not depend on the input order. (The rest of the order
    // only matters for a source reference given twice.)
    records.sort_unstable_by(|a, b| {
        a.entity_name
            .cmp(&b.entity_name)
            .then_with(|| a.key.cmp(&b.key))
            .then_with(|| a.priority.cmp(&b.priority))
            .then_with(|| a.updated_at.cmp(&b.updated_at))
            .then_with(|| a.fields.cmp(&b.fields))
    });
    let n = records.len();
    let mut uf = UnionFind::new(n);
    // The same source reference given twice is one record.
    for i in 1..n {
        if records[i - 1].entity_name == records[i].entity_name
            && records[i - 1].key == records[i].key
        {
            uf.union(i - 1, i);
        }
    }
    let limits = MatchLimits {
        max_pairwise_block: limits.max_pairwise_block.max(1),
        window: limits.window.max(1),
        threads: match limits.threads {
            0 if n < PARALLEL_MIN_RECORDS => 1,
            0 => std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .min(MAX_THREADS),
            t => t.min(64),
        },
    };

    // Bit r of a record's mask: rule r linked it to another record.
    let mut links = vec![Link::default(); n];
    let mut reports = Vec::with_capacity(config.rules.len() + config.scored_rules.len());
    let mut samples = Vec::new();
    let features = Features::build(config, &records, limits.threads);
    let fields: Vec<&BTreeMap<String, String>> = records.iter().map(|r| &r.fields).collect();
    for (r, rule) in config.rules.iter().enumerate() {
        let bit = 1u64 << r;
        if rule.is_pairwise() {
            let pairwise = PairwiseRule {
                name: &rule.name,
                blocking: rule.blocking_keys(),
                conditions: rule.conditions.iter().map(MatchRule::comparison).collect(),
                min_agree: rule.min_agree.unwrap_or(rule.conditions.len()),
            };
            let (pairs, report) = scored_rules::run_pairwise(&pairwise, &fields);
            for (a, b) in pairs {
                uf.union(a as usize, b as usize);
                links[a as usize].rules |= bit;
                links[b as usize].rules |= bit;
            }
            reports.push(report);
            continue;
        }
        // Each rule links on its own, so what it linked (the groups of the transitive closure
        // of its matches) does not depend on the other rules or the threads.
        let mut own = UnionFind::new(n);
        let tally = match_rule(rule, &features, n, &mut own, limits);
        let mut sizes = vec![0u32; n];
        let roots: Vec<usize> = (0..n).map(|i| own.find(i)).collect();
        for &root in &roots {
            sizes[root] += 1;
        }
        let mut joins = 0u64;
        let mut linked = 0u64;
        for (i, &root) in roots.iter().enumerate() {
            if root != i {
                uf.union(i, root);
                joins += 1;
            }
            if sizes[root] > 1 {
                links[i].rules |= bit;
                linked += 1;
            }
        }
        reports.push(RuleReport {
            rule: rule.name.clone(),
            kind: "exact".into(),
            candidate_pairs: tally.compared,
            pairs_matched: joins,
            records_linked: linked,
            ..RuleReport::default()
        });
    }
    drop(features);
    for (s, rule) in config.scored_rules.iter().enumerate() {
        let bit = 1u64 << (config.rules.len() + s);
        let outcome = scored_rules::run(rule, &fields);
        for pair in &outcome.matched {
            uf.union(pair.a as usize, pair.b as usize);
            for record in [pair.a, pair.b] {
                let link = &mut links[record as usize];
                link.rules |= bit;
                link.weight = link.weight.max(pair.weight);
            }
        }
        let sample = |pair: &scored_rules::ScoredPair, matched: bool| PairSample {
            rule: rule.name.clone(),
            matched,
            weight: pair.weight,
            records: [pair.a, pair.b].map(|i| {
                let r = &records[i as usize];
                SampleRecord {
                    entity_name: r.entity_name.clone(),
                    key: r.key.clone(),
                    fields: r.fields.clone(),
                }
            }),
        };
        samples.extend(outcome.above.iter().map(|p| sample(p, true)));
        samples.extend(outcome.below.iter().map(|p| sample(p, false)));
        reports.push(outcome.report);
    }
    drop(fields);
    let names: Vec<&str> = config
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .chain(config.scored_rules.iter().map(|r| r.name.as_str()))
        .collect();

    let mut outcome = merge(
        config.merge.policy,
        records,
        links,
        &mut uf,
        source_records,
        limits.threads,
    );
    for (profile, link) in outcome.0.profiles.iter_mut().zip(outcome.1) {
        profile.match_weight = link.weight.is_finite().then_some(link.weight);
        profile.matched_by = (0..names.len())
            .filter(|r| link.rules & (1u64 << r) != 0)
            .map(|r| names[r].to_string())
            .collect();
    }
    let mut outcome = outcome.0;
    outcome.rules = reports;
    outcome.samples = samples;
    outcome
}

/// A record pair a scored rule compared, near its threshold (for tuning it).
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairSample {
    /// The scored rule.
    pub rule: String,
    /// Whether the pair is at or above the threshold.
    pub matched: bool,
    /// The pair's match weight.
    pub weight: f64,
    /// The two records.
    pub records: [SampleRecord; 2],
}

/// One record of a sampled pair, with its profile fields.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleRecord {
    /// The source entity.
    pub entity_name: String,
    /// The item's key.
    pub key: String,
    /// The record's profile fields (mapped, not normalized).
    pub fields: BTreeMap<String, String>,
}

/// Refuses a configuration whose blocking would compare too many pairs over these records
/// (see [`scored_rules::MAX_CANDIDATE_PAIRS`]); the message says which rule and key.
pub fn check_blocking(config: &UnificationConfig, records: &[SourceRecord]) -> Result<(), String> {
    let fields: Vec<&BTreeMap<String, String>> = records.iter().map(|r| &r.fields).collect();
    for rule in config.rules.iter().filter(|r| r.is_pairwise()) {
        let conditions: Vec<Comparison> =
            rule.conditions.iter().map(MatchRule::comparison).collect();
        scored_rules::check_blocking(
            &rule.name,
            &rule.blocking_keys(),
            &conditions,
            &fields,
            None,
        )?;
    }
    for rule in &config.scored_rules {
        scored_rules::check_blocking(
            &rule.name,
            &rule.blocking,
            &rule.comparisons,
            &fields,
            rule.max_block_size,
        )?;
    }
    Ok(())
}

/// What linked a record: the rules (bit r for rule r) and the best weight of a scored match.
#[derive(Clone, Copy, Debug)]
struct Link {
    rules: u64,
    weight: f64,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            rules: 0,
            weight: f64::NEG_INFINITY,
        }
    }
}

impl Link {
    fn join(self, other: Link) -> Link {
        Link {
            rules: self.rules | other.rules,
            weight: self.weight.max(other.weight),
        }
    }
}

/// What one deterministic rule did: the pairs it compared and those it joined.
#[derive(Default)]
struct Tally {
    compared: u64,
    joined: Vec<(u32, u32)>,
}

/// Below this many records everything runs on the calling thread (with `threads: 0`).
const PARALLEL_MIN_RECORDS: usize = 50_000;
const MAX_THREADS: usize = 8;

/// Normalized values of every (field, normalization) pair used by a condition, one arena each.
struct Features {
    specs: Vec<Spec>,
    columns: Vec<Column>,
}

struct Spec {
    field: String,
    normalization: Normalization,
    /// Only fuzzy conditions use it: values are cut to [`MAX_FUZZY_CHARS`] characters.
    fuzzy_only: bool,
}

#[derive(Default)]
struct Column {
    data: String,
    /// End offset in `data` of each record's value (its start is the previous end).
    ends: Vec<usize>,
}

impl Column {
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

impl Features {
    fn build(config: &UnificationConfig, records: &[SourceRecord], threads: usize) -> Features {
        let mut specs: Vec<Spec> = Vec::new();
        let legacy = config.rules.iter().filter(|r| !r.is_pairwise());
        for cond in legacy.flat_map(|r| &r.conditions) {
            let fuzzy = cond.precision == Precision::Fuzzy;
            match specs
                .iter_mut()
                .find(|s| s.field == cond.field && s.normalization == cond.normalization)
            {
                Some(spec) => spec.fuzzy_only &= fuzzy,
                None => specs.push(Spec {
                    field: cond.field.clone(),
                    normalization: cond.normalization,
                    fuzzy_only: fuzzy,
                }),
            }
        }
        let chunk = records.len().div_ceil(threads.max(1)).max(1);
        let parts: Vec<Vec<Column>> = if threads <= 1 || records.len() <= chunk {
            vec![Self::build_part(&specs, records)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = records
                    .chunks(chunk)
                    .map(|part| {
                        let specs = &specs;
                        scope.spawn(move || Self::build_part(specs, part))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("feature worker panicked"))
                    .collect()
            })
        };
        let mut parts = parts.into_iter();
        let mut columns = parts.next().unwrap_or_default();
        for part in parts {
            for (column, piece) in columns.iter_mut().zip(part) {
                let offset = column.data.len();
                column.data.push_str(&piece.data);
                column.ends.extend(piece.ends.iter().map(|e| e + offset));
            }
        }
        Features { specs, columns }
    }

    fn build_part(specs: &[Spec], records: &[SourceRecord]) -> Vec<Column> {
        let mut columns: Vec<Column> = specs
            .iter()
            .map(|_| Column {
                data: String::new(),
                ends: Vec::with_capacity(records.len()),
            })
            .collect();
        for record in records {
            // One walk over the record's fields serves every feature.
            for (field, raw) in &record.fields {
                for (spec, column) in specs.iter().zip(columns.iter_mut()) {
                    if spec.field == *field {
                        let start = column.data.len();
                        spec.normalization.apply_into(raw, &mut column.data);
                        if column.data[start..].trim().is_empty() {
                            column.data.truncate(start);
                        } else if spec.fuzzy_only && column.data.len() - start > MAX_FUZZY_CHARS {
                            let cut = column.data[start..]
                                .char_indices()
                                .nth(MAX_FUZZY_CHARS)
                                .map(|(i, _)| start + i);
                            if let Some(cut) = cut {
                                column.data.truncate(cut);
                            }
                        }
                    }
                }
            }
            for column in &mut columns {
                column.ends.push(column.data.len());
            }
        }
        columns
    }

    fn column(&self, cond: &MatchCondition) -> &Column {
        let i = self
            .specs
            .iter()
            .position(|s| s.field == cond.field && s.normalization == cond.normalization)
            .expect("every condition has a feature column");
        &self.columns[i]
    }
}

struct FuzzyCond<'a> {
    column: &'a Column,
    threshold: f64,
}

/// A piece of fuzzy-matching work on one block.
#[derive(Clone, Copy)]
enum Unit {
    /// Compare all pairs of the block.
    Pairwise(usize),
    /// Sorted neighbourhood over the block, forward or reversed key.
    Window(usize, bool),
}

fn match_rule(
    rule: &MatchRule,
    features: &Features,
    n: usize,
    uf: &mut UnionFind,
    limits: MatchLimits,
) -> Tally {
    let mut tally = Tally::default();
    let mut exact: Vec<&Column> = Vec::new();
    let mut fuzzy: Vec<FuzzyCond> = Vec::new();
    for cond in &rule.conditions {
        let column = features.column(cond);
        match cond.precision {
            Precision::Exact => exact.push(column),
            Precision::Fuzzy => fuzzy.push(FuzzyCond {
                column,
                threshold: cond.threshold.unwrap_or(1.0),
            }),
        }
    }
    if exact.is_empty() && fuzzy.is_empty() {
        return tally;
    }
    let eligible = |i: usize| {
        exact.iter().all(|c| !c.get(i).is_empty())
            && fuzzy.iter().all(|f| !f.column.get(i).is_empty())
    };
    let block_key = |i: usize| -> Cow<str> {
        if exact.len() == 1 {
            Cow::Borrowed(exact[0].get(i))
        } else {
            let mut key = String::new();
            for c in &exact {
                let v = c.get(i);
                key.push_str(&v.len().to_string());
                key.push(':');
                key.push_str(v);
            }
            Cow::Owned(key)
        }
    };
    if fuzzy.is_empty() {
        // Exact-only: everyone in a block is unioned with the block's first record.
        let mut first_of_block: HashMap<Cow<str>, u32> = HashMap::new();
        for i in (0..n).filter(|&i| eligible(i)) {
            match first_of_block.entry(block_key(i)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    uf.union(*e.get() as usize, i);
                    tally.compared += 1;
                    tally.joined.push((*e.get(), i as u32));
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i as u32);
                }
            }
        }
        return tally;
    }

    // Blocks as one member array plus start offsets; members ascending within a block.
    let (members, starts) = if exact.is_empty() {
        let members: Vec<u32> = (0..n).filter(|&i| eligible(i)).map(|i| i as u32).collect();
        let len = members.len();
        (members, vec![0, len])
    } else {
        let mut block_of: Vec<u32> = vec![u32::MAX; n];
        let mut sizes: Vec<u32> = Vec::new();
        {
            let mut ids: HashMap<Cow<str>, u32> = HashMap::new();
            for i in (0..n).filter(|&i| eligible(i)) {
                let id = *ids.entry(block_key(i)).or_insert_with(|| {
                    sizes.push(0);
                    (sizes.len() - 1) as u32
                });
                sizes[id as usize] += 1;
                block_of[i] = id;
            }
        }
        let mut starts: Vec<usize> = Vec::with_capacity(sizes.len() + 1);
        let mut total = 0usize;
        for &s in &sizes {
            starts.push(total);
            total += s as usize;
        }
        starts.push(total);
        let mut fill = starts.clone();
        let mut members = vec![0u32; total];
        for (i, &b) in block_of.iter().enumerate() {
            if b != u32::MAX {
                members[fill[b as usize]] = i as u32;
                fill[b as usize] += 1;
            }
        }
        (members, starts)
    };
    let block = |b: usize| &members[starts[b]..starts[b + 1]];

    // Work units with a rough cost, spread over the threads (least loaded first).
    let mut units: Vec<(Unit, u64)> = Vec::new();
    for b in 0..starts.len() - 1 {
        let k = block(b).len() as u64;
        if k < 2 {
            continue;
        }
        if k as usize <= limits.max_pairwise_block {
            units.push((Unit::Pairwise(b), k * (k - 1) / 2));
        } else {
            let cost = k * (limits.window as u64 + u64::from(64 - k.leading_zeros()));
            units.push((Unit::Window(b, false), cost));
            units.push((Unit::Window(b, true), cost));
        }
    }
    let threads = limits.threads.clamp(1, units.len().max(1));
    // Runs units against `uf` (unioning as it goes, so pairs already joined are skipped) and
    // returns the pairs it joined.
    let run = |units: &[Unit], uf: &mut UnionFind| -> Tally {
        let mut tally = Tally::default();
        let mut try_pair = |x: u32, y: u32, uf: &mut UnionFind| {
            let (x, y) = (x.min(y), x.max(y));
            if uf.find(x as usize) != uf.find(y as usize) {
                tally.compared += 1;
                if fuzzy_match(&fuzzy, x as usize, y as usize) {
                    uf.union(x as usize, y as usize);
                    tally.joined.push((x, y));
                }
            }
        };
        let mut order: Vec<(u64, u32)> = Vec::new();
        for &unit in units {
            match unit {
                Unit::Pairwise(b) => {
                    let members = block(b);
                    for (a, &x) in members.iter().enumerate() {
                        for &y in &members[a + 1..] {
                            try_pair(x, y, uf);
                        }
                    }
                }
                Unit::Window(b, reversed) => {
                    order.clear();
                    order.extend(
                        block(b)
                            .iter()
                            .map(|&i| (sort_prefix(&fuzzy, i as usize, reversed), i)),
                    );
                    order.sort_unstable_by(|a, b| {
                        a.0.cmp(&b.0)
                            .then_with(|| {
                                sort_key_cmp(&fuzzy, a.1 as usize, b.1 as usize, reversed)
                            })
                            .then(a.1.cmp(&b.1))
                    });
                    for (a, &(_, x)) in order.iter().enumerate() {
                        let end = (a + 1 + limits.window).min(order.len());
                        for &(_, y) in &order[a + 1..end] {
                            try_pair(x, y, uf);
                        }
                    }
                }
            }
        }
        tally
    };
    if threads == 1 {
        let all: Vec<Unit> = units.iter().map(|u| u.0).collect();
        return run(&all, uf);
    }
    let mut assigned: Vec<(u64, Vec<Unit>)> = vec![(0, Vec::new()); threads];
    for &(unit, cost) in &units {
        let least = assigned
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("at least one thread");
        least.0 += cost;
        least.1.push(unit);
    }
    // Each worker starts from a copy of the current clusters; the union of everything the
    // workers joined is the same partition a single thread would produce.
    let base: &UnionFind = uf;
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = assigned
            .iter()
            .map(|(_, units)| {
                let run = &run;
                scope.spawn(move || {
                    let mut local = base.clone();
                    run(units, &mut local)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("match worker panicked"))
            .collect()
    });
    for part in tallies {
        tally.compared += part.compared;
        for (x, y) in part.joined {
            // Another worker may have joined the two already: the pair is still this rule's.
            uf.union(x as usize, y as usize);
            tally.joined.push((x, y));
        }
    }
    tally
}

/// First 8 bytes of the sorted-neighbourhood key, big-endian, zero-padded: ordering by it and
/// then by [`sort_key_cmp`] is the same as ordering by [`sort_key_cmp`] alone.
fn sort_prefix(fuzzy: &[FuzzyCond], i: usize, reversed: bool) -> u64 {
    let mut bytes = [0u8; 8];
    if reversed {
        let last = fuzzy.last().map_or("", |f| f.column.get(i)).as_bytes();
        for (slot, b) in bytes.iter_mut().zip(last.iter().rev()) {
            *slot = *b;
        }
    } else {
        let first = fuzzy.first().map_or("", |f| f.column.get(i)).as_bytes();
        for (slot, b) in bytes.iter_mut().zip(first) {
            *slot = *b;
        }
    }
    u64::from_be_bytes(bytes)
}

/// Sorted-neighbourhood order: the fuzzy values in condition order, or (reversed) the values
/// in reverse condition order, each read backwards.
fn sort_key_cmp(fuzzy: &[FuzzyCond], a: usize, b: usize, reversed: bool) -> Ordering {
    if reversed {
        for f in fuzzy.iter().rev() {
            let (x, y) = (f.column.get(a).as_bytes(), f.column.get(b).as_bytes());
            let o = x.iter().rev().cmp(y.iter().rev());
            if o != Ordering::Equal {
                return o;
            }
        }
    } else {
        for f in fuzzy {
            let o = f.column.get(a).cmp(f.column.get(b));
            if o != Ordering::Equal {
                return o;
            }
        }
    }
    Ordering::Equal
}

fn fuzzy_match(fuzzy: &[FuzzyCond], x: usize, y: usize) -> bool {
    fuzzy
        .iter()
        .all(|f| similar(f.column.get(x), f.column.get(y), f.threshold))
}

/// Jaro-Winkler on the first [`MAX_FUZZY_CHARS`] characters, after a cheap upper bound that
/// rejects most non-matches without running it.
fn similar(a: &str, b: &str, threshold: f64) -> bool {
    if a == b {
        return true;
    }
    let (a, la) = fuzzy_prefix(a);
    let (b, lb) = fuzzy_prefix(b);
    if jaro_winkler_upper_bound(a, la, b, lb) + 1e-9 < threshold {
        return false;
    }
    jaro_winkler(a, b) >= threshold
}

/// `strsim::jaro_winkler(a, b)`. For ASCII values of at most 64 characters (the common case, and
/// always after [`fuzzy_prefix`] for ASCII) the same algorithm runs bit-parallel over bytes
/// (a 64-bit position mask per character; the first free matching position in the window is a
/// `trailing_zeros`) without allocating. It picks the same matches, counts the same
/// transpositions and does the same floating-point operations as strsim, so the result is
/// identical (a test checks this against strsim); other values go to strsim itself.
fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if !(a.is_ascii() && b.is_ascii() && x.len() <= 64 && y.len() <= 64) {
        return strsim::jaro_winkler(a, b);
    }
    let (la, lb) = (x.len(), y.len());
    if la == 0 && lb == 0 {
        return 1.0;
    }
    if la == 0 || lb == 0 {
        return 0.0;
    }
    let range = (la.max(lb) / 2).saturating_sub(1);
    // positions[c]: bit j set when y[j] == c.
    let mut positions = [0u64; 128];
    for (j, &c) in y.iter().enumerate() {
        positions[usize::from(c)] |= 1u64 << j;
    }
    let below = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let (mut a_flags, mut b_flags) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &c) in x.iter().enumerate() {
        // The first unused position of the same character within [i - range, i + range].
        let lo = i.saturating_sub(range);
        let hi = (i + range + 1).min(lb);
        if lo >= hi {
            continue;
        }
        let window = below(hi) & !below(lo);
        let candidates = positions[usize::from(c)] & !b_flags & window;
        if candidates != 0 {
            a_flags |= 1u64 << i;
            b_flags |= 1u64 << candidates.trailing_zeros();
            matches += 1;
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let (mut fa, mut fb) = (a_flags, b_flags);
    while fa != 0 {
        let i = fa.trailing_zeros() as usize;
        let j = fb.trailing_zeros() as usize;
        fa &= fa - 1;
        fb &= fb - 1;
        if x[i] != y[j] {
            transpositions += 1;
        }
    }
    transpositions /= 2;
    let sim = ((matches as f64 / la as f64)
        + (matches as f64 / lb as f64)
        + ((matches - transpositions) as f64 / matches as f64))
        / 3.0;
    if sim > 0.7 {
        let prefix = x.iter().take(4).zip(y).take_while(|(p, q)| p == q).count();
        sim + 0.1 * prefix as f64 * (1.0 - sim)
    } else {
        sim
    }
}

/// An upper bound of `strsim::jaro_winkler(a, b)` (`la`, `lb`: lengths in characters).
///
/// Jaro is `(m/la + m/lb + (m - t)/m) / 3` with `m` matching characters; `m` is at most the
/// shorter length and, for ASCII, at most the number of characters of either string that occur
/// in the other at all. Winkler adds `0.1 · prefix · (1 − jaro)` with the common prefix capped at
/// 4, which grows with Jaro, so plugging in the bound for Jaro bounds the result.
fn jaro_winkler_upper_bound(a: &str, la: usize, b: &str, lb: usize) -> f64 {
    if la == 0 || lb == 0 {
        return if la == lb { 1.0 } else { 0.0 };
    }
    let mut m = la.min(lb);
    if a.is_ascii() && b.is_ascii() {
        let mask = |s: &str| s.bytes().fold(0u128, |acc, c| acc | (1u128 << (c & 0x7f)));
        let (ma, mb) = (mask(a), mask(b));
        let in_b = a
            .bytes()
            .filter(|&c| mb & (1u128 << (c & 0x7f)) != 0)
            .count();
        let in_a = b
            .bytes()
            .filter(|&c| ma & (1u128 << (c & 0x7f)) != 0)
            .count();
        m = m.min(in_b).min(in_a);
    }
    if m == 0 {
        return 0.0;
    }
    let m = m as f64;
    let jaro = (m / la as f64 + m / lb as f64 + 1.0) / 3.0;
    let prefix = a
        .chars()
        .zip(b.chars())
        .take(4)
        .take_while(|(x, y)| x == y)
        .count();
    jaro + 0.1 * prefix as f64 * (1.0 - jaro)
}

fn fuzzy_prefix(s: &str) -> (&str, usize) {
    if s.is_ascii() {
        let s = &s[..s.len().min(MAX_FUZZY_CHARS)];
        return (s, s.len());
    }
    match s.char_indices().nth(MAX_FUZZY_CHARS) {
        Some((cut, _)) => (&s[..cut], MAX_FUZZY_CHARS),
        None => (s, s.chars().count()),
    }
}

/// Disjoint sets with path compression and union by rank.
#[derive(Clone)]
struct UnionFind {
    parent: Vec<u32>,
    rank: Vec<u8>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
        }
    }

    fn find(&mut self, x: usize) -> usize {
        let mut root = x;
        while self.parent[root] as usize != root {
            root = self.parent[root] as usize;
        }
        let mut cur = x;
        while self.parent[cur] as usize != root {
            let next = self.parent[cur] as usize;
            self.parent[cur] = root as u32;
            cur = next;
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        match self.rank[ra].cmp(&self.rank[rb]) {
            Ordering::Less => self.parent[ra] = rb as u32,
            Ordering::Greater => self.parent[rb] = ra as u32,
            Ordering::Equal => {
                self.parent[rb] = ra as u32;
                self.rank[ra] += 1;
            }
        }
    }
}

/// Merges the clusters into profiles; also gives, aligned with the profiles, what linked
/// their records (joined over each cluster).
fn merge(
    policy: MergePolicy,
    mut records: Vec<SourceRecord>,
    mut links: Vec<Link>,
    uf: &mut UnionFind,
    source_records: u64,
    threads: usize,
) -> (UnifyOutcome, Vec<Link>) {
    let n = records.len();
    // Clusters in order of their first (smallest) record; members ascending = canonical order.
    let mut cluster_of_root: Vec<u32> = vec![u32::MAX; n];
    let mut cluster_of: Vec<u32> = Vec::with_capacity(n);
    let mut sizes: Vec<u32> = Vec::new();
    for i in 0..n {
        let root = uf.find(i);
        if cluster_of_root[root] == u32::MAX {
            cluster_of_root[root] = sizes.len() as u32;
            sizes.push(0);
        }
        let c = cluster_of_root[root];
        sizes[c as usize] += 1;
        cluster_of.push(c);
    }
    drop(cluster_of_root);
    let mut starts = Vec::with_capacity(sizes.len() + 1);
    let mut total = 0usize;
    for &s in &sizes {
        starts.push(total);
        total += s as usize;
    }
    starts.push(total);
    drop(sizes);
    // Move the records into cluster order, so each cluster is a contiguous slice that can be
    // consumed (fields moved, not cloned) by one worker.
    let mut fill = starts.clone();
    let mut target: Vec<usize> = cluster_of
        .iter()
        .map(|&c| {
            let t = fill[c as usize];
            fill[c as usize] += 1;
            t
        })
        .collect();
    drop(cluster_of);
    drop(fill);
    // Apply the permutation in place, cycle by cycle.
    for i in 0..n {
        while target[i] != i {
            let t = target[i];
            records.swap(i, t);
            links.swap(i, t);
            target.swap(i, t);
        }
    }
    drop(target);

    // Split the clusters into contiguous parts of about equal record counts.
    let clusters = starts.len() - 1;
    let parts = threads.clamp(1, clusters.max(1));
    let mut bounds = vec![0usize];
    for p in 1..parts {
        let target = n * p / parts;
        let c = starts.partition_point(|&s| s < target).min(clusters);
        if c > *bounds.last().expect("non-empty") {
            bounds.push(c);
        }
    }
    bounds.push(clusters);
    let mut pieces: Vec<(&[usize], &mut [SourceRecord], &[Link])> = Vec::new();
    let mut rest: &mut [SourceRecord] = &mut records;
    for w in bounds.windows(2) {
        let (from, to) = (w[0], w[1]);
        let (piece, tail) = std::mem::take(&mut rest).split_at_mut(starts[to] - starts[from]);
        rest = tail;
        pieces.push((&starts[from..=to], piece, &links[starts[from]..starts[to]]));
    }
    let results: Vec<MergedPart> = if pieces.len() == 1 {
        pieces
            .into_iter()
            .map(|(s, r, m)| merge_clusters(policy, s, r, m))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = pieces
                .into_iter()
                .map(|(s, r, m)| scope.spawn(move || merge_clusters(policy, s, r, m)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("merge worker panicked"))
                .collect()
        })
    };
    drop(records);
    let matched_records = results.iter().map(|r| r.1).sum();
    let mut keyed: Vec<([u8; 16], Profile, Link)> = Vec::with_capacity(clusters);
    for (profiles, _) in results {
        keyed.extend(profiles);
    }
    // The hex id orders like its bytes.
    keyed.sort_unstable_by_key(|a| a.0);
    let (profiles, links): (Vec<Profile>, Vec<Link>) =
        keyed.into_iter().map(|(_, p, l)| (p, l)).unzip();
    (
        UnifyOutcome {
            unified_profiles: profiles.len() as u64,
            profiles,
            source_records,
            matched_records,
            rules: Vec::new(),
            samples: Vec::new(),
        },
        links,
    )
}

/// Profiles keyed by their raw id with what linked them, and the number of matched records,
/// of one merge worker.
type MergedPart = (Vec<([u8; 16], Profile, Link)>, u64);

/// Merges consecutive clusters: `starts` are the clusters' offsets into `records` relative to
/// `starts[0]` (the last entry is the end). Takes the records' strings.
fn merge_clusters(
    policy: MergePolicy,
    starts: &[usize],
    records: &mut [SourceRecord],
    links: &[Link],
) -> MergedPart {
    let base = starts[0];
    let mut profiles = Vec::with_capacity(starts.len() - 1);
    let mut matched = 0u64;
    let mut order: Vec<usize> = Vec::new();
    for w in starts.windows(2) {
        let cluster = &mut records[w[0] - base..w[1] - base];
        order.clear();
        order.extend(0..cluster.len());
        if cluster.len() > 1 {
            sort_for_merge(policy, &mut order, cluster);
        }
        let mut fields = Map::new();
        for &i in &order {
            for (field, value) in std::mem::take(&mut cluster[i].fields) {
                if !value.trim().is_empty() && !fields.contains_key(&field) {
                    fields.insert(field, Value::String(value));
                }
            }
        }
        // Source references; records are in canonical order, so these come sorted.
        let mut sources: Vec<SourceRef> = Vec::with_capacity(cluster.len());
        for r in cluster.iter_mut() {
            if sources
                .last()
                .is_some_and(|s| s.entity_name == r.entity_name && s.key == r.key)
            {
                continue;
            }
            sources.push(SourceRef {
                entity_name: std::mem::take(&mut r.entity_name),
                key: std::mem::take(&mut r.key),
            });
        }
        if sources.len() >= 2 {
            matched += cluster.len() as u64;
        }
        let smallest = sources
            .iter()
            .min_by(|a, b| {
                let ka = a.entity_name.bytes().chain([0x1f]).chain(a.key.bytes());
                let kb = b.entity_name.bytes().chain([0x1f]).chain(b.key.bytes());
                ka.cmp(kb)
            })
            .expect("a cluster has at least one record");
        let id = customer_id_bytes(&smallest.entity_name, &smallest.key);
        let link = links[w[0] - base..w[1] - base]
            .iter()
            .fold(Link::default(), |all, l| all.join(*l));
        profiles.push((
            id,
            Profile {
                customer_id: format_uuid(&id),
                fields,
                sources,
                matched_by: Vec::new(),
                match_weight: None,
            },
            link,
        ));
    }
    (profiles, matched)
}

fn sort_for_merge(policy: MergePolicy, order: &mut [usize], records: &[SourceRecord]) {
    let by_priority = |a: &SourceRecord, b: &SourceRecord| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.entity_name.cmp(&b.entity_name))
            .then_with(|| a.key.cmp(&b.key))
    };
    let filled = |r: &SourceRecord| r.fields.values().filter(|v| !v.trim().is_empty()).count();
    order.sort_by(|&x, &y| {
        let (a, b) = (&records[x], &records[y]);
        let first = match policy {
            MergePolicy::SourcePriority => Ordering::Equal,
            // Newest first; `None` sorts after any timestamp.
            MergePolicy::MostRecent => b.updated_at.cmp(&a.updated_at),
            MergePolicy::MostComplete => filled(b).cmp(&filled(a)),
        };
        first.then_with(|| by_priority(a, b)).then(x.cmp(&y))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(entity: &str, key: &str, priority: i64, fields: &[(&str, &str)]) -> SourceRecord {
        SourceRecord {
            entity_name: entity.into(),
            key: key.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            priority,
            updated_at: None,
        }
    }

    fn config(rules: Value, policy: &str) -> UnificationConfig {
        serde_json::from_value(json!({
            "sources": [
                {"entityName":"Crm","fields":{"email":"Email","firstName":"First","lastName":"Last","phone":"Phone","city":"City"},"priority":1},
                {"entityName":"Shop","fields":{"email":"Mail","firstName":"FirstName","lastName":"LastName","phone":"Tel","city":"Town"},"priority":2},
                {"entityName":"Loyalty","fields":{"email":"email","firstName":"first","lastName":"last","phone":"phone","city":"city"},"priority":3}
            ],
            "rules": rules,
            "merge": {"policy": policy}
        }))
        .unwrap()
    }

    /// "k of n": records agreeing on three of four fields match; on two they do not.
    #[test]
    fn k_of_n_rule_needs_k_agreeing_conditions() {
        let rules = json!([{"name":"3 of 4","minAgree":3,"blocking":[["city"]],"conditions":[
            {"field":"firstName","normalization":"case-insensitive","precision":"exact"},
            {"field":"lastName","normalization":"case-insensitive","precision":"exact"},
            {"field":"email","normalization":"email","precision":"exact"},
            {"field":"phone","normalization":"phone","precision":"exact"}]}]);
        let records = vec![
            rec(
                "Crm",
                "1",
                1,
                &[
                    ("firstName", "Ann"),
                    ("lastName", "Lee"),
                    ("email", "a@x"),
                    ("phone", "1"),
                    ("city", "Oslo"),
                ],
            ),
            // Three of four agree (another email).
            rec(
                "Shop",
                "1",
                2,
                &[
                    ("firstName", "ann"),
                    ("lastName", "LEE"),
                    ("email", "b@x"),
                    ("phone", "1"),
                    ("city", "oslo"),
                ],
            ),
            // Two of four agree.
            rec(
                "Loyalty",
                "1",
                3,
                &[
                    ("firstName", "Ann"),
                    ("lastName", "Lee"),
                    ("email", "c@x"),
                    ("phone", "2"),
                    ("city", "Oslo"),
                ],
            ),
        ];
        let out = unify(&config(rules, "sourcePriority"), records);
        assert_eq!(clusters(&out), cl(&[&["Crm/1", "Shop/1"], &["Loyalty/1"]]));
        assert_eq!(out.rules[0].candidate_pairs, 3);
        assert_eq!(out.rules[0].pairs_matched, 1);
        assert_eq!(out.rules[0].blocks[0].candidate_pairs, 3);
    }

    /// Given name and surname exchanged still match a rule whose conditions compare each with
    /// the other (alsoAgainst); one shared name alone does not.
    #[test]
    fn swapped_fields_match_through_also_against() {
        let rules = json!([{"name":"names and phone","conditions":[
            {"field":"phone","normalization":"phone","precision":"exact"},
            {"field":"firstName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9,"alsoAgainst":["lastName"]},
            {"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9,"alsoAgainst":["firstName"]}]}]);
        let records = vec![
            rec(
                "Crm",
                "1",
                1,
                &[("firstName", "Ann"), ("lastName", "Lee"), ("phone", "1")],
            ),
            rec(
                "Shop",
                "1",
                2,
                &[("firstName", "Lee"), ("lastName", "Ann"), ("phone", "1")],
            ),
            rec(
                "Loyalty",
                "1",
                3,
                &[("firstName", "Lee"), ("lastName", "Smith"), ("phone", "1")],
            ),
        ];
        let out = unify(&config(rules, "sourcePriority"), records);
        assert_eq!(clusters(&out), cl(&[&["Crm/1", "Shop/1"], &["Loyalty/1"]]));
        let linked = out.profiles.iter().find(|p| p.sources.len() == 2).unwrap();
        assert_eq!(linked.matched_by, ["names and phone"]);
    }

    /// An edit distance on digit codes: a transposition is one Damerau-Levenshtein edit.
    #[test]
    fn edit_distance_conditions_on_digit_codes() {
        let rule = |comparator: &str| {
            json!([{"name":"phone typo","conditions":[
                {"field":"lastName","normalization":"case-insensitive","precision":"exact"},
                {"field":"phone","normalization":"phone","precision":"fuzzy","comparator":comparator,"threshold":1}]}])
        };
        let records = || {
            vec![
                rec("Crm", "1", 1, &[("lastName", "Lee"), ("phone", "8149220")]),
                rec("Shop", "1", 2, &[("lastName", "Lee"), ("phone", "8149202")]),
            ]
        };
        let out = unify(
            &config(rule("damerauLevenshtein"), "sourcePriority"),
            records(),
        );
        assert_eq!(out.unified_profiles, 1);
        let out = unify(&config(rule("levenshtein"), "sourcePriority"), records());
        assert_eq!(out.unified_profiles, 2);
    }

    #[test]
    fn pairwise_rules_are_validated() {
        let check = |rules: Value| config(rules, "sourcePriority").validate().unwrap_err();
        let e = check(json!([{"name":"k","minAgree":1,"conditions":[
            {"field":"email","normalization":"email","precision":"exact"}]}]));
        assert!(e.contains("needs blocking keys"), "{e}");
        let e = check(
            json!([{"name":"k","minAgree":3,"blocking":[["city"]],"conditions":[
            {"field":"email","normalization":"email","precision":"exact"}]}]),
        );
        assert!(e.contains("minAgree must be between 1 and"), "{e}");
        let e = check(json!([{"name":"k","conditions":[
            {"field":"phone","normalization":"phone","precision":"fuzzy","comparator":"levenshtein","threshold":1}]}]));
        assert!(e.contains("needs blocking keys"), "{e}");
        let e = check(json!([{"name":"k","conditions":[
            {"field":"phone","normalization":"phone","precision":"exact","comparator":"levenshtein"}]}]));
        assert!(e.contains("only to fuzzy"), "{e}");
        let e = check(json!([{"name":"k","blocking":[["nope"]],"conditions":[
            {"field":"phone","normalization":"phone","precision":"exact"}]}]));
        assert!(e.contains("'nope'"), "{e}");
        let e = check(json!([{"name":"k","conditions":[
            {"field":"phone","normalization":"phone","precision":"fuzzy","comparator":"soundex","threshold":1}]}]));
        assert!(e.contains("takes no threshold"), "{e}");
    }

    fn email_rule() -> Value {
        json!([{"name":"same email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]}])
    }

    /// Clusters as sorted lists of "Entity/key", sorted.
    fn clusters(outcome: &UnifyOutcome) -> Vec<Vec<String>> {
        let mut c: Vec<Vec<String>> = outcome
            .profiles
            .iter()
            .map(|p| {
                p.sources
                    .iter()
                    .map(|s| format!("{}/{}", s.entity_name, s.key))
                    .collect()
            })
            .collect();
        c.sort();
        c
    }

    fn cl(groups: &[&[&str]]) -> Vec<Vec<String>> {
        let mut c: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                let mut g: Vec<String> = g.iter().map(|s| s.to_string()).collect();
                g.sort();
                g
            })
            .collect();
        c.sort();
        c
    }

    #[test]
    fn sample_config_round_trips() {
        let text = r#"{"sources":[{"entityName":"CrmContacts","fields":{"email":"Email","firstName":"First","lastName":"Last","phone":"Phone","city":"City"},"priority":1}],
 "rules":[{"name":"same email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]},
          {"name":"name and city","conditions":[{"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9},{"field":"city","normalization":"case-insensitive","precision":"exact"}]}],
 "merge":{"policy":"sourcePriority"}}"#;
        let config: UnificationConfig = serde_json::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.rules[1].conditions[0].threshold, Some(0.9));
        assert_eq!(
            config.rules[1].conditions[0].normalization,
            Normalization::CaseInsensitive
        );
        assert_eq!(config.merge.policy, MergePolicy::SourcePriority);
        let back = serde_json::to_value(&config).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
        for (text, policy) in [
            ("\"mostRecent\"", MergePolicy::MostRecent),
            ("\"mostComplete\"", MergePolicy::MostComplete),
        ] {
            assert_eq!(serde_json::from_str::<MergePolicy>(text).unwrap(), policy);
        }
        for (text, n) in [
            ("\"exact\"", Normalization::Exact),
            ("\"whitespace\"", Normalization::Whitespace),
            ("\"alphanumeric\"", Normalization::Alphanumeric),
            ("\"email\"", Normalization::Email),
            ("\"phone\"", Normalization::Phone),
        ] {
            assert_eq!(serde_json::from_str::<Normalization>(text).unwrap(), n);
        }
        // Typos in the contract are refused rather than ignored.
        let typo = text.replace("\"threshold\"", "\"treshold\"");
        assert!(serde_json::from_str::<UnificationConfig>(&typo).is_err());
        assert!(serde_json::from_str::<Normalization>("\"caseInsensitive\"").is_err());
    }

    #[test]
    fn normalizations() {
        use Normalization::*;
        assert_eq!(Exact.apply(" Anna  Smith "), " Anna  Smith ");
        assert_eq!(CaseInsensitive.apply(" ÄNNA Smith "), " änna smith ");
        assert_eq!(Whitespace.apply("  Anna \t  Smith\n "), "Anna Smith");
        assert_eq!(
            Alphanumeric.apply(" O'Brien-Smith 3rd, Ökö "),
            "obriensmith3rdökö"
        );
        assert_eq!(
            Email.apply("  Anna.Smith+news@Example.COM "),
            "anna.smith+news@example.com"
        );
        assert_eq!(Phone.apply("+49 (30) 123-45 67"), "49301234567");
        assert_eq!(Phone.apply("n/a"), "");
        assert_eq!(Whitespace.apply("   "), "");
    }

    #[test]
    fn exact_rule_with_normalization() {
        let config = config(email_rule(), "sourcePriority");
        let records = vec![
            rec("Crm", "1", 1, &[("email", "Anna@Example.com")]),
            rec("Shop", "a", 2, &[("email", "  anna@example.COM ")]),
            rec("Shop", "b", 2, &[("email", "anna@example.org")]),
        ];
        let out = unify(&config, records);
        assert_eq!(clusters(&out), cl(&[&["Crm/1", "Shop/a"], &["Shop/b"]]));
        assert_eq!(
            (
                out.source_records,
                out.unified_profiles,
                out.matched_records
            ),
            (3, 2, 2)
        );
    }

    #[test]
    fn exact_rule_with_several_conditions_needs_all() {
        let rules = json!([{"name":"name+city","conditions":[
            {"field":"lastName","normalization":"case-insensitive","precision":"exact"},
            {"field":"city","normalization":"whitespace","precision":"exact"}]}]);
        let config = config(rules, "sourcePriority");
        let records = vec![
            rec(
                "Crm",
                "1",
                1,
                &[("lastName", "Weber"), ("city", "Bad  Homburg")],
            ),
            rec(
                "Crm",
                "2",
                1,
                &[("lastName", "weber"), ("city", " Bad Homburg")],
            ),
            rec("Crm", "3", 1, &[("lastName", "Weber"), ("city", "Berlin")]),
            rec(
                "Crm",
                "4",
                1,
                &[("lastName", "Meyer"), ("city", "Bad Homburg")],
            ),
            // Block keys are length-prefixed, so a value containing the separator cannot collide.
            rec("Crm", "5", 1, &[("lastName", "a:1"), ("city", "b")]),
            rec("Crm", "6", 1, &[("lastName", "a"), ("city", "1:b")]),
        ];
        let out = unify(&config, records);
        assert_eq!(
            clusters(&out),
            cl(&[
                &["Crm/1", "Crm/2"],
                &["Crm/3"],
                &["Crm/4"],
                &["Crm/5"],
                &["Crm/6"]
            ])
        );
    }

    #[test]
    fn fuzzy_rule_with_exact_block() {
        let rules = json!([{"name":"name and city","conditions":[
            {"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9},
            {"field":"city","normalization":"case-insensitive","precision":"exact"}]}]);
        let config = config(rules, "sourcePriority");
        let records = vec![
            rec(
                "Crm",
                "1",
                1,
                &[("lastName", "Hoffmann"), ("city", "Berlin")],
            ),
            rec(
                "Crm",
                "2",
                1,
                &[("lastName", "Hofmann"), ("city", "berlin")],
            ),
            rec(
                "Crm",
                "3",
                1,
                &[("lastName", "Hofmann"), ("city", "Hamburg")],
            ),
            rec(
                "Crm",
                "4",
                1,
                &[("lastName", "Schmidt"), ("city", "Berlin")],
            ),
        ];
        assert!(strsim::jaro_winkler("hoffmann", "hofmann") >= 0.9);
        let out = unify(&config, records);
        assert_eq!(
            clusters(&out),
            cl(&[&["Crm/1", "Crm/2"], &["Crm/3"], &["Crm/4"]])
        );
    }

    #[test]
    fn fuzzy_only_rule_and_threshold() {
        let rule = |t: f64| {
            json!([{"name":"fuzzy name","conditions":[
                {"field":"lastName","normalization":"alphanumeric","precision":"fuzzy","threshold":t}]}])
        };
        let records = || {
            vec![
                rec("Crm", "1", 1, &[("lastName", "Martha")]),
                rec("Crm", "2", 1, &[("lastName", "Marhta")]),
                rec("Crm", "3", 1, &[("lastName", "Zebra")]),
            ]
        };
        // jaro_winkler("martha", "marhta") = 0.961
        let out = unify(&config(rule(0.95), "sourcePriority"), records());
        assert_eq!(clusters(&out), cl(&[&["Crm/1", "Crm/2"], &["Crm/3"]]));
        let out = unify(&config(rule(0.97), "sourcePriority"), records());
        assert_eq!(out.unified_profiles, 3);
        assert_eq!(out.matched_records, 0);
    }

    #[test]
    fn transitive_clustering() {
        let rules = json!([
            {"name":"email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]},
            {"name":"phone","conditions":[{"field":"phone","normalization":"phone","precision":"exact"}]}
        ]);
        let config = config(rules, "sourcePriority");
        let records = vec![
            rec("Crm", "A", 1, &[("email", "a@x.com"), ("phone", "111")]),
            rec(
                "Shop",
                "B",
                2,
                &[("email", "A@X.com"), ("phone", "+49 30 555")],
            ),
            rec(
                "Loyalty",
                "C",
                3,
                &[("email", "c@x.com"), ("phone", "4930555")],
            ),
            rec("Loyalty", "D", 3, &[("email", "d@x.com"), ("phone", "222")]),
        ];
        let out = unify(&config, records);
        assert_eq!(
            clusters(&out),
            cl(&[&["Crm/A", "Loyalty/C", "Shop/B"], &["Loyalty/D"]])
        );
        assert_eq!(out.matched_records, 3);
    }

    #[test]
    fn empty_values_never_match() {
        let rules = json!([
            {"name":"email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]},
            {"name":"phone","conditions":[{"field":"phone","normalization":"phone","precision":"exact"}]},
            {"name":"fuzzy","conditions":[{"field":"lastName","normalization":"whitespace","precision":"fuzzy","threshold":0.5}]}
        ]);
        let config = config(rules, "sourcePriority");
        let records = vec![
            rec(
                "Crm",
                "1",
                1,
                &[("email", ""), ("phone", "n/a"), ("lastName", "  ")],
            ),
            rec(
                "Crm",
                "2",
                1,
                &[("email", "   "), ("phone", "--"), ("lastName", "")],
            ),
            rec("Crm", "3", 1, &[]),
            rec("Crm", "4", 1, &[("city", "Berlin")]),
        ];
        let out = unify(&config, records);
        assert_eq!(out.unified_profiles, 4);
        assert_eq!(out.matched_records, 0);
    }

    #[test]
    fn same_source_reference_twice_is_one_record() {
        let config = config(email_rule(), "sourcePriority");
        let records = vec![
            rec("Crm", "1", 1, &[("email", "a@x.com")]),
            rec("Crm", "1", 1, &[("email", "b@x.com")]),
            rec("Crm", "2", 1, &[("email", "c@x.com")]),
        ];
        let out = unify(&config, records.clone());
        assert_eq!(clusters(&out), cl(&[&["Crm/1"], &["Crm/2"]]));
        assert_eq!(out.matched_records, 0);
        // Deterministic whichever copy comes first.
        let reversed: Vec<SourceRecord> = records.into_iter().rev().collect();
        assert_eq!(unify(&config, reversed), out);
        assert_eq!(
            out.profiles
                .iter()
                .find(|p| p.sources[0].key == "1")
                .unwrap()
                .fields["email"],
            json!("a@x.com")
        );
    }

    #[test]
    fn customer_id_is_a_stable_uuid() {
        let id = customer_id("Crm", "1");
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(id, customer_id("Crm", "1"));
        assert_ne!(id, customer_id("Crm", "2"));
        assert_ne!(customer_id("Crm1", "2"), customer_id("Crm", "12"));
        // First 16 bytes of SHA-256("Crm\x1f1") with version/variant bits set.
        let digest = Sha256::digest(b"Crm\x1f1");
        let expected_hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let got_hex = id.replace('-', "");
        assert_eq!(&got_hex[..12], &expected_hex[..12]);
        assert_eq!(&got_hex[13..16], &expected_hex[13..16]);
        assert_eq!(&got_hex[17..], &expected_hex[17..]);
    }

    #[test]
    fn profile_id_comes_from_smallest_source_reference() {
        let config = config(email_rule(), "sourcePriority");
        let records = vec![
            rec("Shop", "9", 2, &[("email", "a@x.com")]),
            rec("Crm", "5", 1, &[("email", "a@x.com")]),
            rec("Crm", "10", 1, &[("email", "a@x.com")]),
        ];
        let out = unify(&config, records);
        assert_eq!(out.profiles.len(), 1);
        assert_eq!(out.profiles[0].customer_id, customer_id("Crm", "10"));
        let refs: Vec<(&str, &str)> = out.profiles[0]
            .sources
            .iter()
            .map(|s| (s.entity_name.as_str(), s.key.as_str()))
            .collect();
        assert_eq!(refs, vec![("Crm", "10"), ("Crm", "5"), ("Shop", "9")]);
        assert_eq!(
            serde_json::to_value(&out.profiles[0].sources[0]).unwrap(),
            json!({"entityName":"Crm","key":"10"})
        );
    }

    #[test]
    fn merge_source_priority() {
        let config = config(email_rule(), "sourcePriority");
        let records = vec![
            rec(
                "Shop",
                "s",
                2,
                &[
                    ("email", "A@x.com"),
                    ("firstName", "Shop"),
                    ("city", "Köln"),
                ],
            ),
            rec(
                "Crm",
                "c",
                1,
                &[("email", "a@x.com"), ("firstName", "Crm"), ("phone", "  ")],
            ),
            rec(
                "Loyalty",
                "l",
                3,
                &[("email", "a@X.com"), ("phone", "123"), ("city", "Bonn")],
            ),
            // Same priority as Shop: the entity name breaks the tie ("Other" < "Shop").
            rec(
                "Other",
                "o",
                2,
                &[
                    ("email", "a@x.com"),
                    ("lastName", "Other"),
                    ("city", "Essen"),
                ],
            ),
        ];
        let out = unify(&config, records);
        assert_eq!(out.profiles.len(), 1);
        assert_eq!(
            Value::Object(out.profiles[0].fields.clone()),
            json!({"email":"a@x.com","firstName":"Crm","lastName":"Other","city":"Essen","phone":"123"})
        );
    }

    #[test]
    fn merge_most_recent() {
        let config = config(email_rule(), "mostRecent");
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let mut old = rec(
            "Crm",
            "c",
            1,
            &[("email", "a@x.com"), ("city", "Old"), ("phone", "1")],
        );
        old.updated_at = at("2023-01-01T00:00:00Z");
        let mut new = rec("Shop", "s", 2, &[("email", "A@X.COM"), ("city", "New")]);
        new.updated_at = at("2024-06-01T00:00:00Z");
        let undated = rec(
            "Loyalty",
            "l",
            0,
            &[("email", "a@x.com"), ("city", "Undated"), ("lastName", "L")],
        );
        let out = unify(&config, vec![old, undated, new]);
        assert_eq!(
            Value::Object(out.profiles[0].fields.clone()),
            json!({"email":"A@X.COM","city":"New","phone":"1","lastName":"L"})
        );
        // Without any timestamp it is source priority.
        let records = vec![
            rec("Crm", "c", 2, &[("email", "a@x.com"), ("city", "Crm")]),
            rec("Shop", "s", 1, &[("email", "a@x.com"), ("city", "Shop")]),
        ];
        let out = unify(&config, records);
        assert_eq!(out.profiles[0].fields["city"], json!("Shop"));
    }

    #[test]
    fn merge_most_complete() {
        let config = config(email_rule(), "mostComplete");
        let records = vec![
            rec(
                "Crm",
                "c",
                1,
                &[("email", "a@x.com"), ("city", "Crm"), ("phone", " ")],
            ),
            rec(
                "Shop",
                "s",
                2,
                &[
                    ("email", "A@x.com"),
                    ("city", "Shop"),
                    ("firstName", "S"),
                    ("lastName", "Shop"),
                ],
            ),
            rec(
                "Loyalty",
                "l",
                3,
                &[("email", "a@X.com"), ("phone", "9"), ("lastName", "L")],
            ),
        ];
        let out = unify(&config, records);
        assert_eq!(
            Value::Object(out.profiles[0].fields.clone()),
            json!({"email":"A@x.com","city":"Shop","firstName":"S","lastName":"Shop","phone":"9"})
        );
    }

    #[test]
    fn validation_errors() {
        let ok = config(
            json!([{"name":"n","conditions":[{"field":"lastName","normalization":"exact","precision":"fuzzy","threshold":1.0}]}]),
            "sourcePriority",
        );
        ok.validate().unwrap();
        let expect = |mutate: &dyn Fn(&mut UnificationConfig), needle: &str| {
            let mut c = ok.clone();
            mutate(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        };
        expect(&|c| c.sources.clear(), "at least one source");
        expect(
            &|c| c.sources[1].entity_name = "Crm".into(),
            "more than once",
        );
        expect(
            &|c| c.sources[1].entity_name = " ".into(),
            "entityName must not be empty",
        );
        expect(
            &|c| c.sources[0].fields.clear(),
            "at least one profile field",
        );
        expect(
            &|c| {
                c.sources[0].fields.insert("CustomerId".into(), "Id".into());
            },
            "reserved",
        );
        expect(
            &|c| {
                c.sources[0].fields.insert("x".into(), "".into());
            },
            "empty column name",
        );
        expect(
            &|c| {
                c.sources[0].fields.insert("".into(), "X".into());
            },
            "profile field name is empty",
        );
        expect(&|c| c.rules[0].name = "".into(), "name must not be empty");
        expect(&|c| c.rules.push(c.rules[0].clone()), "used more than once");
        expect(&|c| c.rules[0].conditions.clear(), "at least one condition");
        expect(
            &|c| c.rules[0].conditions[0].field = "Email".into(),
            "not a profile field",
        );
        expect(
            &|c| c.rules[0].conditions[0].threshold = None,
            "needs a threshold",
        );
        expect(
            &|c| c.rules[0].conditions[0].threshold = Some(0.0),
            "threshold must be in (0, 1]",
        );
        expect(
            &|c| c.rules[0].conditions[0].threshold = Some(1.01),
            "threshold must be in (0, 1]",
        );
        expect(
            &|c| c.rules[0].conditions[0].threshold = Some(f64::NAN),
            "threshold must be in (0, 1]",
        );
        expect(
            &|c| c.rules[0].conditions[0].precision = Precision::Exact,
            "applies only to fuzzy",
        );
        // A field mapped by only one of the sources is fine; no rules at all is fine too.
        let mut c = ok.clone();
        c.sources[2]
            .fields
            .insert("loyaltyTier".into(), "tier".into());
        c.rules[0].conditions[0].field = "loyaltyTier".into();
        c.validate().unwrap();
        c.rules.clear();
        c.validate().unwrap();
    }

    #[test]
    fn map_item_applies_fields() {
        let source: SourceConfig = serde_json::from_value(json!({
            "entityName":"Crm","priority":1,
            "fields":{"email":"Email","age":"Age","vip":"Vip","city":"City","phone":"Phone","tags":"Tags","zip":"Zip","missing":"Nope"}
        }))
        .unwrap();
        let item = json!({"Email":"a@x.com","Age":42,"Vip":true,"City":"  ","Phone":null,"Tags":["a"],"Zip":1.5,"Other":"x"});
        let mapped = map_item(&source, item.as_object().unwrap());
        let expected: BTreeMap<String, String> = [
            ("email", "a@x.com"),
            ("age", "42"),
            ("vip", "true"),
            ("zip", "1.5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(mapped, expected);
        assert_eq!(
            RecordMapper::new(&source).map_item(item.as_object().unwrap().clone()),
            expected
        );
        let r = source_record(&source, "k1", item.as_object().unwrap(), None);
        assert_eq!(
            (r.entity_name.as_str(), r.key.as_str(), r.priority),
            ("Crm", "k1", 1)
        );
        assert_eq!(r.fields, expected);
    }

    #[test]
    fn record_mapper_copies_a_column_mapped_twice() {
        let source: SourceConfig = serde_json::from_value(json!({
            "entityName":"Crm","priority":1,
            "fields":{"a":"Email","b":"Email","c":"City"}
        }))
        .unwrap();
        let item = json!({"Email":"a@x.com","City":"Berlin"});
        let owned = RecordMapper::new(&source).map_item(item.as_object().unwrap().clone());
        assert_eq!(owned, map_item(&source, item.as_object().unwrap()));
        assert_eq!(owned.len(), 3);
    }

    #[test]
    fn timestamps() {
        let t = |s: &str| parse_timestamp(&json!(s)).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2024-05-01T10:00:00+02:00").as_deref(),
            Some("2024-05-01T08:00:00+00:00")
        );
        assert_eq!(
            t("2024-05-01T10:00:00Z").as_deref(),
            Some("2024-05-01T10:00:00+00:00")
        );
        assert_eq!(
            t("2024-05-01 10:00:00").as_deref(),
            Some("2024-05-01T10:00:00+00:00")
        );
        assert_eq!(
            t("2024-05-01").as_deref(),
            Some("2024-05-01T00:00:00+00:00")
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(parse_timestamp(&json!(12)), None);
    }

    #[test]
    fn large_blocks_use_sorted_neighbourhood() {
        let rules = json!([{"name":"fuzzy","conditions":[
            {"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9}]}]);
        let config = config(rules, "sourcePriority");
        let names = [
            "Johnson", "Jonhson", "Xavier", "Williams", "Wiliams", "Brown", "Smithson", "Zmithson",
            "Anderson", "Thompson", "Garcia", "Martinez",
        ];
        let records: Vec<SourceRecord> = names
            .iter()
            .enumerate()
            .map(|(i, n)| rec("Crm", &format!("{i:02}"), 1, &[("lastName", n)]))
            .collect();
        let expected = cl(&[
            &["Crm/00", "Crm/01"],
            &["Crm/02"],
            &["Crm/03", "Crm/04"],
            &["Crm/05"],
            &["Crm/06", "Crm/07"],
            &["Crm/08"],
            &["Crm/09"],
            &["Crm/10"],
            &["Crm/11"],
        ]);
        assert!(strsim::jaro_winkler("smithson", "zmithson") >= 0.9);
        // Pairwise (default limits) and sorted neighbourhood with the smallest window agree here:
        // "smithson"/"zmithson" differ in the first letter and are only neighbours when sorted
        // by the reversed value.
        let out = unify(&config, records.clone());
        assert_eq!(clusters(&out), expected);
        let tiny = MatchLimits {
            max_pairwise_block: 2,
            window: 1,
            threads: 1,
        };
        let out = unify_with_limits(&config, records, tiny);
        assert_eq!(clusters(&out), expected);
    }

    #[test]
    fn jaro_winkler_matches_strsim() {
        fn next(state: &mut u64) -> usize {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*state >> 33) as usize
        }
        fn gen(state: &mut u64, alphabet: &[char], max: usize) -> String {
            let len = next(state) % (max + 1);
            (0..len)
                .map(|_| alphabet[next(state) % alphabet.len()])
                .collect()
        }
        let mut state = 11u64;
        let alphabets: [&[char]; 3] = [
            &['a', 'b', 'c'],
            &[
                'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'k', 'l', 'm', 'n',
            ],
            &['a', 'é', 'b', 'ß'],
        ];
        for round in 0..30_000 {
            let alphabet = alphabets[round % 3];
            let max = if round % 10 == 0 { 70 } else { 12 };
            let a = gen(&mut state, alphabet, max);
            let mut b = if round % 2 == 0 {
                a.clone()
            } else {
                gen(&mut state, alphabet, max)
            };
            if round % 2 == 0 && !b.is_empty() {
                // A few edits of `a`.
                let mut chars: Vec<char> = b.chars().collect();
                let len = chars.len();
                let p = next(&mut state) % len;
                chars.swap(p, (p + 1) % len);
                let at = next(&mut state) % (len + 1);
                chars.insert(at, alphabet[next(&mut state) % alphabet.len()]);
                b = chars.into_iter().collect();
            }
            let ours = jaro_winkler(&a, &b);
            let reference = strsim::jaro_winkler(&a, &b);
            assert_eq!(
                ours.to_bits(),
                reference.to_bits(),
                "{a:?} vs {b:?}: {ours} != {reference}"
            );
            let bound = jaro_winkler_upper_bound(&a, a.chars().count(), &b, b.chars().count());
            assert!(
                bound + 1e-9 >= reference,
                "{a:?} vs {b:?}: bound {bound} < {reference}"
            );
        }
        for (a, b) in [
            ("", ""),
            ("", "a"),
            ("a", ""),
            ("martha", "marhta"),
            ("dixon", "dicksonx"),
            ("a", "a"),
        ] {
            assert_eq!(
                jaro_winkler(a, b).to_bits(),
                strsim::jaro_winkler(a, b).to_bits()
            );
        }
    }

    #[test]
    fn long_values_exact_in_full_fuzzy_on_a_prefix() {
        let long = "x".repeat(70);
        let records = || {
            vec![
                rec("Crm", "1", 1, &[("lastName", &format!("{long}a"))]),
                rec("Crm", "2", 1, &[("lastName", &format!("{long}b"))]),
            ]
        };
        let exact = json!([{"name":"exact","conditions":[
            {"field":"lastName","normalization":"exact","precision":"exact"}]}]);
        assert_eq!(
            unify(&config(exact, "sourcePriority"), records()).unified_profiles,
            2
        );
        let fuzzy = json!([{"name":"fuzzy","conditions":[
            {"field":"lastName","normalization":"exact","precision":"fuzzy","threshold":1.0}]}]);
        assert_eq!(
            unify(&config(fuzzy, "sourcePriority"), records()).unified_profiles,
            1
        );
        // The same feature used exactly elsewhere keeps full values for the exact rule.
        let both = json!([
            {"name":"exact","conditions":[{"field":"lastName","normalization":"exact","precision":"exact"}]},
            {"name":"fuzzy","conditions":[
                {"field":"lastName","normalization":"exact","precision":"fuzzy","threshold":0.5},
                {"field":"city","normalization":"exact","precision":"exact"}]}
        ]);
        assert_eq!(
            unify(&config(both, "sourcePriority"), records()).unified_profiles,
            2
        );
    }

    #[test]
    fn fuzzy_comparison_is_bounded() {
        let long_a = "a".repeat(10_000);
        let mut long_b = long_a.clone();
        long_b.push('b');
        // Only the first MAX_FUZZY_CHARS characters are compared.
        assert!(similar(&long_a, &long_b, 1.0));
        assert_eq!(fuzzy_prefix(&"é".repeat(100)).1, MAX_FUZZY_CHARS);
        assert_eq!(fuzzy_prefix("éa"), ("éa", 2));
        // Length bound: 0.8 + 0.2 * 2/10 = 0.84 < 0.9.
        assert!(!similar("ab", "abcdefghij", 0.9));
        assert!(similar("ab", "ab", 1.0));
    }

    fn fixture() -> (UnificationConfig, Vec<SourceRecord>) {
        let rules = json!([
            {"name":"same email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]},
            {"name":"same phone","conditions":[{"field":"phone","normalization":"phone","precision":"exact"}]},
            {"name":"name and city","conditions":[
                {"field":"firstName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.85},
                {"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9},
                {"field":"city","normalization":"case-insensitive","precision":"exact"}]}
        ]);
        let config = config(rules, "sourcePriority");
        config.validate().unwrap();
        let p = |e: &str| match e {
            "Crm" => 1,
            "Shop" => 2,
            _ => 3,
        };
        let r =
            |e: &str, k: &str, email: &str, first: &str, last: &str, phone: &str, city: &str| {
                rec(
                    e,
                    k,
                    p(e),
                    &[
                        ("email", email),
                        ("firstName", first),
                        ("lastName", last),
                        ("phone", phone),
                        ("city", city),
                    ],
                )
            };
        let records = vec![
            r(
                "Crm",
                "c1",
                "anna.schmidt@example.com",
                "Anna",
                "Schmidt",
                "+49 30 1111111",
                "Berlin",
            ),
            r(
                "Crm",
                "c2",
                "bernd@example.com",
                "Bernd",
                "Meyer",
                "030 2222222",
                "Hamburg",
            ),
            r(
                "Crm",
                "c3",
                "carla@example.com",
                "Carla",
                "Weber",
                "",
                "Köln",
            ),
            r(
                "Crm",
                "c4",
                "dieter@example.com",
                "Dieter",
                "Fischer",
                "+49 89 4444444",
                "München",
            ),
            r(
                "Crm",
                "c5",
                "eva.becker@example.com",
                "Eva",
                "Becker",
                "",
                "Berlin",
            ),
            r(
                "Crm",
                "c6",
                "",
                "Frank",
                "Wagner",
                "+49 40 6666666",
                "Hamburg",
            ),
            r(
                "Crm",
                "c7",
                "greta@example.com",
                "Greta",
                "Hoffmann",
                "",
                "Stuttgart",
            ),
            r(
                "Shop",
                "s1",
                " Anna.Schmidt@Example.com ",
                "Anna",
                "Schmidt",
                "",
                "Berlin",
            ),
            r(
                "Shop",
                "s2",
                "bernd.meier@shop.example",
                "Bernd",
                "Meier",
                "0302222222",
                "Hamburg",
            ),
            r(
                "Shop",
                "s3",
                "carla.w@shop.example",
                "Karla",
                "Weber",
                "",
                "KÖLN",
            ),
            r(
                "Shop",
                "s4",
                "",
                "Dieter",
                "Fischer",
                "+49 (89) 444-4444",
                "Munich",
            ),
            r(
                "Shop",
                "s5",
                "eva@other.example",
                "Eva",
                "Becker",
                "",
                "Hamburg",
            ),
            r(
                "Shop",
                "s6",
                "frank@shop.example",
                "Frank",
                "Wagner",
                "",
                "hamburg",
            ),
            r(
                "Shop",
                "s7",
                "hans@example.com",
                "Hans",
                "Zimmer",
                "",
                "Berlin",
            ),
            r(
                "Loyalty",
                "l1",
                "ANNA.SCHMIDT@EXAMPLE.COM",
                "",
                "",
                "030 9999999",
                "",
            ),
            r(
                "Loyalty",
                "l2",
                "ingrid@example.com",
                "Ingrid",
                "Schulz",
                "0309999999",
                "Potsdam",
            ),
            r("Loyalty", "l3", "", "Bernd", "Meyer", "", "Hamburg"),
            r("Loyalty", "l4", "", "Greta", "Hofmann", "", "Stuttgart"),
            r("Loyalty", "l5", "  ", "  ", "", "n/a", " "),
            r("Loyalty", "l6", "", "", " ", "-", ""),
            r(
                "Loyalty",
                "l7",
                "jonas@example.com",
                "Jonas",
                "Wolf",
                "0351 777",
                "Dresden",
            ),
        ];
        (config, records)
    }

    #[test]
    fn fixture_clusters() {
        let (config, records) = fixture();
        let out = unify(&config, records);
        assert_eq!(
            clusters(&out),
            cl(&[
                &["Crm/c1", "Shop/s1", "Loyalty/l1", "Loyalty/l2"],
                &["Crm/c2", "Shop/s2", "Loyalty/l3"],
                &["Crm/c3", "Shop/s3"],
                &["Crm/c4", "Shop/s4"],
                &["Crm/c5"],
                &["Crm/c6", "Shop/s6"],
                &["Crm/c7", "Loyalty/l4"],
                &["Shop/s5"],
                &["Shop/s7"],
                &["Loyalty/l5"],
                &["Loyalty/l6"],
                &["Loyalty/l7"],
            ])
        );
        assert_eq!(out.source_records, 21);
        assert_eq!(out.unified_profiles, 12);
        assert_eq!(out.matched_records, 15);
        // Sorted by customer id, each id derived from the cluster's smallest reference.
        assert!(out
            .profiles
            .windows(2)
            .all(|w| w[0].customer_id < w[1].customer_id));
        for p in &out.profiles {
            assert_eq!(
                p.customer_id,
                customer_id(&p.sources[0].entity_name, &p.sources[0].key)
            );
        }
        let anna = out
            .profiles
            .iter()
            .find(|p| p.sources[0].key == "c1")
            .unwrap();
        assert_eq!(
            Value::Object(anna.fields.clone()),
            json!({"email":"anna.schmidt@example.com","firstName":"Anna","lastName":"Schmidt","phone":"+49 30 1111111","city":"Berlin"})
        );
        let frank = out
            .profiles
            .iter()
            .find(|p| p.sources[0].key == "c6")
            .unwrap();
        assert_eq!(frank.fields["email"], json!("frank@shop.example"));
        let empty = out
            .profiles
            .iter()
            .find(|p| p.sources[0].key == "l5")
            .unwrap();
        assert_eq!(Value::Object(empty.fields.clone()), json!({"phone":"n/a"}));
        // With sorted neighbourhood forced everywhere the fixture gives the same clusters.
        let (config, records) = fixture();
        let tiny = MatchLimits {
            max_pairwise_block: 1,
            window: 2,
            threads: 3,
        };
        assert_eq!(
            clusters(&unify_with_limits(&config, records, tiny)),
            clusters(&out)
        );
    }

    #[test]
    fn stable_ids_across_shuffled_runs() {
        let (config, records) = fixture();
        let first = unify(&config, records.clone());
        for seed in 1..6u64 {
            let mut shuffled = records.clone();
            // Deterministic Fisher-Yates with an LCG.
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = (state >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            assert_eq!(unify(&config, shuffled), first);
        }
    }

    #[test]
    fn thread_count_and_limits_do_not_change_exact_results() {
        // 3,000 records with many near-duplicates; every policy, 1 vs 4 threads.
        let rules = json!([
            {"name":"email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]},
            {"name":"name and city","conditions":[
                {"field":"lastName","normalization":"alphanumeric","precision":"fuzzy","threshold":0.9},
                {"field":"city","normalization":"case-insensitive","precision":"exact"}]},
            {"name":"first and last","conditions":[
                {"field":"firstName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.95},
                {"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.95}]}
        ]);
        let syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo"];
        let mut state = 5u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut records = Vec::new();
        for i in 0..3000 {
            let last: String = (0..3).map(|_| syllables[next() % 8]).collect();
            let first: String = (0..2).map(|_| syllables[next() % 8]).collect();
            let city = format!("c{}", next() % 5);
            let email = format!("u{}@x.org", next() % 2500);
            let entity = ["Crm", "Shop", "Loyalty"][i % 3];
            let mut r = rec(
                entity,
                &format!("{i}"),
                (i % 3) as i64,
                &[
                    ("email", &email),
                    ("firstName", &first),
                    ("lastName", &last),
                    ("city", &city),
                ],
            );
            r.updated_at = DateTime::from_timestamp(1_700_000_000 + (next() % 1000) as i64, 0);
            records.push(r);
        }
        for policy in ["sourcePriority", "mostRecent", "mostComplete"] {
            let config = config(rules.clone(), policy);
            let one = MatchLimits {
                threads: 1,
                ..MatchLimits::default()
            };
            let four = MatchLimits {
                threads: 4,
                ..MatchLimits::default()
            };
            let mut a = unify_with_limits(&config, records.clone(), one);
            let mut b = unify_with_limits(&config, records.clone(), four);
            assert!(a.matched_records > 0 && a.unified_profiles < 3000);
            assert!(a.profiles.iter().any(|p| !p.matched_by.is_empty()));
            // How many pairs a rule compared depends on how the work was split (a pair
            // already linked by the rule is not compared again); nothing else does.
            for r in a.rules.iter_mut().chain(b.rules.iter_mut()) {
                assert!(r.candidate_pairs >= r.pairs_matched, "{r:?}");
                r.candidate_pairs = 0;
            }
            assert_eq!(a, b, "{policy}");
        }
    }

    #[test]
    fn no_records_and_no_rules() {
        let (config, records) = fixture();
        let out = unify(&config, Vec::new());
        assert_eq!(
            (out.profiles.len(), out.source_records, out.matched_records),
            (0, 0, 0)
        );
        let mut no_rules = config.clone();
        no_rules.rules.clear();
        let out = unify(&no_rules, records);
        assert_eq!((out.unified_profiles, out.matched_records), (21, 0));
    }

    #[test]
    fn union_find_compresses() {
        let mut uf = UnionFind::new(6);
        uf.union(0, 1);
        uf.union(2, 3);
        uf.union(1, 3);
        uf.union(4, 5);
        assert_eq!(uf.find(0), uf.find(2));
        assert_ne!(uf.find(0), uf.find(4));
        let root = uf.find(3);
        assert!((0..4).all(|i| uf.find(i) == root));
        assert!((0..4).all(|i| uf.parent[i] as usize == root));
    }
}
