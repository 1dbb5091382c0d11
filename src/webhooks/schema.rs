//! Field schemas that the derive cannot annotate by itself: utoipa drops a field's
//! `x-ms-summary` on arrays, references and free-form objects, and wraps inlined enums in an
//! `allOf` with a bogus `object`. These build the field's schema in full instead.

use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::PartialSchema;

use super::notifications::FullRefreshStage;
use super::subscriptions::{DeliveryAttempt, SubscriptionInputs};

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

fn string_enum(values: &[&str], description: &str, summary: &str) -> RefOr<Schema> {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .build();
    annotated(RefOr::T(Schema::Object(schema)), description, summary)
}

fn array_of(items: RefOr<Schema>, description: &str, summary: &str) -> RefOr<Schema> {
    annotated(
        RefOr::T(Schema::Array(ArrayBuilder::new().items(items).build())),
        description,
        summary,
    )
}

pub fn subscription_status() -> RefOr<Schema> {
    string_enum(
        &["active", "dead"],
        "`active`, or `dead` once the callback answered 404 or 410 (the flow is gone).",
        "Status",
    )
}

pub fn subscription_inputs() -> RefOr<Schema> {
    annotated(
        SubscriptionInputs::schema(),
        "The trigger inputs.",
        "Inputs",
    )
}

pub fn subscription_list() -> RefOr<Schema> {
    array_of(
        RefOr::Ref(Ref::from_schema_name("TriggerSubscription")),
        "The subscriptions.",
        "Subscriptions",
    )
}

pub fn delivery_status() -> RefOr<Schema> {
    string_enum(
        &["pending", "delivered", "failed", "dead"],
        "`pending`, `delivered`, `failed` (refused for good) or `dead` (dead-lettered).",
        "Status",
    )
}

pub fn recent_attempts() -> RefOr<Schema> {
    array_of(
        DeliveryAttempt::schema(),
        "The most recent attempts, newest first.",
        "Recent Attempts",
    )
}

pub fn delivery_list() -> RefOr<Schema> {
    array_of(
        RefOr::Ref(Ref::from_schema_name("Delivery")),
        "The deliveries, newest first.",
        "Deliveries",
    )
}

pub fn stages() -> RefOr<Schema> {
    array_of(
        FullRefreshStage::schema(),
        "Outcome of each stage, in the order they ran: data sources, unification, measures, segments.",
        "Stages",
    )
}

pub fn stage_detail() -> RefOr<Schema> {
    annotated(
        RefOr::T(Schema::Object(
            ObjectBuilder::new().schema_type(Type::Object).build(),
        )),
        "Figures of a stage that succeeded, e.g. `rowsIngested`, `memberCount` or `value`.",
        "Stage Detail",
    )
}
