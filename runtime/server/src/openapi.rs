//! The OpenAPI document served at `/api/v1/openapi.json`, built from one route table.

use plinth_host::ErrorCode;
use serde_json::{Map, Value, json};

use crate::api::status_of;

/// (method, path, summary, who may call it, request body type).
const ROUTES: &[(&str, &str, &str, &str, &str)] = &[
    ("get", "/me", "The principal of the token.", "any token", ""),
    (
        "post",
        "/tenants",
        "Create a tenant: {id, name}.",
        "operator",
        "json",
    ),
    ("get", "/tenants", "List tenants.", "operator", ""),
    (
        "get",
        "/tokens",
        "List operator tokens: {id, role, tenant, label, created_ms, expires_ms, last_used_ms}, never secrets.",
        "operator",
        "",
    ),
    (
        "delete",
        "/tokens/{id}",
        "Revoke an operator token (the caller's own too): at once on this node, within 5 s on the others, its WebSockets closed with 4401.",
        "operator",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}",
        "A tenant, its quota and live usage.",
        "viewer",
        "",
    ),
    (
        "delete",
        "/tenants/{tenant}",
        "Delete a tenant and everything it has: tokens, installations, components, dashboards, its database, cache keys and topics. {deleted, removed}.",
        "operator",
        "",
    ),
    (
        "put",
        "/tenants/{tenant}/quota",
        "Set a tenant's quota {concurrent_calls, fuel_per_minute}, or null for the default.",
        "operator",
        "json",
    ),
    (
        "post",
        "/tenants/{tenant}/tokens",
        "Create a token {role: tenant-admin|viewer, label, expires_in_s?, expires_at_ms?}; the secret is shown once.",
        "tenant-admin",
        "json",
    ),
    (
        "get",
        "/tenants/{tenant}/tokens",
        "List tokens: {id, role, tenant, label, created_ms, expires_ms, last_used_ms}, never secrets.",
        "tenant-admin",
        "",
    ),
    (
        "delete",
        "/tenants/{tenant}/tokens/{id}",
        "Revoke a token: at once on this node, within 5 s on the others; its WebSockets on every node are closed with 4401 within 5 s.",
        "tenant-admin",
        "",
    ),
    (
        "post",
        "/tenants/{tenant}/components",
        "Upload a component (the .wasm bytes). 413 over the upload limit, 429 when the compile slots are busy, 503 COMPILE_TIMEOUT.",
        "tenant-admin",
        "wasm",
    ),
    (
        "get",
        "/tenants/{tenant}/components",
        "Uploaded component versions.",
        "viewer",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}/components/{hash}",
        "One component version and its descriptor.",
        "viewer",
        "",
    ),
    (
        "post",
        "/tenants/{tenant}/installations",
        "Install: {id, component, config, grants, limits, tick_interval_ms}.",
        "tenant-admin",
        "json",
    ),
    (
        "get",
        "/tenants/{tenant}/installations",
        "List installations.",
        "viewer",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}/installations/{id}",
        "One installation with its status (enabled, disabled, parked).",
        "viewer",
        "",
    ),
    (
        "delete",
        "/tenants/{tenant}/installations/{id}",
        "Uninstall.",
        "tenant-admin",
        "",
    ),
    (
        "post",
        "/tenants/{tenant}/installations/{id}/upgrade",
        "Upgrade to another version: {component, grants, config, dry_run}; answers the permission diff. 409 GRANTS_REQUIRED when new capabilities are not granted.",
        "tenant-admin",
        "json",
    ),
    (
        "post",
        "/tenants/{tenant}/installations/{id}/enable",
        "Enable (also unparks).",
        "tenant-admin",
        "",
    ),
    (
        "post",
        "/tenants/{tenant}/installations/{id}/disable",
        "Disable.",
        "tenant-admin",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}/installations/{id}/data",
        "Render the widget; query parameters are passed to it. {views, receipt}.",
        "viewer",
        "",
    ),
    (
        "post",
        "/tenants/{tenant}/installations/{id}/actions/{action}",
        "Invoke a named action with a JSON body. {response, receipt}.",
        "tenant-admin",
        "json",
    ),
    (
        "get",
        "/tenants/{tenant}/installations/{id}/receipts",
        "The last 100 usage receipts on this node.",
        "viewer",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}/installations/{id}/logs",
        "The recent log lines and errors.",
        "viewer",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}/dashboards",
        "List dashboards.",
        "viewer",
        "",
    ),
    (
        "get",
        "/tenants/{tenant}/dashboards/{name}",
        "One dashboard's tiles.",
        "viewer",
        "",
    ),
    (
        "put",
        "/tenants/{tenant}/dashboards/{name}",
        "Create or replace a dashboard: {tiles: [{installation, x, y, w, h}]}.",
        "tenant-admin",
        "json",
    ),
    (
        "delete",
        "/tenants/{tenant}/dashboards/{name}",
        "Delete a dashboard.",
        "tenant-admin",
        "",
    ),
    (
        "get",
        "/ws",
        "WebSocket: token in Authorization or ?token=; see docs/server.md for the protocol.",
        "viewer",
        "",
    ),
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, who, body) in ROUTES {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut operation = json!({
            "summary": summary,
            "description": format!("Needs: {who} (operators may do everything)."),
            "parameters": parameters,
            "responses": {
                "200": {"description": "Success."},
                "default": {"description": "An error.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if !body.is_empty() {
            let media = if *body == "wasm" {
                "application/wasm"
            } else {
                "application/json"
            };
            operation["requestBody"] = json!({"required": true, "content": {media: {}}});
        }
        let entry = paths
            .entry(format!("/api/v1{path}"))
            .or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    let codes: Vec<Value> = ErrorCode::ALL.iter().map(|c| json!(c.as_str())).collect();
    let statuses: Map<String, Value> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), json!(status_of(*c).as_u16())))
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Plinth API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string"},
                    },
                    "x-status-of-code": statuses,
                },
            },
        },
        "security": [{"token": []}],
        "paths": paths,
    })
}
