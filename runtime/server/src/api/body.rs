//! Request bodies, read only once the headers' token is authorized (the extractors of
//! [`super::auth`] run first) and holding a body slot: [`JsonBody`] for JSON,
//! [`Upload`] for a component's bytes. Size and time are bounded while reading.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Request};
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use plinth_host::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{tenant_of, token_of};
use super::error::{ApiError, ApiResult, error};
use crate::app::App;
use crate::slots::Slot;

/// Reads a request body of at most `limit` bytes. Handlers take the body unread
/// ([`Body`]) and call this only once the headers' token is authorized: an anonymous
/// client never makes the server hold a byte of its body (nor get `100 Continue`).
/// A body over the limit is refused: its rest is read and dropped (see [`discard`]) up
/// to another `limit` bytes, so a client that sends it all before reading gets the 413
/// rather than a reset; a declared length over twice the limit is refused unread.
///
/// The whole body must arrive within `within` (`http.body_read_timeout`): a client that
/// trickles it gets `408 REQUEST_TIMEOUT`, and its upload slot is free again.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: std::time::Duration,
) -> ApiResult<Bytes> {
    tokio::time::timeout(within, read_body_within(headers, body, limit))
        .await
        .unwrap_or_else(|_| {
            Err(error(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    within.as_secs_f64()
                ),
            ))
        })
}

async fn read_body_within(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_large = || {
        error(
            ErrorCode::PayloadTooLarge,
            format!("request body over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        if declared <= 2 * limit as u64 {
            discard(&mut chunks, declared).await;
        }
        return Err(too_large());
    }
    let mut read = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                ErrorCode::InvalidRequest,
                format!("reading the request body: {e}"),
            )
        })?;
        if read.len() + chunk.len() > limit {
            discard(&mut chunks, limit as u64).await;
            return Err(too_large());
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(read))
}

/// Reads and drops up to `bytes` more of a refused body, for at most 10 s: memory stays
/// flat, and only an authorized client holding its slot gets here. What is left unread
/// then closes the connection.
async fn discard(chunks: &mut axum::body::BodyDataStream, bytes: u64) {
    let mut left = bytes;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while left > 0
            && let Some(Ok(chunk)) = chunks.next().await
        {
            left = left.saturating_sub(chunk.len() as u64);
        }
    })
    .await;
}

/// A JSON request body of at most `http.max_body_bytes`, read once the request is
/// authorized and its token holds a JSON body slot, and checked against the route's
/// request schema in the OpenAPI document ([`BodySchemas`]) before it is read into `T`:
/// what the document allows is what is accepted. Malformed JSON, or JSON that is not
/// the route's body, is `INVALID_REQUEST` naming where.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> ApiResult<Self> {
        let schemas = request.extensions().get::<Arc<BodySchemas>>().cloned();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| format!("{} {}", request.method(), p.as_str()));
        let bytes = small_body(app, request).await?;
        // No body is `null`: what a route whose body is optional (a quota) takes for none.
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        let mut value: Value = serde_json::from_slice(bytes)
            .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))?;
        // Fails closed: a JSON route the document does not describe is a bug in the
        // route table, not a body to take unchecked.
        let (Some(schemas), Some(route)) = (schemas, route) else {
            return Err(error(
                ErrorCode::Internal,
                "this route's body has no schema in the API document",
            ));
        };
        schemas.check(&route, &mut value)?;
        T::deserialize(value)
            .map(JsonBody)
            .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))
    }
}

/// Numbers with no fractional part as integers where the schema says integer: JSON
/// Schema counts `5.0` an integer, so such a field takes it (serde alone would refuse
/// it). Elsewhere (a free-form config) a number is left as it was sent.
fn integral_where_integer(value: &mut Value, schema: &Value, root: &Value, depth: u32) {
    if depth > 64 {
        return;
    }
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .unwrap_or(&Value::Null),
        None => schema,
    };
    for key in ["allOf", "anyOf", "oneOf"] {
        for branch in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            integral_where_integer(value, branch, root, depth + 1);
        }
    }
    match value {
        Value::Number(n) if n.is_f64() && says_integer(schema) => {
            let f = n.as_f64().unwrap_or(0.5);
            // Within the integer types' ranges, whole numbers convert exactly.
            if f.fract() == 0.0 && (-9.2e18..9.2e18).contains(&f) {
                *value = Value::from(f as i64);
            } else if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) {
                *value = Value::from(f as u64);
            }
        }
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                let property = schema
                    .get("properties")
                    .and_then(|properties| properties.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(property) = property {
                    integral_where_integer(field, property, root, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for element in items {
                    integral_where_integer(element, item, root, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn says_integer(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(types)) => types.iter().any(|t| t == "integer"),
        _ => false,
    }
}

/// OpenAPI's integer formats as the bounds they mean (`int32`: 32 bits, signed), so the
/// server refuses what the document says it does not take: JSON Schema checks bounds,
/// not formats.
fn integer_formats(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            let bounds = match fields.get("format").and_then(Value::as_str) {
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                Some("int64") => Some((i64::MIN, i64::MAX)),
                _ => None,
            };
            if let Some((low, high)) = bounds {
                let tighter =
                    |key: &str, bound: i64, fields: &serde_json::Map<String, Value>| match fields
                        .get(key)
                        .and_then(Value::as_f64)
                    {
                        Some(set) if (key == "minimum") == (set > bound as f64) => None,
                        _ => Some(Value::from(bound)),
                    };
                if let Some(low) = tighter("minimum", low, fields) {
                    fields.insert("minimum".into(), low);
                }
                if let Some(high) = tighter("maximum", high, fields) {
                    fields.insert("maximum".into(), high);
                }
            }
            fields.values_mut().for_each(integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(integer_formats),
        _ => {}
    }
}

/// The request body schema of every JSON route of the OpenAPI document, compiled once:
/// `"POST /api/v1/tenants"` → its validator.
pub struct BodySchemas {
    /// By route: the validator, and the schema it was made from (the route's body
    /// schema beside the document's components).
    routes: HashMap<String, (jsonschema::Validator, Value)>,
}

impl BodySchemas {
    /// Compiles the `application/json` request schemas of `document` (an OpenAPI 3.1
    /// document as JSON), its components alongside so `$ref`s resolve.
    pub fn of(document: &Value) -> Result<Self, String> {
        let mut components = document.get("components").cloned().unwrap_or(Value::Null);
        integer_formats(&mut components);
        let mut routes = HashMap::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let Some(schema) =
                    operation.pointer("/requestBody/content/application~1json/schema")
                else {
                    continue;
                };
                let mut schema = schema.clone();
                integer_formats(&mut schema);
                let root = serde_json::json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "allOf": [schema],
                    "components": components,
                });
                let validator = jsonschema::validator_for(&root)
                    .map_err(|e| format!("{method} {path}: {e}"))?;
                routes.insert(
                    format!("{} {path}", method.to_uppercase()),
                    (validator, root),
                );
            }
        }
        Ok(BodySchemas { routes })
    }

    /// Writes the whole numbers sent for the route's integers as integers, then checks
    /// `value` against its schema.
    fn check(&self, route: &str, value: &mut Value) -> ApiResult<()> {
        let Some((validator, root)) = self.routes.get(route) else {
            return Err(error(
                ErrorCode::Internal,
                format!("{route} takes a JSON body the API document does not describe"),
            ));
        };
        // First: the validator does not take `5.0` for an integer either.
        integral_where_integer(value, root, root, 0);
        let problems = crate::schema::problems(validator, value, 3);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(error(
                ErrorCode::InvalidRequest,
                format!("request body: {}", problems.join("; ")),
            ))
        }
    }
}

/// An optional JSON body (an action's): `null` when empty.
pub struct OptionalJson(pub serde_json::Value);

impl FromRequest<Arc<App>> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> ApiResult<Self> {
        let bytes = small_body(app, request).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(serde_json::Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| error(ErrorCode::InvalidRequest, format!("request body: {e}")))
    }
}

/// A body of at most `http.max_body_bytes` under a JSON body slot of the token.
async fn small_body(app: &App, request: Request) -> ApiResult<Bytes> {
    let (parts, body) = request.into_parts();
    let _slot = app.bodies.json.take("token", &token_key(&parts.headers))?;
    let http = &app.config.http;
    read_body(
        &parts.headers,
        body,
        http.max_body_bytes,
        http.body_read_timeout,
    )
    .await
}

/// A component's bytes, at most `http.max_upload_bytes`, read under an upload slot of
/// the tenant the path names: the slot bounds how many such bodies are held at once,
/// and is taken before a byte is read and held until the upload is answered.
pub struct Upload {
    pub bytes: Bytes,
    _slot: Slot,
}

impl FromRequest<Arc<App>> for Upload {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> ApiResult<Self> {
        let (mut parts, body) = request.into_parts();
        let tenant = tenant_of(&mut parts, app).await?;
        let slot = app.bodies.uploads.take("tenant", &tenant)?;
        let http = &app.config.http;
        let bytes = read_body(
            &parts.headers,
            body,
            http.max_upload_bytes,
            http.body_read_timeout,
        )
        .await?;
        if bytes.is_empty() {
            return Err(error(
                ErrorCode::InvalidRequest,
                "send the component's bytes as the request body",
            ));
        }
        Ok(Upload { bytes, _slot: slot })
    }
}

/// What body slots are counted by: the token, as a hash (the secret is not kept).
fn token_key(headers: &HeaderMap) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token_of(headers).unwrap_or_default().as_bytes());
    hex::encode(&digest[..8])
}
