//! What every response passes through: the fallbacks (404, 405 with `Allow`), error
//! counting, compression, closing connections whose body was left unread, and the
//! security headers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use plinth_host::ErrorCode;
use tower_http::compression::CompressionLayer;

use super::error::{ApiError, error};
use crate::app::App;

/// The fallbacks and the layers every response passes through.
pub fn finish(router: Router<Arc<App>>, app: Arc<App>) -> Router {
    let policy = ResponsePolicy::new(&app.config.public_origins());
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_errors,
        ))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(close_unread_bodies))
        .layer(axum::middleware::map_response_with_state(
            Arc::new(policy),
            security_headers,
        ))
        .with_state(app)
}

/// Headers on every response: no script, style or connection but the console's own,
/// no MIME sniffing, no referrer (console URLs carry a token in the fragment), and
/// nothing kept in caches (token creation answers a secret).
struct ResponsePolicy {
    content_security_policy: HeaderValue,
}

impl ResponsePolicy {
    fn new(public_origins: &[String]) -> Self {
        // The console's WebSocket: `ws:`/`wss:` of the origins it is served from.
        let sockets: Vec<String> = public_origins
            .iter()
            .filter_map(|o| {
                o.strip_prefix("https://")
                    .map(|rest| format!("wss://{rest}"))
                    .or_else(|| o.strip_prefix("http://").map(|rest| format!("ws://{rest}")))
            })
            .collect();
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sockets.join(" ")
        );
        ResponsePolicy {
            content_security_policy: HeaderValue::from_str(&policy).unwrap_or_else(|_| {
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'",
                )
            }),
        }
    }
}

async fn security_headers(
    State(policy): State<Arc<ResponsePolicy>>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        policy.content_security_policy.clone(),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answers `Connection: close` when the handler did not read the request's body to its
/// end (refused before reading it, or over the size cap): the client stops sending, and
/// the connection is not reused with a body still in it.
async fn close_unread_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(WatchedBody {
            inner,
            finished: finished.clone(),
        })
    });
    let mut response = next.run(request).await;
    if !finished.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to its end.
struct WatchedBody {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn count_errors(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        app.metrics.record_http_error(code.as_str());
    }
    response
}

async fn not_found() -> ApiError {
    error(
        ErrorCode::NotFound,
        "no such route; see /api/v1/openapi.json",
    )
}

/// A route asked with a method it does not have: 405, and axum adds `Allow`.
async fn method_not_allowed() -> ApiError {
    error(
        ErrorCode::MethodNotAllowed,
        "this route does not take this method (see Allow and /api/v1/openapi.json)",
    )
}
