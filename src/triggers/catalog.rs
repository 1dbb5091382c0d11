//! The trigger catalog: one entry per trigger, saying everything the other layers need to
//! know about it — its operationId (also its stored name), its subscribe path, the `eventType`
//! of its notifications, the request body of its subscribe operation and the body it receives.

use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::inputs::{
    DataSourceTriggerInput, MeasureTriggerInput, PlainTriggerInput, SegmentTriggerInput,
};
use super::notifications::{
    DataSourceRefreshNotification, FullRefreshNotification, MeasureThresholdNotification,
    SegmentThresholdNotification, UnificationNotification,
};

/// The triggers. A variant's name is the operationId of its subscribe operation and the
/// trigger name stored with each subscription.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum Trigger {
    OnDataSourceRefreshFailed,
    OnDataSourceRefreshSucceeded,
    OnSegmentThresholdCrossed,
    OnMeasureThresholdCrossed,
    OnFullRefreshCompleted,
    OnUnificationCompleted,
}

/// A named component schema: its name and its schema.
pub type NamedSchema = (String, RefOr<Schema>);

fn named<T: ToSchema>() -> NamedSchema {
    (T::name().into_owned(), <T as PartialSchema>::schema())
}

/// Everything about one trigger.
#[derive(Debug)]
pub struct TriggerDefinition {
    pub trigger: Trigger,
    /// Path of the subscribe operation.
    pub path: &'static str,
    /// `eventType` of every notification the trigger's subscriptions receive.
    pub event_type: &'static str,
    /// Name of the subscribe operation's request body schema.
    pub inputs: fn() -> String,
    /// The notification body: its component name and schema (the path-level
    /// `x-ms-notification-content` of the subscribe operation).
    pub payload: fn() -> NamedSchema,
}

fn name_of<T: ToSchema>() -> String {
    T::name().into_owned()
}

impl TriggerDefinition {
    /// Component name of the notification body.
    pub fn payload_name(&self) -> String {
        (self.payload)().0
    }
}

/// The catalog, in the order the operations appear.
pub const TRIGGERS: &[TriggerDefinition] = &[
    TriggerDefinition {
        trigger: Trigger::OnDataSourceRefreshFailed,
        path: "/instances/{instanceId}/triggers/datasource-refresh-failed",
        event_type: "dataSourceRefreshFailed",
        inputs: name_of::<DataSourceTriggerInput>,
        payload: named::<DataSourceRefreshNotification>,
    },
    TriggerDefinition {
        trigger: Trigger::OnDataSourceRefreshSucceeded,
        path: "/instances/{instanceId}/triggers/datasource-refresh-succeeded",
        event_type: "dataSourceRefreshSucceeded",
        inputs: name_of::<DataSourceTriggerInput>,
        payload: named::<DataSourceRefreshNotification>,
    },
    TriggerDefinition {
        trigger: Trigger::OnSegmentThresholdCrossed,
        path: "/instances/{instanceId}/triggers/segment-threshold",
        event_type: "segmentThresholdCrossed",
        inputs: name_of::<SegmentTriggerInput>,
        payload: named::<SegmentThresholdNotification>,
    },
    TriggerDefinition {
        trigger: Trigger::OnMeasureThresholdCrossed,
        path: "/instances/{instanceId}/triggers/measure-threshold",
        event_type: "measureThresholdCrossed",
        inputs: name_of::<MeasureTriggerInput>,
        payload: named::<MeasureThresholdNotification>,
    },
    TriggerDefinition {
        trigger: Trigger::OnFullRefreshCompleted,
        path: "/instances/{instanceId}/triggers/full-refresh-completed",
        event_type: "fullRefreshCompleted",
        inputs: name_of::<PlainTriggerInput>,
        payload: named::<FullRefreshNotification>,
    },
    TriggerDefinition {
        trigger: Trigger::OnUnificationCompleted,
        path: "/instances/{instanceId}/triggers/unification-completed",
        event_type: "unificationCompleted",
        inputs: name_of::<PlainTriggerInput>,
        payload: named::<UnificationNotification>,
    },
];

impl Trigger {
    /// The operationId (and stored name) of the trigger.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }

    /// The trigger's catalog entry.
    pub fn definition(self) -> &'static TriggerDefinition {
        TRIGGERS
            .iter()
            .find(|d| d.trigger == self)
            .expect("every trigger has a catalog entry")
    }

    /// The `eventType` of the notifications this trigger receives.
    pub fn event_type(self) -> &'static str {
        self.definition().event_type
    }
}

/// The notification schemas by name, each once, for the document's components (they are
/// referenced only from `x-ms-notification-content`, so no operation pulls them in).
pub fn notification_schemas() -> Vec<NamedSchema> {
    let mut out: Vec<NamedSchema> = Vec::new();
    for definition in TRIGGERS {
        let (name, schema) = (definition.payload)();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, schema));
        }
    }
    out
}

/// The JSON Schema of one notification by name (tests validate received bodies with it).
pub fn notification_schema_json(name: &str) -> Option<serde_json::Value> {
    notification_schemas()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| serde_json::to_value(s).expect("schema serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_trigger_has_exactly_one_entry_and_round_trips_its_name() {
        for trigger in Trigger::VARIANTS {
            let entries = TRIGGERS.iter().filter(|d| d.trigger == *trigger).count();
            assert_eq!(entries, 1, "{trigger:?}");
            assert_eq!(Trigger::parse(trigger.as_str()), Some(*trigger));
        }
        assert_eq!(TRIGGERS.len(), Trigger::VARIANTS.len());
        assert_eq!(Trigger::parse("OnSomethingElse"), None);
    }

    #[test]
    fn paths_and_event_types_are_unique() {
        let paths: std::collections::BTreeSet<_> = TRIGGERS.iter().map(|d| d.path).collect();
        let types: std::collections::BTreeSet<_> = TRIGGERS.iter().map(|d| d.event_type).collect();
        assert_eq!(paths.len(), TRIGGERS.len());
        assert_eq!(types.len(), TRIGGERS.len());
    }
}
