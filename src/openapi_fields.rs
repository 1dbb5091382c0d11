//! Field schemas that the derive cannot annotate by itself: utoipa drops a field's
//! `x-ms-summary` on arrays, references and free-form objects, and wraps inlined enums in an
//! `allOf` with a bogus `object`. These build a field's schema in full instead.
//!
//! A leaf: it uses nothing of the crate, so any module that derives schemas may use it.

use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// Sets the description and `x-ms-summary` of an inline schema.
pub fn annotated(schema: RefOr<Schema>, description: &str, summary: &str) -> RefOr<Schema> {
    let ext = || {
        Some(
            ExtensionsBuilder::new()
                .add("x-ms-summary", summary)
                .build(),
        )
    };
    match schema {
        RefOr::T(Schema::Object(mut o)) => {
            o.description = Some(description.into());
            o.extensions = ext();
            RefOr::T(Schema::Object(o))
        }
        RefOr::T(Schema::Array(mut a)) => {
            a.description = Some(description.into());
            a.extensions = ext();
            RefOr::T(Schema::Array(a))
        }
        other => other,
    }
}

/// A string field with a closed set of values.
pub fn string_enum(values: &[&str], description: &str, summary: &str) -> RefOr<Schema> {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .build();
    annotated(RefOr::T(Schema::Object(schema)), description, summary)
}

/// An array field.
pub fn array_of(items: RefOr<Schema>, description: &str, summary: &str) -> RefOr<Schema> {
    annotated(
        RefOr::T(Schema::Array(ArrayBuilder::new().items(items).build())),
        description,
        summary,
    )
}

/// A free-form object field.
pub fn free_object(description: &str, summary: &str) -> RefOr<Schema> {
    annotated(
        RefOr::T(Schema::Object(
            ObjectBuilder::new().schema_type(Type::Object).build(),
        )),
        description,
        summary,
    )
}
