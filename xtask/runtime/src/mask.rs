//! Partial responses (`x-field-mask` on a query parameter): the handler
//! builds the whole response, and the glue serializes it with only the
//! requested members of one object kept, so no handler selects fields by
//! hand and the full response still goes through the response checks.
//!
//! Cost: one pass over the serialized value (linear in the response), and
//! a member is kept when it is one of the requested names; the names come
//! from a parameter whose items are an enum of the object's properties, so
//! there are never more of them than the spec lists.

use poem::Response;
use serde::Serialize;
use serde_json::Value;

use crate::{Fault, Problem};

/// One step from the body to the masked object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskStep {
    /// Into the member of that name.
    Key(&'static str),
    /// Into every item of an array (`*` in the extension's pointer).
    Each,
}

/// The members to keep of the objects at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMask {
    at: &'static [MaskStep],
    keep: Vec<String>,
}

impl FieldMask {
    /// The mask a request asked for: `names` is the parameter's typed value
    /// (absent: `None`, no mask). Only its strings count, which are all
    /// its items for the enum of names the generator requires.
    pub fn of<T: Serialize>(at: &'static [MaskStep], names: &T) -> Option<FieldMask> {
        let keep = match serde_json::to_value(names).ok()? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Value::String(s) => vec![s],
            _ => return None,
        };
        Some(FieldMask { at, keep })
    }

    /// The requested names, in request order.
    pub fn names(&self) -> &[String] {
        &self.keep
    }

    /// Removes every member not asked for from the objects at the mask's
    /// place in `body`; a step that finds nothing (a `null`, an empty
    /// list) leaves the body as it is.
    pub fn apply(&self, body: &mut Value) {
        self.walk(body, self.at);
    }

    fn walk(&self, v: &mut Value, steps: &[MaskStep]) {
        match steps.split_first() {
            None => {
                if let Value::Object(m) = v {
                    m.retain(|k, _| self.keep.iter().any(|n| n == k));
                }
            }
            Some((MaskStep::Key(k), rest)) => {
                if let Some(child) = v.get_mut(*k) {
                    self.walk(child, rest);
                }
            }
            Some((MaskStep::Each, rest)) => {
                if let Value::Array(items) = v {
                    for item in items {
                        self.walk(item, rest);
                    }
                }
            }
        }
    }
}

/// `body` as a JSON response of `content_type`, masked when a mask was
/// asked for; a serialization failure (never expected for generated
/// models) is a problem+json 500.
pub fn masked_json_response<T: Serialize>(
    status: u16,
    body: &T,
    content_type: &'static str,
    mask: Option<&FieldMask>,
) -> Response {
    let Some(mask) = mask else {
        return crate::try_json_response_as(status, body, content_type)
            .unwrap_or_else(|_| Problem::from_fault(Fault::Internal).to_problem_json());
    };
    let masked = serde_json::to_value(body).map(|mut v| {
        mask.apply(&mut v);
        v
    });
    masked
        .and_then(|v| crate::try_json_response_as(status, &v, content_type))
        .unwrap_or_else(|_| Problem::from_fault(Fault::Internal).to_problem_json())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ITEMS: &[MaskStep] = &[MaskStep::Key("data"), MaskStep::Key("items"), MaskStep::Each];

    #[test]
    fn keeps_only_the_named_members_of_each_item() {
        let mask = FieldMask::of(ITEMS, &Some(vec!["id", "email"])).expect("a mask");
        let mut body = json!({"code": 0, "data": {"total": 2, "items": [
            {"id": 1, "email": "a@x", "username": "a"},
            {"id": 2, "username": "b"}
        ]}});
        mask.apply(&mut body);
        assert_eq!(body, json!({"code": 0, "data": {"total": 2, "items": [{"id": 1, "email": "a@x"}, {"id": 2}]}}));
    }

    #[test]
    fn no_parameter_no_mask_and_missing_places_are_left_alone() {
        assert_eq!(FieldMask::of(ITEMS, &None::<Vec<String>>), None);
        let mask = FieldMask::of(ITEMS, &vec!["id"]).expect("a mask");
        let mut body = json!({"data": null});
        mask.apply(&mut body);
        assert_eq!(body, json!({"data": null}));
    }

    #[test]
    fn a_mask_at_the_body_itself() {
        let mask = FieldMask::of(&[], &"b").expect("a mask");
        let mut body = json!({"a": 1, "b": 2});
        mask.apply(&mut body);
        assert_eq!(body, json!({"b": 2}));
    }
}
