//! Indexes on the fields flows filter on. A `$filter` with `field eq value` among its top-level
//! `and` terms on an entity of some size makes SQLite index that field of that entity (an
//! expression index over the item's JSON, partial on the entity), in the background; from
//! then on such filters walk the index in key order instead of reading every item.
//!
//! The index expression must be written in the query exactly as in the index, so the field's
//! JSON path is an SQL string literal here (quotes doubled), the one place where a name from
//! the data enters SQL text; every value stays a bound parameter. Field names are those of the
//! entity's schema, checked by the engine before a query reaches the store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::item_sql::{field_path, literal_bind, Bind};
use crate::item_query::{CompareOp, Literal, Predicate};

/// Entities smaller than this are read whole faster than an index is built.
pub const MIN_ITEMS: i64 = 1_000;
/// At most this many field indexes per entity: each one costs every write of its items.
pub const MAX_PER_ENTITY: usize = 8;

const PREFIX: &str = "items_field_";

/// The field indexes that exist (loaded at open, then kept up to date) and those being built.
#[derive(Debug, Default)]
pub struct FieldIndexes {
    known: Mutex<HashSet<(i64, String)>>,
    building: Mutex<HashSet<(i64, String)>>,
}

/// What a query may do about one filtered field.
#[derive(Debug, PartialEq)]
pub enum Use {
    /// Use the index on this field, whose value the filter requires.
    Indexed(String, Bind),
    /// Build an index on this field (the caller builds it, then calls [`FieldIndexes::built`]).
    Build(String),
    Nothing,
}

impl FieldIndexes {
    /// From the names of the indexes in the database (`sqlite_master`).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        let known = names.into_iter().filter_map(parse_name).collect();
        Arc::new(Self {
            known: Mutex::new(known),
            building: Mutex::default(),
        })
    }

    /// For a query on entity `entity_id` of `item_count` items with `filter`: the index to use,
    /// or the one to build (claimed, so it is built once), or nothing.
    pub fn plan(&self, entity_id: i64, item_count: i64, filter: &Predicate) -> Use {
        let fields = top_level_equalities(filter);
        if fields.is_empty() {
            return Use::Nothing;
        }
        let known = self.known.lock().expect("field index lock");
        if let Some((field, value)) = fields
            .iter()
            .find(|(f, _)| known.contains(&(entity_id, f.to_string())))
        {
            return Use::Indexed(field.to_string(), literal_bind(value));
        }
        if item_count < MIN_ITEMS {
            return Use::Nothing;
        }
        let mut building = self.building.lock().expect("field index lock");
        let of_entity = known.iter().filter(|(e, _)| *e == entity_id).count()
            + building.iter().filter(|(e, _)| *e == entity_id).count();
        if of_entity >= MAX_PER_ENTITY {
            return Use::Nothing;
        }
        let field = fields[0].0.to_string();
        if building.insert((entity_id, field.clone())) {
            Use::Build(field)
        } else {
            Use::Nothing
        }
    }

    /// The end of a build that [`plan`](Self::plan) handed out; `ok`: the index exists now.
    pub fn built(&self, entity_id: i64, field: &str, ok: bool) {
        let key = (entity_id, field.to_string());
        self.building.lock().expect("field index lock").remove(&key);
        if ok {
            self.known.lock().expect("field index lock").insert(key);
        }
    }
}

/// The fields compared with `eq` to a value in the top-level `and` terms: an index on any of
/// them narrows the rows without changing the answer (the term is implied by the filter).
fn top_level_equalities(filter: &Predicate) -> Vec<(&str, &Literal)> {
    match filter {
        Predicate::Compare {
            field,
            op: CompareOp::Eq,
            value,
        } => vec![(field.as_str(), value)],
        Predicate::And(a, b) => {
            let mut fields = top_level_equalities(a);
            fields.extend(top_level_equalities(b));
            fields
        }
        _ => Vec::new(),
    }
}

/// The indexed expression of a field, as the index and the queries that use it write it.
pub fn expression(field: &str) -> String {
    format!(
        "json_extract(data, '{}')",
        field_path(field).replace('\'', "''")
    )
}

/// The index's name: the entity and the field's bytes in hex, so any field name gives a plain
/// identifier.
pub fn name(entity_id: i64, field: &str) -> String {
    let hex: String = field.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{entity_id}_{hex}")
}

fn parse_name(name: &str) -> Option<(i64, String)> {
    let (entity, hex) = name.strip_prefix(PREFIX)?.split_once('_')?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((entity.parse().ok()?, String::from_utf8(bytes).ok()?))
}

/// The statement that builds the index: partial on the entity (its id is an integer from the
/// database), over the generation, the field and the key, so the matches of one generation
/// come in key order, as pages are read.
pub fn create_sql(entity_id: i64, field: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON items (generation, {}, item_key) WHERE entity_id = {entity_id}",
        name(entity_id, field),
        expression(field)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::odata::tests_support::predicate;

    fn parse_filter(text: &str) -> Result<Predicate, ()> {
        Ok(predicate(text))
    }

    #[test]
    fn names_round_trip_any_field() {
        for field in ["City", "first name", "it's", "Größe", "a_b"] {
            assert_eq!(parse_name(&name(42, field)), Some((42, field.to_string())));
        }
        assert_eq!(parse_name("items_field_x_41"), None);
        assert_eq!(parse_name("other_index"), None);
        assert_eq!(expression("it's"), "json_extract(data, '$.\"it''s\"')");
    }

    #[test]
    fn only_top_level_equalities_with_a_value_qualify() {
        let fields = |text: &str| {
            top_level_equalities(&parse_filter(text).unwrap())
                .into_iter()
                .map(|(f, _)| f.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(fields("City eq 'Berlin' and Age gt 30"), ["City"]);
        assert_eq!(fields("(A eq 1 and B eq true) and C ne 2"), ["A", "B"]);
        assert!(fields("City eq 'Berlin' or Age eq 3").is_empty());
        assert!(fields("not (City eq 'Berlin')").is_empty());
        assert!(fields("City eq null").is_empty());
    }

    #[test]
    fn an_index_is_built_once_for_a_big_entity_and_used_once_built() {
        let indexes = FieldIndexes::from_names([]);
        let filter = parse_filter("City eq 'Berlin'").unwrap();
        assert_eq!(indexes.plan(1, MIN_ITEMS - 1, &filter), Use::Nothing);
        assert_eq!(
            indexes.plan(1, MIN_ITEMS, &filter),
            Use::Build("City".into())
        );
        assert_eq!(
            indexes.plan(1, MIN_ITEMS, &filter),
            Use::Nothing,
            "being built"
        );
        indexes.built(1, "City", true);
        assert_eq!(
            indexes.plan(1, 5, &filter),
            Use::Indexed("City".into(), Bind::Text("Berlin".into()))
        );
        assert_eq!(indexes.plan(2, 5, &filter), Use::Nothing, "another entity");
        for n in 0..MAX_PER_ENTITY {
            let f = parse_filter(&format!("F{n} eq 1")).unwrap();
            let planned = indexes.plan(3, MIN_ITEMS, &f);
            assert_eq!(planned, Use::Build(format!("F{n}")));
        }
        let one_more = parse_filter("G eq 1").unwrap();
        assert_eq!(indexes.plan(3, MIN_ITEMS, &one_more), Use::Nothing);
    }
}
