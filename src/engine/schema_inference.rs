//! Entity schemas inferred from items, one rule for every writer (ingestion, item writes,
//! unification): per field `integer`, `number`, `string`, `boolean`, `object` or `array`;
//! integer mixed with number gives `number`, any other mix `string`; an explicit `null` keeps
//! the type and marks the field `x-nullable` (how Power Automate reads a dynamic schema:
//! Swagger 2.0 has no null type); a field only ever `null` is a nullable `string`.

use serde_json::{json, Map, Value};

/// The schema of one field.
pub fn property(field: &str, t: FieldType, nullable: bool) -> Value {
    let mut p = json!({
        "type": t.name(),
        "x-ms-summary": field,
        "description": format!("The {field} field."),
    });
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
        let t = FieldType::of(value);
        match props.get_mut(field) {
            Some(existing) => {
                if t == FieldType::Null {
                    existing["x-nullable"] = json!(true);
                    continue;
                }
                let old = existing.get("type").and_then(Value::as_str);
                let new = old.map_or(t, |old| FieldType::from_name(old).join(t));
                if old != Some(new.name()) {
                    existing["type"] = json!(new.name());
                }
            }
            None => {
                props.insert(field.clone(), property(field, t, t == FieldType::Null));
            }
        }
    }
}

/// Incrementally infers a JSON Schema for items; feed batches with [`SchemaBuilder::observe`].
#[derive(Clone, Debug, Default)]
pub struct SchemaBuilder {
    /// Per field: the joined type and whether an explicit `null` was seen.
    fields: std::collections::BTreeMap<String, (FieldType, bool)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Only `null` seen so far.
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Object,
    Array,
}

impl FieldType {
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

    fn join(self, other: FieldType) -> FieldType {
        use FieldType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Integer, Number) | (Number, Integer) => Number,
            _ => String,
        }
    }

    /// The type a stored property names (an unknown name counts as `string`).
    fn from_name(name: &str) -> FieldType {
        match name {
            "boolean" => FieldType::Boolean,
            "integer" => FieldType::Integer,
            "number" => FieldType::Number,
            "object" => FieldType::Object,
            "array" => FieldType::Array,
            _ => FieldType::String,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FieldType::Null | FieldType::String => "string",
            FieldType::Boolean => "boolean",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Object => "object",
            FieldType::Array => "array",
        }
    }
}

impl SchemaBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, item: &Map<String, Value>) {
        for (name, value) in item {
            let t = FieldType::of(value);
            let null = t == FieldType::Null;
            match self.fields.get_mut(name) {
                Some((existing, nullable)) => {
                    *existing = existing.join(t);
                    *nullable |= null;
                }
                None => {
                    self.fields.insert(name.clone(), (t, null));
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

/// Infers a JSON Schema object from items: per field `integer`, `number`, `string`, `boolean`
/// (`object` / `array` for nested JSONL values). Integer mixed with number gives `number`; any
/// other mix gives `string`; `null` values do not change the type but mark the field
/// `x-nullable` (a field that is only ever `null` is a nullable `string`).
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
}
