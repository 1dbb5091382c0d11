//! Entity schemas inferred from items, one rule for every writer (ingestion, item writes,
//! unification): per field `integer`, `number`, `string`, `boolean`, `object` or `array`, and
//! `string` with `format: date` / `format: date-time` when every value of the field is one (see
//! [`super::column_types`]); integer mixed with number gives `number`, any other mix `string`;
//! an explicit `null` keeps the type and marks the field `x-nullable` (how Power Automate reads a
//! dynamic schema: Swagger 2.0 has no null type); a field only ever `null` is a nullable `string`.

use serde_json::{json, Map, Value};

use super::column_types::{is_date, is_date_time};

/// How queries read the column a schema property describes (one reading of the schema for
/// writes and queries alike).
pub fn query_type(property: &Value) -> crate::item_query::Type {
    use crate::item_query::Type;
    match FieldType::from_property(property) {
        Some(FieldType::Boolean) => Type::Boolean,
        Some(FieldType::Integer) => Type::Integer,
        Some(FieldType::Number) => Type::Number,
        Some(FieldType::Date) => Type::Date,
        Some(FieldType::DateTime) => Type::DateTime,
        Some(FieldType::Object | FieldType::Array) => Type::Json,
        Some(FieldType::Null | FieldType::String) | None => Type::String,
    }
}

/// The schema of one field.
pub fn property(field: &str, t: FieldType, nullable: bool) -> Value {
    let mut p = json!({
        "type": t.name(),
        "x-ms-summary": field,
        "description": format!("The {field} field."),
    });
    if let Some(format) = t.format() {
        p["format"] = json!(format);
    }
    if t == FieldType::Array {
        p["items"] = json!({});
    }
    if nullable {
        p["x-nullable"] = json!(true);
    }
    p
}

/// The schema of an entity without items.
pub fn empty_schema() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// Widens a stored schema so it describes `item` too (fields are added, types generalised).
/// A date or date-time property stays one while the values fit; a new field is typed by its JSON
/// kind alone (one item is too little to call a string a date).
pub fn widen_schema(schema: &mut Value, item: &Map<String, Value>) {
    if !schema.is_object() {
        *schema = empty_schema();
    }
    let props = schema
        .as_object_mut()
        .expect("object")
        .entry("properties")
        .or_insert_with(|| json!({}));
    let Some(props) = props.as_object_mut() else {
        return;
    };
    for (field, value) in item {
        match props.get_mut(field) {
            Some(existing) => {
                if value.is_null() {
                    existing["x-nullable"] = json!(true);
                    continue;
                }
                let old = FieldType::from_property(existing);
                let t = match old {
                    Some(FieldType::Date | FieldType::DateTime) => FieldType::guess(value),
                    _ => FieldType::of(value),
                };
                let new = old.map_or(t, |old| old.join(t));
                if old != Some(new) {
                    let p = existing.as_object_mut().expect("indexed as an object");
                    p.insert("type".into(), json!(new.name()));
                    match new.format() {
                        Some(format) => p.insert("format".into(), json!(format)),
                        None => p.remove("format"),
                    };
                }
            }
            None => {
                let t = FieldType::of(value);
                props.insert(field.clone(), property(field, t, t == FieldType::Null));
            }
        }
    }
}

/// Whether `item` fits the columns `schema` already has: `null` fits any column, an integer
/// column takes JSON integers, a number column any number, a date (date-time) column a string
/// that is one; fields the schema does not have always fit.
pub fn check_item(schema: &Value, item: &Map<String, Value>) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (field, value) in item {
        let Some(column) = props.get(field).and_then(FieldType::from_property) else {
            continue;
        };
        let fits = match (column, value) {
            (_, Value::Null) | (FieldType::Null, _) => true,
            (FieldType::Boolean, v) => v.is_boolean(),
            (FieldType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (FieldType::Number, v) => v.is_number(),
            (FieldType::String, v) => v.is_string(),
            (FieldType::Date, Value::String(s)) => is_date(s),
            (FieldType::DateTime, Value::String(s)) => is_date_time(s),
            (FieldType::Object, v) => v.is_object(),
            (FieldType::Array, v) => v.is_array(),
            _ => false,
        };
        if !fits {
            return Err(format!(
                "field '{field}' is {} column; got {}",
                column.with_article(),
                describe(value)
            ));
        }
    }
    Ok(())
}

/// A value as an error message names it.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if shown.len() < s.len() { "…" } else { "" };
            format!("the string {}{more}", Value::String(shown))
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Incrementally infers a JSON Schema for items; feed batches with [`SchemaBuilder::observe`].
#[derive(Clone, Debug, Default)]
pub struct SchemaBuilder {
    /// Per field: the joined type and whether an explicit `null` was seen.
    fields: std::collections::BTreeMap<String, (FieldType, bool)>,
    /// A field kept as plain text (the key: identifiers get no format).
    key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Only `null` seen so far.
    Null,
    Boolean,
    Integer,
    Number,
    String,
    /// A string that is a `YYYY-MM-DD` date.
    Date,
    /// A string that is an RFC 3339 date-time.
    DateTime,
    Object,
    Array,
}

impl FieldType {
    /// The JSON kind of a value (strings are plain strings).
    fn of(v: &Value) -> FieldType {
        match v {
            Value::Null => FieldType::Null,
            Value::Bool(_) => FieldType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => FieldType::Integer,
            Value::Number(_) => FieldType::Number,
            Value::String(_) => FieldType::String,
            Value::Array(_) => FieldType::Array,
            Value::Object(_) => FieldType::Object,
        }
    }

    /// Like [`FieldType::of`], but a string that is a date or a date-time says so.
    fn guess(v: &Value) -> FieldType {
        match v {
            Value::String(s) if is_date(s) => FieldType::Date,
            Value::String(s) if is_date_time(s) => FieldType::DateTime,
            _ => FieldType::of(v),
        }
    }

    fn join(self, other: FieldType) -> FieldType {
        use FieldType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Integer, Number) | (Number, Integer) => Number,
            _ => String,
        }
    }

    /// The type a stored property states; `None` without a `type` (an unknown name counts as
    /// `string`).
    fn from_property(p: &Value) -> Option<FieldType> {
        let t = match p.get("type")?.as_str()? {
            "boolean" => FieldType::Boolean,
            "integer" => FieldType::Integer,
            "number" => FieldType::Number,
            "object" => FieldType::Object,
            "array" => FieldType::Array,
            _ => match p.get("format").and_then(Value::as_str) {
                Some("date") => FieldType::Date,
                Some("date-time") => FieldType::DateTime,
                _ => FieldType::String,
            },
        };
        Some(t)
    }

    fn name(self) -> &'static str {
        match self {
            FieldType::Null | FieldType::String | FieldType::Date | FieldType::DateTime => "string",
            FieldType::Boolean => "boolean",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Object => "object",
            FieldType::Array => "array",
        }
    }

    fn format(self) -> Option<&'static str> {
        match self {
            FieldType::Date => Some("date"),
            FieldType::DateTime => Some("date-time"),
            _ => None,
        }
    }

    fn with_article(self) -> &'static str {
        match self {
            FieldType::Null | FieldType::String => "a string",
            FieldType::Boolean => "a boolean",
            FieldType::Integer => "an integer",
            FieldType::Number => "a number",
            FieldType::Date => "a date",
            FieldType::DateTime => "a date-time",
            FieldType::Object => "an object",
            FieldType::Array => "an array",
        }
    }
}

impl SchemaBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder whose `key_field` stays a plain string whatever its values look like.
    pub fn with_key(key_field: &str) -> Self {
        SchemaBuilder {
            key: Some(key_field.to_owned()),
            ..Self::default()
        }
    }

    pub fn observe(&mut self, item: &Map<String, Value>) {
        for (name, value) in item {
            let plain = self.key.as_deref() == Some(name.as_str());
            match self.fields.get_mut(name) {
                Some((existing, nullable)) => {
                    // A plain string column stays one: skip the date checks.
                    let t = if plain || *existing == FieldType::String {
                        FieldType::of(value)
                    } else {
                        FieldType::guess(value)
                    };
                    *existing = existing.join(t);
                    *nullable |= t == FieldType::Null;
                }
                None => {
                    let t = if plain {
                        FieldType::of(value)
                    } else {
                        FieldType::guess(value)
                    };
                    self.fields.insert(name.clone(), (t, t == FieldType::Null));
                }
            }
        }
    }

    /// `{"type":"object","properties":{field: property}}`, fields sorted (see [`property`]).
    pub fn finish(&self) -> Value {
        let properties: Map<String, Value> = self
            .fields
            .iter()
            .map(|(name, (t, nullable))| (name.clone(), property(name, *t, *nullable)))
            .collect();
        json!({ "type": "object", "properties": properties })
    }
}

/// Infers a JSON Schema object from items with [`SchemaBuilder`].
pub fn infer_schema<'a>(items: impl Iterator<Item = &'a Map<String, Value>>) -> Value {
    let mut builder = SchemaBuilder::new();
    for item in items {
        builder.observe(item);
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn schema_inference() {
        let items = [
            obj(json!({"a":1,"b":1,"c":"x","d":true,"e":null,"f":{"k":1},"g":[1],"h":1})),
            obj(json!({"a":2,"b":2.5,"c":3,"d":false,"e":null,"h":true})),
            obj(json!({"a":null,"i":-3})),
        ];
        let schema = infer_schema(items.iter());
        let t = |f: &str| schema["properties"][f]["type"].as_str().unwrap().to_owned();
        assert_eq!(schema["type"], json!("object"));
        assert_eq!(t("a"), "integer");
        assert_eq!(t("b"), "number");
        assert_eq!(t("c"), "string");
        assert_eq!(t("d"), "boolean");
        assert_eq!(t("e"), "string");
        assert_eq!(t("f"), "object");
        assert_eq!(t("g"), "array");
        assert_eq!(t("h"), "string");
        assert_eq!(t("i"), "integer");
        assert_eq!(
            schema["properties"]["a"],
            json!({"type":"integer","x-ms-summary":"a","description":"The a field.","x-nullable":true})
        );
        assert_eq!(
            schema["properties"]["i"],
            json!({"type":"integer","x-ms-summary":"i","description":"The i field."})
        );
        assert_eq!(schema["properties"]["e"]["x-nullable"], json!(true));
        assert_eq!(
            infer_schema(std::iter::empty()),
            json!({"type":"object","properties":{}})
        );
    }

    fn widened(items: &[Value]) -> Value {
        let mut schema = empty_schema();
        for item in items {
            widen_schema(&mut schema, item.as_object().unwrap());
        }
        schema
    }

    #[test]
    fn explicit_nulls_mark_a_field_nullable_without_changing_its_type() {
        let schema = widened(&[json!({"age": 41, "name": "Ann"}), json!({"age": null})]);
        assert_eq!(schema["properties"]["age"]["type"], "integer");
        assert_eq!(schema["properties"]["age"]["x-nullable"], true);
        assert!(schema["properties"]["name"].get("x-nullable").is_none());

        let only_null = widened(&[json!({"note": null})]);
        assert_eq!(only_null["properties"]["note"]["type"], "string");
        assert_eq!(only_null["properties"]["note"]["x-nullable"], true);
    }

    #[test]
    fn types_widen_integer_to_number_and_mixes_to_string() {
        let schema = widened(&[
            json!({"a": 1, "b": 1, "c": [1]}),
            json!({"a": 2.5, "b": "x", "c": [2]}),
        ]);
        assert_eq!(schema["properties"]["a"]["type"], "number");
        assert_eq!(schema["properties"]["b"]["type"], "string");
        assert_eq!(schema["properties"]["c"]["type"], "array");
        assert_eq!(schema["properties"]["c"]["items"], json!({}));
    }

    #[test]
    fn dates_and_date_times_get_a_format() {
        let items = [
            obj(
                json!({"d":"2024-01-31","t":"2024-01-31T10:00:00Z","w":"2024-01-31","k":"2024-01-01"}),
            ),
            obj(
                json!({"d":null,"t":"2024-01-31T10:00:00.1234567+02:00","w":"soon","k":"2024-01-02"}),
            ),
            obj(json!({"d":"2024-02-29","t":"2024-02-01T00:00:00-05:00","w":"2024-03-01"})),
        ];
        let schema = infer_schema(items.iter());
        assert_eq!(
            schema["properties"]["d"],
            json!({"type":"string","format":"date","x-ms-summary":"d","description":"The d field.","x-nullable":true})
        );
        assert_eq!(schema["properties"]["t"]["format"], "date-time");
        assert!(schema["properties"]["w"].get("format").is_none());
        assert_eq!(schema["properties"]["k"]["format"], "date");
        // The key stays plain text.
        let mut keyed = SchemaBuilder::with_key("k");
        items.iter().for_each(|i| keyed.observe(i));
        let keyed = keyed.finish();
        assert_eq!(keyed["properties"]["k"]["type"], "string");
        assert!(keyed["properties"]["k"].get("format").is_none());
        assert_eq!(keyed["properties"]["d"]["format"], "date");
        // A date column next to a date-time is plain text.
        let mixed = infer_schema(
            [
                obj(json!({"x":"2024-01-31"})),
                obj(json!({"x":"2024-01-31T10:00:00Z"})),
            ]
            .iter(),
        );
        assert!(mixed["properties"]["x"].get("format").is_none());
    }

    #[test]
    fn widening_keeps_formats_and_does_not_guess_new_fields() {
        let mut schema = infer_schema(
            [obj(
                json!({"d":"2024-01-31","t":"2024-01-31T10:00:00Z","n":1}),
            )]
            .iter(),
        );
        let before = schema.clone();
        widen_schema(
            &mut schema,
            &obj(json!({"d":"2025-06-30","t":"2025-01-01T00:00:00+01:00","new":"2024-01-31"})),
        );
        assert_eq!(schema["properties"]["d"], before["properties"]["d"]);
        assert_eq!(schema["properties"]["t"], before["properties"]["t"]);
        assert_eq!(
            schema["properties"]["new"],
            json!({"type":"string","x-ms-summary":"new","description":"The new field."})
        );
        widen_schema(&mut schema, &obj(json!({"d":null})));
        assert_eq!(schema["properties"]["d"]["format"], "date");
        assert_eq!(schema["properties"]["d"]["x-nullable"], true);
        // A value that is no date generalises the column to plain text.
        widen_schema(&mut schema, &obj(json!({"d":"later","n":"x"})));
        assert_eq!(schema["properties"]["d"]["type"], "string");
        assert!(schema["properties"]["d"].get("format").is_none());
        assert_eq!(schema["properties"]["n"]["type"], "string");
    }

    #[test]
    fn check_item_fits_values_to_columns() {
        let schema = infer_schema(
            [obj(json!({
                "postcode":"0812","n":1,"x":1.5,"b":true,"d":"2024-01-31",
                "t":"2024-01-31T10:00:00Z","o":{"a":1},"a":[1]
            }))]
            .iter(),
        );
        let check = |item: Value| check_item(&schema, item.as_object().unwrap());
        assert_eq!(
            check(
                json!({"postcode":"4223","n":-3,"x":2,"b":false,"d":"2024-02-29",
                "t":"2024-01-31T10:00:00.1234567+02:00","o":{},"a":[],"other":5})
            ),
            Ok(())
        );
        let nulls =
            json!({"postcode":null,"n":null,"x":null,"b":null,"d":null,"t":null,"o":null,"a":null});
        assert_eq!(check(nulls), Ok(()));
        assert_eq!(check(json!({"x":7.25})), Ok(()));
        assert_eq!(
            check(json!({"postcode":4223})),
            Err("field 'postcode' is a string column; got the number 4223".into())
        );
        assert_eq!(
            check(json!({"n":1.5})),
            Err("field 'n' is an integer column; got the number 1.5".into())
        );
        assert_eq!(
            check(json!({"n":"1"})),
            Err("field 'n' is an integer column; got the string \"1\"".into())
        );
        assert_eq!(
            check(json!({"x":true})),
            Err("field 'x' is a number column; got the boolean true".into())
        );
        assert_eq!(
            check(json!({"b":"true"})),
            Err("field 'b' is a boolean column; got the string \"true\"".into())
        );
        assert_eq!(
            check(json!({"d":"2023-02-29"})),
            Err("field 'd' is a date column; got the string \"2023-02-29\"".into())
        );
        assert_eq!(
            check(json!({"d":20240131})),
            Err("field 'd' is a date column; got the number 20240131".into())
        );
        assert_eq!(
            check(json!({"t":"2024-01-31"})),
            Err("field 't' is a date-time column; got the string \"2024-01-31\"".into())
        );
        assert_eq!(
            check(json!({"o":[1]})),
            Err("field 'o' is an object column; got an array".into())
        );
        assert_eq!(
            check(json!({"a":{}})),
            Err("field 'a' is an array column; got an object".into())
        );
        let long = "y".repeat(100);
        let err = check(json!({"n": long})).unwrap_err();
        assert!(err.ends_with(&format!("\"{}\"…", "y".repeat(40))), "{err}");
        assert_eq!(check_item(&json!({}), &obj(json!({"n":"x"}))), Ok(()));
    }
}
