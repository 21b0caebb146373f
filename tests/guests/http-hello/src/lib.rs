//! hello-metric's card as a `wasi:http/proxy` component: what `wasmtime serve` runs.
//! `plinth bench-server --only render` serves it beside Plinth's render endpoint and a
//! native handler. It does the same work as the native handler: checks the bearer token
//! (given to the instance as `BENCH_TOKEN`), builds the card from the default config and
//! answers it with a receipt as JSON.

use std::time::Instant;

use serde::Deserialize;
use serde_json::json;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_title")]
    title: String,
    #[serde(default = "default_value")]
    value: f64,
}

fn default_title() -> String {
    "Hello, Plinth".into()
}

fn default_value() -> f64 {
    42.0
}

struct HelloOverHttp;

impl wasip2::exports::http::incoming_handler::Guest for HelloOverHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let started = Instant::now();
        let expected = format!(
            "Bearer {}",
            std::env::var("BENCH_TOKEN").unwrap_or_default()
        );
        let authorized = request
            .headers()
            .get("authorization")
            .iter()
            .any(|value| value.as_slice() == expected.as_bytes());
        let (status, body) = if authorized {
            (200, card(started))
        } else {
            (
                401,
                r#"{"code":"UNAUTHENTICATED","message":"bad token"}"#.to_owned(),
            )
        };
        respond(out, status, body.as_bytes());
    }
}

fn card(started: Instant) -> String {
    let config: Config = serde_json::from_str("{}").unwrap_or(Config {
        title: default_title(),
        value: default_value(),
    });
    json!({
        "views": [{
            "kind": "metric_card", "title": config.title, "value": config.value,
            "unit": "widgets", "change_percent": 4.2, "trend": "up",
            "caption": "rendered in a fresh sandbox",
        }],
        "receipt": {
            "tenant": "bench", "installation": "hello", "component": "wasi-http",
            "call": "render", "outcome": "OK", "fuel_used": null,
            "peak_memory_bytes": 0, "wall_time_us": started.elapsed().as_micros() as u64,
            "host_calls": {}, "output_bytes": 0, "logs_dropped": 0,
        },
    })
    .to_string()
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let Ok(headers) = Fields::from_list(&[
        ("content-type".to_owned(), b"application/json".to_vec()),
        (
            "content-length".to_owned(),
            body.len().to_string().into_bytes(),
        ),
    ]) else {
        return;
    };
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // A write of up to 4 KiB in one go; the card is a few hundred bytes.
        let _ = stream.blocking_write_and_flush(body);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasip2::http::proxy::export!(HelloOverHttp);
