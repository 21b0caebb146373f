//! The REST API under `/api/v1`, the WebSocket upgrade, health, metrics and the console
//! page: one route table ([`router`]), from which the OpenAPI document at
//! `/api/v1/openapi.json` is generated with every request and response schema. Every
//! error is `{"code", "message"}` with the status [`status_of`] its code.

mod auth;
mod body;
mod components;
mod dashboards;
mod error;
mod events;
mod installations;
mod layers;
mod pages;
mod paths;
mod socket;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use plinth_host::ErrorCode;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
pub use error::{ApiError, status_of};
pub use installations::render_body;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Plinth API",
        description = "Tenants, tokens, components, installations, dashboards and calls of a \
                       Plinth server. Every error is {code, message}; see Error for the status \
                       of each code. Send a token: Authorization: Bearer plt_…",
    ),
    servers((url = "/")),
    security(("token" = [])),
    components(schemas(plinth_host::PlinthError, plinth_host::FieldProblem, ErrorCode)),
)]
struct ApiDoc;

/// What every operation has in common, added to the document once every route is in
/// it, from the code that does it: the bearer token scheme, the errors every route may
/// answer, the status of each error code.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("plt_…")
                    .build(),
            ),
        );
        if let Some(RefOr::T(utoipa::openapi::Schema::Object(error))) =
            components.schemas.get_mut("Error")
        {
            let statuses: serde_json::Map<String, serde_json::Value> = ErrorCode::ALL
                .iter()
                .map(|c| (c.as_str().to_owned(), status_of(*c).as_u16().into()))
                .collect();
            error
                .extensions
                .get_or_insert_with(Default::default)
                .insert("x-status-of-code".into(), statuses.into());
        }
        for item in document.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                standard_errors(operation);
            }
        }
    }
}

/// The errors any authenticated route may answer, each `{code, message}`; a route
/// that takes a body adds those of reading it.
fn standard_errors(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let mut add = |status: u16, description: &str| {
        let response: RefOr<Response> = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Error",
                    ))))
                    .build(),
            )
            .build()
            .into();
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert(response);
    };
    add(
        400,
        "INVALID_REQUEST: a path, query or body the route does not take",
    );
    add(
        401,
        "UNAUTHENTICATED: no token, or an unknown, revoked or expired one",
    );
    add(403, "FORBIDDEN: the token's role may not do this");
    add(
        404,
        "NOT_FOUND: no such tenant or resource (or another tenant's)",
    );
    add(405, "METHOD_NOT_ALLOWED: see the Allow header");
    add(
        409,
        "CONFLICT, GRANTS_REQUIRED, INSTALLATION_DISABLED, INSTALLATION_PARKED",
    );
    add(
        422,
        "INVALID_COMPONENT, NOT_A_COMPONENT, WORLD_MISMATCH, INVALID_CONFIG, INVALID_VALUE",
    );
    add(
        429,
        "RATE_LIMITED or QUOTA_EXCEEDED; Retry-After says when to try again",
    );
    add(500, "INTERNAL");
    add(
        503,
        "UNAVAILABLE, DB_BUSY or COMPILE_TIMEOUT: a backend is unavailable",
    );
    if has_body {
        add(408, "REQUEST_TIMEOUT: the body did not arrive in time");
        add(413, "PAYLOAD_TOO_LARGE");
    }
}

/// The routes of `/api/v1`, each with its OpenAPI operation.
fn api() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::me))
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::put_quota))
        .routes(routes!(tenants::list_operator_tokens))
        .routes(routes!(tenants::revoke_operator_token))
        .routes(routes!(tenants::create_token, tenants::list_tokens))
        .routes(routes!(tenants::revoke_token))
        .routes(routes!(components::upload, components::list_components))
        .routes(routes!(components::get_component))
        .routes(routes!(
            installations::install,
            installations::list_installations
        ))
        .routes(routes!(
            installations::get_installation,
            installations::uninstall
        ))
        .routes(routes!(installations::upgrade))
        .routes(routes!(installations::enable))
        .routes(routes!(installations::disable))
        .routes(routes!(installations::render))
        .routes(routes!(installations::action))
        .routes(routes!(installations::receipts))
        .routes(routes!(installations::logs))
        .routes(routes!(events::post_events))
        .routes(routes!(events::queue))
        .routes(routes!(events::list_dead_letters))
        .routes(routes!(events::get_dead_letter, events::delete_dead_letter))
        .routes(routes!(events::replay_dead_letter))
        .routes(routes!(events::replay_installation))
        .routes(routes!(events::purge_installation))
        .routes(routes!(events::deliveries))
        .routes(routes!(dashboards::list_dashboards))
        .routes(routes!(
            dashboards::get_dashboard,
            dashboards::put_dashboard,
            dashboards::delete_dashboard
        ))
}

/// The routes of the API and their document.
fn api_and_document() -> (Router<Arc<App>>, Document) {
    let (api, mut document) = OpenApiRouter::new()
        .nest("/api/v1", api())
        .split_for_parts();
    Conventions.modify(&mut document);
    (api, document)
}

/// Every route: the API with its document, the WebSocket upgrade (a protocol of its
/// own, described in docs/server.md rather than in the document), the console, health
/// and metrics.
pub fn router(app: Arc<App>) -> Router {
    let (api, document) = api_and_document();
    let document = serde_json::to_value(&document).unwrap_or_default();
    // The document is built from the code at start; one that does not compile is a bug
    // in a handler's annotations, caught by every test that starts a server.
    let schemas =
        Arc::new(body::BodySchemas::of(&document).expect("the API's request schemas compile"));
    let served = document.to_string();
    let api = api
        .layer(axum::Extension(schemas))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let served = served.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], served).into_response() }
            }),
        )
        .route("/api/v1/ws", get(socket::websocket));
    let mut router = api
        .route("/", get(pages::console))
        .route("/console/{*name}", get(pages::console_asset))
        .route("/healthz", get(pages::healthz))
        .route("/readyz", get(pages::readyz));
    // With a metrics address of its own, /metrics is only there (`metrics_router`).
    if app.config.metrics_listen.is_none() {
        router = router.route("/metrics", get(pages::operator_metrics));
    }
    layers::finish(router, app)
}

/// `/metrics` alone, without a token: for `metrics_listen`, an address only Prometheus
/// reaches.
pub fn metrics_router(app: Arc<App>) -> Router {
    layers::finish(Router::new().route("/metrics", get(pages::metrics)), app)
}
