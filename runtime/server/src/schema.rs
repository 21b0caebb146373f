//! JSON Schema checks the server makes: request bodies against the API's document,
//! installations' configs against their extension's schema. One way of naming what
//! failed, so both read alike.

use plinth_host::FieldProblem;
use serde_json::Value;

/// Up to `max` problems of `value` under `validator`, each `where: what` (`/` for the
/// whole value); none when it is valid.
pub fn problems(validator: &jsonschema::Validator, value: &Value, max: usize) -> Vec<String> {
    field_problems(validator, value, max)
        .iter()
        .map(|p| {
            let at = if p.path.is_empty() { "/" } else { &p.path };
            format!("{at}: {}", p.message)
        })
        .collect()
}

/// The same problems as fields: a JSON pointer and a message each.
pub fn field_problems(
    validator: &jsonschema::Validator,
    value: &Value,
    max: usize,
) -> Vec<FieldProblem> {
    validator
        .iter_errors(value)
        .take(max)
        .map(|e| FieldProblem {
            path: e.instance_path.to_string(),
            message: e.to_string(),
        })
        .collect()
}
