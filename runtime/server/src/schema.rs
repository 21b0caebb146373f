//! JSON Schema checks the server makes: request bodies against the API's document,
//! installations' configs against their extension's schema. One way of naming what
//! failed, so both read alike.

use serde_json::Value;

/// Up to `max` problems of `value` under `validator`, each `where: what` (`/` for the
/// whole value); none when it is valid.
pub fn problems(validator: &jsonschema::Validator, value: &Value, max: usize) -> Vec<String> {
    validator
        .iter_errors(value)
        .take(max)
        .map(|e| {
            let at = e.instance_path.to_string();
            format!("{}: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect()
}
