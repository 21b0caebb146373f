//! The server end to end: a real `plinth serve` on loopback, driven over HTTP and
//! WebSocket like the console and tenants' scripts drive it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use plinth_host::{BackendsConfig, BroadcastConfig, CacheConfig, DbConfig};
use plinth_server::config::MetadataConfig;
use plinth_server::{RunningServer, ServerConfig};
use plinth_tests::{guest, socket_request, unique_tenants};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) const REDIS: &str = "redis://127.0.0.1:6379";
pub(crate) const POSTGRES: &str = "postgres://root@127.0.0.1:5432/test";

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server on a free port with its own data directory.
pub(crate) struct TestServer {
    server: Option<RunningServer>,
    /// `http://127.0.0.1:PORT` of this server, in this process or another.
    base: String,
    _dir: tempfile::TempDir,
    pub(crate) http: reqwest::Client,
    pub(crate) operator: String,
}

fn test_config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        demo: false,
        pool_instances: 32,
        ..ServerConfig::default()
    };
    config.scheduler.min_interval = Duration::from_millis(100);
    config
}

/// The backends a test body runs against: embedded, or every real service.
pub(crate) fn real_services(config: &mut ServerConfig, schema: &str) {
    config.backends = BackendsConfig {
        cache: CacheConfig::Redis { url: REDIS.into() },
        broadcast: BroadcastConfig::Redis { url: REDIS.into() },
        db: DbConfig::Postgres {
            url: POSTGRES.into(),
        },
    };
    config.metadata = MetadataConfig::Postgres {
        url: POSTGRES.into(),
        schema: schema.into(),
    };
}

pub(crate) fn unique_schema() -> String {
    let (a, _) = unique_tenants();
    format!("plinth_test_{}", a.replace('-', "_"))
}

impl TestServer {
    pub(crate) async fn start(edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), edit).await
    }

    /// A server on the data directory `dir` (one a stopped server left, say).
    pub(crate) async fn start_in(
        dir: tempfile::TempDir,
        edit: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = test_config(dir.path());
        edit(&mut config);
        let server = plinth_server::start(config).await.expect("server starts");
        let operator = plinth_server::operator_token(&server.app).await.unwrap();
        TestServer {
            base: server.url(),
            server: Some(server),
            _dir: dir,
            http: reqwest::Client::new(),
            operator,
        }
    }

    /// Stops the server and hands over its data directory.
    pub(crate) async fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().stop().await.unwrap();
        self._dir
    }

    pub(crate) fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// A server another process runs at `base`, driven the same way.
    pub(crate) fn remote(base: String, operator: String) -> TestServer {
        TestServer {
            server: None,
            base,
            _dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
            operator,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .timeout(Duration::from_secs(60));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    pub(crate) async fn json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        self.send(
            method,
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send("GET", path, Some(token), None).await
    }

    /// The node's `/metrics` text, read with the operator token.
    pub(crate) async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(&self.operator)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A new tenant and a token of each role for it.
    pub(crate) async fn tenant(&self, id: &str) -> (String, String) {
        let (status, body) = self
            .json("POST", "/api/v1/tenants", &self.operator, json!({"id": id}))
            .await;
        assert_eq!(status, 201, "{body}");
        let token = |role: &'static str| async move {
            let (status, body) = self
                .json(
                    "POST",
                    &format!("/api/v1/tenants/{id}/tokens"),
                    &self.operator,
                    json!({"role": role, "label": "test"}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["token"].as_str().unwrap().to_owned()
        };
        (token("tenant-admin").await, token("viewer").await)
    }

    pub(crate) async fn upload(&self, tenant: &str, token: &str, bytes: Vec<u8>) -> (u16, Value) {
        self.send(
            "POST",
            &format!("/api/v1/tenants/{tenant}/components"),
            Some(token),
            Some(bytes),
        )
        .await
    }

    /// The hostile guest uploaded for `tenant` and installed as `id` running `attack`,
    /// every capability granted; answers the tenant's installations path and the
    /// component's upload answer.
    pub(crate) async fn install_hostile(
        &self,
        tenant: &str,
        admin: &str,
        id: &str,
        attack: &str,
    ) -> (String, Value) {
        let (status, uploaded) = self
            .upload(tenant, admin, guest("tests/guests/hostile"))
            .await;
        assert_eq!(status, 201, "{uploaded}");
        let path = format!("/api/v1/tenants/{tenant}/installations");
        let (status, body) = self
            .json(
                "POST",
                &path,
                admin,
                json!({"id": id, "component": uploaded["hash"], "config": {"attack": attack},
                       "grants": "cache,db:write,broadcast,log"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (path, uploaded)
    }

    pub(crate) async fn socket(&self, token: &str) -> Socket {
        let url = format!("ws://{}/api/v1/ws", self.base.trim_start_matches("http://"));
        let (socket, _) = tokio_tungstenite::connect_async(socket_request(&url, token))
            .await
            .expect("WebSocket opens");
        socket
    }

    pub(crate) async fn stop(mut self) {
        self.server.take().unwrap().stop().await.unwrap();
    }
}

pub(crate) async fn send_ws(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text message, skipping pings; panics after `wait`.
pub(crate) async fn next_json(socket: &mut Socket, wait: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Messages until one matches; panics after `wait`.
pub(crate) async fn wait_for(
    socket: &mut Socket,
    wait: Duration,
    what: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = next_json(socket, left).await;
        if what(&message) {
            return message;
        }
    }
}

/// Upload → install (grants checked) → render → a tick pushes fresh views and the
/// widget's own message to a subscribed socket. The same body on embedded backends and
/// on Redis + PostgreSQL (metadata included).
async fn upload_install_render_tick(server: TestServer) {
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let (status, uploaded) = server
        .upload(&tenant, &admin, guest("extensions/cache-stats"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let hash = uploaded["hash"].as_str().unwrap().to_owned();
    assert_eq!(uploaded["extension"], "cache-stats");
    assert_eq!(
        uploaded["capabilities"],
        json!(["cache", "broadcast", "log"])
    );
    let path = format!("/api/v1/tenants/{tenant}/installations");

    // Nothing granted: refused at install, naming the capability.
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "stats", "component": hash}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("CAPABILITY_DENIED")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("cache"),
        "{body}"
    );

    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "stats", "component": hash, "grants": ["cache", "broadcast", "log"],
                   "tick_interval_ms": 300}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.get(&format!("{path}/stats/data"), &viewer).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["views"][0]["kind"], "metric_card", "{body}");
    assert_eq!(body["receipt"]["outcome"], "OK");

    let mut socket = server.socket(&viewer).await;
    send_ws(
        &mut socket,
        json!({"type": "subscribe", "topic": "widget/stats"}),
    )
    .await;
    send_ws(
        &mut socket,
        json!({"type": "subscribe", "topic": "cache-stats"}),
    )
    .await;
    let first = next_json(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(
        first,
        json!({"type": "subscribed", "topic": "widget/stats"})
    );
    let pushed = wait_for(&mut socket, Duration::from_secs(10), |m| {
        m["type"] == "message" && m["topic"] == "widget/stats"
    })
    .await;
    assert_eq!(pushed["payload"]["type"], "views", "{pushed}");
    assert_eq!(
        pushed["payload"]["views"][0]["kind"], "metric_card",
        "{pushed}"
    );
    let sample = wait_for(&mut socket, Duration::from_secs(10), |m| {
        m["type"] == "message" && m["topic"] == "cache-stats"
    })
    .await;
    assert!(
        sample["payload"]["hitRate"].is_number() && sample["payload"]["atMs"].as_u64() > Some(0),
        "{sample}"
    );

    let (status, receipts) = server.get(&format!("{path}/stats/receipts"), &viewer).await;
    assert_eq!(status, 200);
    let calls: Vec<&str> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call"].as_str().unwrap())
        .collect();
    assert!(
        calls.contains(&"on-tick") && calls.contains(&"render"),
        "{calls:?}"
    );

    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!(
            "plinth_calls_total{{tenant=\"{tenant}\",extension=\"Cache Statistics@1.0.0\",call=\"on-tick\",outcome=\"OK\"}}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("plinth_ws_connections 1"), "{metrics}");
    server.stop().await;
}

/// A JavaScript, a Python and a C widget as a tenant drives them: uploaded over HTTP (an
/// 18 MB Python component fits the upload cap and compiles within the compile timeout),
/// installed with their grants, rendered, and their tick pushed to a browser's socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polyglot_widgets_upload_install_render_and_push() {
    let server = TestServer::start(|_| {}).await;
    for language in ["js", "python", "c"] {
        // A tenant per language: topics are the tenant's, so what a socket receives on
        // `orders` can only come from this language's widget.
        let (tenant, _) = unique_tenants();
        let (admin, viewer) = server.tenant(&tenant).await;
        let mut socket = server.socket(&viewer).await;
        send_ws(&mut socket, json!({"type": "subscribe", "topic": "orders"})).await;
        assert_eq!(
            next_json(&mut socket, Duration::from_secs(5)).await,
            json!({"type": "subscribed", "topic": "orders"})
        );
        let bytes = guest(&format!("tests/guests/conformance-{language}"));
        let (status, uploaded) = server.upload(&tenant, &admin, bytes).await;
        assert_eq!(status, 201, "{language}: {uploaded}");
        assert_eq!(uploaded["extension"], "conformance", "{language}");
        let hash = uploaded["hash"].as_str().unwrap().to_owned();
        let id = format!("orders-{language}");
        let path = format!("/api/v1/tenants/{tenant}/installations");
        let (status, body) = server
            .json(
                "POST",
                &path,
                &admin,
                json!({"id": id, "component": hash,
                       "grants": ["cache", "db:write", "broadcast", "log"],
                       "config": {"title": language}, "tick_interval_ms": 300}),
            )
            .await;
        assert_eq!(status, 201, "{language}: {body}");
        let (status, body) = server.get(&format!("{path}/{id}/data"), &viewer).await;
        assert_eq!(status, 200, "{language}: {body}");
        assert_eq!(body["views"][0]["title"], language, "{body}");
        assert_eq!(body["views"][1]["kind"], "table", "{body}");
        // The tick's summary reaches the browser.
        let pushed = wait_for(&mut socket, Duration::from_secs(20), |m| {
            m["type"] == "message" && m["topic"] == "orders"
        })
        .await;
        assert!(pushed["payload"]["sequence"].as_u64() > Some(0), "{pushed}");
        let (status, body) = server
            .json("DELETE", &format!("{path}/{id}"), &admin, json!({}))
            .await;
        assert!(
            status == 200 || status == 204,
            "{language}: {status} {body}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_install_render_tick_embedded() {
    upload_install_render_tick(TestServer::start(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_install_render_tick_redis_postgres() {
    let schema = unique_schema();
    upload_install_render_tick(TestServer::start(|c| real_services(c, &schema)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_and_tenants_are_kept_apart() {
    let server = TestServer::start(|_| {}).await;
    let (a, b) = unique_tenants();
    let (admin_a, viewer_a) = server.tenant(&a).await;
    let (admin_b, _) = server.tenant(&b).await;
    let hello = guest("extensions/hello-metric");

    // A viewer cannot upload, install or make tokens.
    let (status, body) = server.upload(&a, &viewer_a, hello.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{a}/tokens"),
            &viewer_a,
            json!({"role": "tenant-admin"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );
    // A tenant admin cannot create tenants or make operator tokens.
    let (status, body) = server
        .json("POST", "/api/v1/tenants", &admin_a, json!({"id": "mine"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );

    let (status, uploaded) = server.upload(&a, &admin_a, hello).await;
    assert_eq!(status, 201, "{uploaded}");
    let hash = uploaded["hash"].as_str().unwrap();
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{a}/installations"),
            &admin_a,
            json!({"id": "hello", "component": hash}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .get(
            &format!("/api/v1/tenants/{a}/installations/hello/data"),
            &viewer_a,
        )
        .await;
    assert_eq!(status, 200);

    // Tenant B's token sees nothing of A: not its installations, renders, components.
    for path in [
        format!("/api/v1/tenants/{a}/installations/hello/data"),
        format!("/api/v1/tenants/{a}/installations"),
        format!("/api/v1/tenants/{a}/components/{hash}"),
        format!("/api/v1/tenants/{a}"),
    ] {
        let (status, body) = server.get(&path, &admin_b).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{path}: {body}"
        );
    }
    // Nor can B install A's component under its own tenant.
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{b}/installations"),
            &admin_b,
            json!({"id": "stolen", "component": hash}),
        )
        .await;
    // B's own path exists; the component it names is not B's: a value refused, with a
    // message that speaks of B only.
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("INVALID_VALUE")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("tenant {b} has no component")) && !message.contains(&a),
        "{body}"
    );

    // B's socket cannot subscribe to A's widget, by name or by naming A.
    let mut socket = server.socket(&admin_b).await;
    send_ws(
        &mut socket,
        json!({"type": "subscribe", "topic": "widget/hello"}),
    )
    .await;
    let refused = next_json(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("NOT_FOUND")),
        "{refused}"
    );
    send_ws(
        &mut socket,
        json!({"type": "subscribe", "tenant": a, "topic": "alerts"}),
    )
    .await;
    let refused = next_json(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");

    // Unauthenticated or unknown-token upgrades are refused before the upgrade.
    let url = format!("ws://{}/api/v1/ws", server.server().addr);
    for (what, request) in [
        ("no token", url.as_str().into_client_request().unwrap()),
        ("unknown token", socket_request(&url, "plt_nope")),
    ] {
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{what}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["code"], "UNAUTHENTICATED");
            }
            other => panic!("{what}: upgrade not refused: {:?}", other.map(|_| ())),
        }
    }
    // A token in the URL is refused, even a good one and beside the header: URLs end up
    // in logs.
    for query in [
        format!("?token={viewer_a}"),
        format!("?token={viewer_a}&token={viewer_a}"),
        format!("?x=1&token={viewer_a}"),
    ] {
        match tokio_tungstenite::connect_async(socket_request(&format!("{url}{query}"), &viewer_a))
            .await
        {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{query}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["code"], "INVALID_REQUEST", "{body}");
            }
            other => panic!(
                "{query}: a token in the URL was taken: {:?}",
                other.map(|_| ())
            ),
        }
    }
    // A page on another origin cannot use a viewer's token.
    let mut request = socket_request(&url, &viewer_a);
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("foreign origin not refused: {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_uploads_and_requests_get_their_codes_and_the_server_keeps_serving() {
    let server = TestServer::start(|c| {
        c.http.max_upload_bytes = 4 << 20;
        c.http.compile_slots = 1;
    })
    .await;
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("oversized", vec![0u8; 5 << 20], 413, "PAYLOAD_TOO_LARGE"),
        (
            "random bytes",
            b"definitely not wasm".to_vec(),
            422,
            "INVALID_COMPONENT",
        ),
        (
            "core module",
            wat::parse_str("(module)").unwrap(),
            422,
            "NOT_A_COMPONENT",
        ),
        ("empty", Vec::new(), 400, "INVALID_REQUEST"),
    ];
    for (what, bytes, status, code) in cases {
        let (got, body) = server.upload(&tenant, &admin, bytes).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let path = format!("/api/v1/tenants/{tenant}/installations");
    for (body, code) in [
        (b"{not json".to_vec(), "INVALID_REQUEST"),
        (
            br#"{"id": "x", "component": "abc", "surprise": 1}"#.to_vec(),
            "INVALID_REQUEST",
        ),
        (
            br#"{"id": "Bad Id", "component": "abc"}"#.to_vec(),
            "INVALID_REQUEST",
        ),
        // Not a SHA-256: the document's pattern refuses it.
        (
            br#"{"id": "x", "component": "0000"}"#.to_vec(),
            "INVALID_REQUEST",
        ),
        // A SHA-256 the tenant never uploaded: a value the server refuses.
        (
            format!(r#"{{"id": "x", "component": "{}"}}"#, "0".repeat(64)).into_bytes(),
            "INVALID_VALUE",
        ),
    ] {
        let (_, answer) = server.send("POST", &path, Some(&admin), Some(body)).await;
        assert_eq!(answer["code"], code, "{answer}");
    }
    // A method the route does not take: 405 with the ones it does.
    let response = server
        .http
        .patch(server.url(&path))
        .header("authorization", format!("Bearer {admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    let mut allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
    allowed.sort();
    assert_eq!(allowed, ["GET", "HEAD", "POST"], "{allow}");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED", "{body}");

    // Config is checked against the widget's schema; limits may only be lowered.
    let (status, uploaded) = server
        .upload(&tenant, &admin, guest("extensions/hello-metric"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let hash = uploaded["hash"].as_str().unwrap();
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "h", "component": hash, "config": {"title": 5}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("INVALID_CONFIG")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("/title"),
        "{body}"
    );
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "h", "component": hash, "limits": {"fuel": "off"}}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "h", "component": hash, "config": {"title": "Sales"},
                   "limits": {"fuel": "10000000", "timeout": "200ms"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["limits"]["fuel"], 10_000_000);
    let (status, body) = server
        .json("POST", &path, &admin, json!({"id": "h", "component": hash}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("CONFLICT")),
        "{body}"
    );
    // An interval the scheduler cannot represent is refused, not scheduled.
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "forever", "component": hash, "tick_interval_ms": i64::MAX}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("INVALID_VALUE")),
        "{body}"
    );

    // A compile that takes too long answers COMPILE_TIMEOUT; while it still holds the
    // only slot, the next upload is turned away with RATE_LIMITED.
    let slow = TestServer::start(|c| {
        c.http.compile_slots = 1;
        c.http.compile_timeout = Duration::from_millis(1);
    })
    .await;
    let (other, _) = unique_tenants();
    let (other_admin, _) = slow.tenant(&other).await;
    let bytes = guest("extensions/cache-stats");
    let (status, body) = slow.upload(&other, &other_admin, bytes.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("COMPILE_TIMEOUT")),
        "{body}"
    );
    let (status, body) = slow.upload(&other, &other_admin, bytes).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    slow.stop().await;

    // Still serving.
    let (status, body) = server.get(&format!("{path}/h/data"), &viewer).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["views"][0]["title"], "Sales");
    let (status, _) = server.send("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_shows_the_permission_diff_and_needs_the_grants() {
    let server = TestServer::start(|_| {}).await;
    let (tenant, _) = unique_tenants();
    let (admin, _) = server.tenant(&tenant).await;
    let (_, hello) = server
        .upload(&tenant, &admin, guest("extensions/hello-metric"))
        .await;
    let (_, stats) = server
        .upload(&tenant, &admin, guest("extensions/cache-stats"))
        .await;
    let path = format!("/api/v1/tenants/{tenant}/installations");
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "w", "component": hello["hash"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let upgrade = format!("{path}/w/upgrade");
    let (status, body) = server
        .json(
            "POST",
            &upgrade,
            &admin,
            json!({"component": stats["hash"], "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["diff"]["added_capabilities"],
        json!(["cache", "broadcast", "log"])
    );
    assert_eq!(body["diff"]["applied"], false);
    let (status, body) = server
        .json(
            "POST",
            &upgrade,
            &admin,
            json!({"component": stats["hash"]}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("GRANTS_REQUIRED")),
        "{body}"
    );
    let (_, still) = server.get(&format!("{path}/w"), &admin).await;
    assert_eq!(still["component"], hello["hash"]);
    let (status, body) = server
        .json(
            "POST",
            &upgrade,
            &admin,
            json!({"component": stats["hash"], "grants": "cache,broadcast,log"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["diff"]["applied"], true);
    assert_eq!(body["installation"]["component"], stats["hash"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_circuit_breaker_parks_a_trapping_installation() {
    let server = TestServer::start(|c| c.scheduler.breaker_failures = 3).await;
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let (path, uploaded) = server
        .install_hostile(&tenant, &admin, "bad", "panic")
        .await;
    let mut socket = server.socket(&viewer).await;
    send_ws(
        &mut socket,
        json!({"type": "subscribe", "topic": "installation/bad"}),
    )
    .await;
    next_json(&mut socket, Duration::from_secs(5)).await;
    for _ in 0..3 {
        let (status, body) = server.get(&format!("{path}/bad/data"), &viewer).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (502, Some("GUEST_TRAP")),
            "{body}"
        );
    }
    let (status, body) = server.get(&format!("{path}/bad/data"), &viewer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("INSTALLATION_PARKED")),
        "{body}"
    );
    let (_, shown) = server.get(&format!("{path}/bad"), &viewer).await;
    assert_eq!(shown["status"], "parked", "{shown}");
    assert!(
        shown["parked"].as_str().unwrap().contains("GUEST_TRAP"),
        "{shown}"
    );
    let told = wait_for(&mut socket, Duration::from_secs(5), |m| {
        m["type"] == "message"
    })
    .await;
    assert_eq!(told["payload"]["type"], "parked", "{told}");
    let (_, logs) = server.get(&format!("{path}/bad/logs"), &viewer).await;
    assert_eq!(logs["errors"].as_array().unwrap().len(), 3, "{logs}");
    assert!(
        logs["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("on purpose"),
        "{logs}"
    );

    // Fixed config, enabled again: it runs.
    let (status, body) = server
        .json(
            "POST",
            &format!("{path}/bad/upgrade"),
            &admin,
            json!({"component": uploaded["hash"], "config": {"attack": "ok"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send("POST", &format!("{path}/bad/enable"), Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get(&format!("{path}/bad/data"), &viewer).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// A guest's error message as long as its output cap allows reaches its caller whole, but
/// an installation's recent errors keep only its first KiB: a hundred of them per
/// installation must not make the node hold what the guest may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recent_errors_keep_a_bounded_message() {
    let server = TestServer::start(|_| {}).await;
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let (path, _) = server
        .install_hostile(&tenant, &admin, "long", "long-error")
        .await;
    let (status, body) = server.get(&format!("{path}/long/data"), &viewer).await;
    assert_eq!(body["code"], "GUEST_ERROR", "{status} {body}");
    let answered = body["message"].as_str().unwrap();
    assert!(answered.len() > 256 << 10, "{} bytes", answered.len());
    let (_, logs) = server.get(&format!("{path}/long/logs"), &viewer).await;
    let kept = logs["errors"][0]["message"].as_str().unwrap();
    assert_eq!(logs["errors"][0]["code"], "GUEST_ERROR", "{logs}");
    assert!(kept.len() < 1100, "{} bytes kept", kept.len());
    assert!(kept.starts_with(&answered[..1000]), "{kept}");
    assert!(
        kept.ends_with(&format!("… ({} bytes more)", answered.len() - 1024)),
        "{}",
        &kept[1000..]
    );
    server.stop().await;
}

pub(crate) fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A client that subscribes and stops reading while 640 MiB are published to it: the
/// server's memory stays bounded, and the client is told and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_consumer_does_not_grow_server_memory() {
    let server = TestServer::start(|c| c.websocket.queue_messages = 64).await;
    let (tenant, _) = unique_tenants();
    let (_, viewer) = server.tenant(&tenant).await;
    let mut slow = server.socket(&viewer).await;
    send_ws(&mut slow, json!({"type": "subscribe", "topic": "flood"})).await;
    assert_eq!(
        next_json(&mut slow, Duration::from_secs(5)).await["type"],
        "subscribed"
    );

    // The client reads nothing for two seconds, then everything.
    let reader = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut told = false;
        let mut close_code = None;
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(10), slow.next()).await
        {
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    told |= value["type"] == "slow_consumer";
                }
                Ok(Message::Close(frame)) => {
                    close_code = frame.map(|f| u16::from(f.code));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (told, close_code)
    });
    let hub = server.server().app.backends().broadcast.clone();
    let payload = json!({"blob": "x".repeat(16 << 10)});
    let before = resident_bytes();
    let mut peak = before;
    for i in 0..40_000u32 {
        hub.publish(&tenant, "flood", payload.clone())
            .await
            .unwrap();
        if i % 256 == 0 {
            tokio::task::yield_now().await;
            peak = peak.max(resident_bytes());
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    peak = peak.max(resident_bytes());
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 96 << 20,
        "server memory grew by {} MiB while 640 MiB were published to a stalled client",
        growth >> 20
    );
    let metrics = &server.server().app.metrics;
    assert_eq!(metrics.ws_slow_consumers.get(), 1);
    assert!(metrics.ws_messages_dropped.get() > 0);

    // The client, reading at last, finds the notice and the close after what was queued.
    let (told, close_code) = reader.await.unwrap();
    assert!(told, "the slow consumer was not told");
    assert_eq!(close_code, Some(plinth_server::ws::CLOSE_SLOW_CONSUMER));

    // Other clients are unaffected.
    let mut fresh = server.socket(&viewer).await;
    send_ws(&mut fresh, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut fresh, Duration::from_secs(5)).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_limits_messages_by_size_and_rate() {
    let server = TestServer::start(|c| {
        c.websocket.messages_per_second = 5;
        c.websocket.max_message_bytes = 1024;
    })
    .await;
    let (tenant, _) = unique_tenants();
    let (_, viewer) = server.tenant(&tenant).await;

    let mut chatty = server.socket(&viewer).await;
    for _ in 0..40 {
        if chatty
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut refused = false;
    let mut close_code = None;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(5), chatty.next()).await
    {
        match message {
            Message::Text(text) => {
                refused |= serde_json::from_str::<Value>(&text).unwrap()["code"] == "RATE_LIMITED"
            }
            Message::Close(frame) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert!(refused, "no RATE_LIMITED error");
    assert_eq!(close_code, Some(plinth_server::ws::CLOSE_RATE_LIMITED));

    let mut big = server.socket(&viewer).await;
    let _ = big.send(Message::Text("x".repeat(4096).into())).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match big.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("an oversized message ends the connection");
    assert!(matches!(ended, None | Some(1009)), "{ended:?}");

    // Unknown and malformed messages get an error and the connection stays.
    let mut socket = server.socket(&viewer).await;
    send_ws(&mut socket, json!({"type": "dance"})).await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await["code"],
        "INVALID_REQUEST"
    );
    send_ws(
        &mut socket,
        json!({"type": "subscribe", "topic": "no/such/kind"}),
    )
    .await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await["code"],
        "INVALID_REQUEST"
    );
    send_ws(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_health_and_metrics_are_served() {
    let server = TestServer::start(|_| {}).await;
    let (status, document) = server.send("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    assert!(
        document["paths"]["/api/v1/tenants/{tenant}/installations/{id}/data"]["get"].is_object()
    );
    let statuses = &document["components"]["schemas"]["Error"]["x-status-of-code"];
    for code in plinth_host::ErrorCode::ALL {
        assert!(
            statuses[code.as_str()].as_u64().is_some(),
            "{code} has no status"
        );
    }
    let (status, body) = server.send("GET", "/readyz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let response = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    server.stop().await;
}

/// A TCP relay to PostgreSQL that the test can cut and restore, standing in for a
/// database that goes away.
struct Relay {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: &'static str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let (open2, connections2) = (open.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                connections2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Relay {
            addr,
            open,
            connections,
        }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The metadata database goes away under a running server: requests that need it get
/// 503 UNAVAILABLE, `/readyz` says so, everything else keeps serving, and it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_database_outage_is_reported_and_survived() {
    let relay = Relay::start("127.0.0.1:5432").await;
    let url = format!("postgres://root@{}/test", relay.addr);
    let schema = unique_schema();
    let server = TestServer::start(|c| {
        c.metadata = MetadataConfig::Postgres {
            url: url.clone(),
            schema: schema.clone(),
        };
    })
    .await;
    let (tenant, _) = unique_tenants();
    let (admin, _) = server.tenant(&tenant).await;
    let list = format!("/api/v1/tenants/{tenant}/installations");
    let (status, _) = server.get(&list, &admin).await;
    assert_eq!(status, 200);

    relay.cut();
    tokio::time::sleep(Duration::from_secs(5)).await; // the token memory expires
    let (status, body) = server.get(&list, &admin).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    let (status, body) = server.send("GET", "/readyz", None, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    let (status, _) = server.send("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);

    relay.restore();
    let (status, body) = server.get(&list, &admin).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;

    // A server whose metadata database cannot be reached does not start, and says why.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.metadata = MetadataConfig::Postgres {
        url: "postgres://root@127.0.0.1:1/test".into(),
        schema: "plinth".into(),
    };
    let error = plinth_server::start(config)
        .await
        .err()
        .expect("start refused");
    assert_eq!(error.code, plinth_host::ErrorCode::Unavailable, "{error}");
}

/// Two nodes sharing PostgreSQL and Redis: every tick runs on one of them only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_run_each_tick_once() {
    let schema = unique_schema();
    let one = TestServer::start(|c| {
        real_services(c, &schema);
        c.node_id = "one".into();
    })
    .await;
    let two = TestServer::start(|c| {
        real_services(c, &schema);
        c.node_id = "two".into();
    })
    .await;
    let (tenant, _) = unique_tenants();
    let (admin, _) = one.tenant(&tenant).await;
    let (status, uploaded) = one
        .upload(&tenant, &admin, guest("extensions/hello-metric"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, body) = one
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/installations"),
            &admin,
            json!({"id": "t", "component": uploaded["hash"], "tick_interval_ms": 200}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Node two reads installations every few seconds; give both time to tick.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ticks = |server: &TestServer| {
        server
            .server()
            .app
            .calls
            .recent_receipts(&tenant, "t")
            .iter()
            .filter(|r| r.call == "on-tick")
            .count()
    };
    let (a, b) = (ticks(&one), ticks(&two));
    let lost = one.server().app.metrics.ticks_claimed_elsewhere.get()
        + two.server().app.metrics.ticks_claimed_elsewhere.get();
    // 8 s at 200 ms: at most 41 periods, each run once in all.
    assert!(a + b <= 41, "ticks ran twice: {a} + {b}");
    assert!(a + b >= 20, "too few ticks: {a} + {b}");
    assert!(
        b > 0 && lost > 0,
        "node two never competed: {a} + {b}, {lost} lost claims"
    );
    one.stop().await;
    two.stop().await;
}

/// Slow ticks of one tenant never overlap themselves, are coalesced instead of queued,
/// and do not hold up another tenant's ticks: the per-tenant cap leaves it a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ticks_never_overlap_are_coalesced_and_tenants_are_kept_fair() {
    let server = TestServer::start(|c| {
        c.scheduler.max_running = 3;
        c.scheduler.max_running_per_tenant = 2;
    })
    .await;
    let (busy, calm) = unique_tenants();
    let (busy_admin, _) = server.tenant(&busy).await;
    let (calm_admin, _) = server.tenant(&calm).await;
    let hostile = guest("tests/guests/hostile");
    for (tenant, admin, attack, count) in [
        (&busy, &busy_admin, "slow-tick", 6),
        (&calm, &calm_admin, "ok", 1),
    ] {
        let (status, uploaded) = server.upload(tenant, admin, hostile.clone()).await;
        assert_eq!(status, 201, "{uploaded}");
        for i in 0..count {
            let (status, body) = server
                .json(
                    "POST",
                    &format!("/api/v1/tenants/{tenant}/installations"),
                    admin,
                    json!({"id": format!("w{i}"), "component": uploaded["hash"],
                           "config": {"attack": attack}, "tick_interval_ms": 100,
                           "grants": "cache,db:write,broadcast,log"}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seconds = started.elapsed().as_secs_f64();
    let app = &server.server().app;
    let ticks = |tenant: &str, id: &str| {
        app.calls
            .recent_receipts(tenant, id)
            .iter()
            .filter(|r| r.call == "on-tick")
            .count()
    };
    let busy_ticks: Vec<usize> = (0..6).map(|i| ticks(&busy, &format!("w{i}"))).collect();
    // One installation's 300 ms ticks cannot run more often than back to back.
    let most = (seconds / 0.3).ceil() as usize + 1;
    for (i, n) in busy_ticks.iter().enumerate() {
        assert!(
            *n <= most,
            "w{i} ticked {n} times in {seconds:.1} s: ticks overlapped"
        );
    }
    // Two at a time for the busy tenant: about 2 / 0.3 s in all, never more.
    let total: usize = busy_ticks.iter().sum();
    assert!(
        total <= (seconds * 2.0 / 0.3).ceil() as usize + 2,
        "the busy tenant ran {total} slow ticks in {seconds:.1} s past its cap of 2"
    );
    assert!(total >= 8, "the busy tenant hardly ran: {busy_ticks:?}");
    assert!(app.metrics.ticks_coalesced.get() > 0);
    // The calm tenant's 100 ms ticks kept their pace beside the busy one.
    let calm_ticks = ticks(&calm, "w0");
    assert!(
        calm_ticks as f64 >= seconds / 0.1 * 0.6,
        "the calm tenant ticked {calm_ticks} times in {seconds:.1} s; the busy one {busy_ticks:?}"
    );
    server.stop().await;
}

/// A node on `dir` with hello-metric uploaded and installed as `hello` for `tenant`, and
/// an operator token.
async fn hello_installed(dir: &std::path::Path, tenant: &str) -> (RunningServer, String) {
    let node = plinth_server::start(test_config(dir)).await.unwrap();
    let operator = plinth_server::operator_token(&node.app).await.unwrap();
    let app = &node.app;
    app.tenants.create(tenant, tenant).await.unwrap();
    let uploaded = app
        .components
        .upload(tenant, guest("extensions/hello-metric"))
        .await
        .unwrap();
    let request = serde_json::from_value(json!({
        "id": "hello", "component": uploaded.component.hash, "grants": "log",
    }))
    .unwrap();
    app.installer.install(tenant, request, true).await.unwrap();
    (node, operator)
}

/// A node that has not loaded a version compiles it on its first call under the same
/// compile timeout as an upload: a node restarted without its compiled code, and given
/// no time to compile, answers `COMPILE_TIMEOUT` rather than compiling unbounded on the
/// render path; given the time, it renders.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_node_compiles_under_the_compile_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (first, operator) = hello_installed(dir.path(), "cold").await;
    first.stop().await.unwrap();
    std::fs::remove_dir_all(dir.path().join("compiled")).unwrap();

    let render = |server: &RunningServer| {
        let url = format!(
            "{}/api/v1/tenants/cold/installations/hello/data",
            server.url()
        );
        let operator = operator.clone();
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(operator)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let mut config = test_config(dir.path());
    config.http.compile_timeout = Duration::from_millis(1);
    let hurried = plinth_server::start(config).await.unwrap();
    let (status, body) = render(&hurried).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("COMPILE_TIMEOUT")),
        "{body}"
    );
    hurried.stop().await.unwrap();

    let patient = plinth_server::start(test_config(dir.path())).await.unwrap();
    let (status, body) = render(&patient).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["receipt"]["outcome"], "OK", "{body}");
    patient.stop().await.unwrap();
}

/// A restarted node serves an installed version from the code it compiled before the
/// restart: its first render maps the artifact, nothing is compiled, and
/// `plinth_component_loads_total` tells the operator so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_renders_from_its_compiled_code() {
    let dir = tempfile::tempdir().unwrap();
    let get = |server: &RunningServer, path: &str, token: &str| {
        let url = format!("{}{path}", server.url());
        let token = token.to_owned();
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let loads = |metrics: &str| {
        let count = |code: &str| {
            let prefix = format!("plinth_component_loads_total{{code=\"{code}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
                .parse::<u64>()
                .unwrap()
        };
        (count("compiled"), count("cached"))
    };
    let data = "/api/v1/tenants/warm/installations/hello/data";

    let (first, operator) = hello_installed(dir.path(), "warm").await;
    let (status, body) = get(&first, data, &operator).await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = get(&first, "/metrics", &operator).await;
    assert_eq!(loads(&metrics), (1, 0), "the upload compiles once");
    first.stop().await.unwrap();

    let restarted = plinth_server::start(test_config(dir.path())).await.unwrap();
    let (_, metrics) = get(&restarted, "/metrics", &operator).await;
    assert_eq!(
        loads(&metrics),
        (0, 0),
        "nothing is loaded before it is used"
    );
    let (status, body) = get(&restarted, data, &operator).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["receipt"]["outcome"], "OK", "{body}");
    let (_, metrics) = get(&restarted, "/metrics", &operator).await;
    assert_eq!(
        loads(&metrics),
        (0, 1),
        "the first render maps the compiled code"
    );
    restarted.stop().await.unwrap();
}

/// A stopping server closes its WebSockets with 1001 (going away) after an `UNAVAILABLE`
/// notice, rather than leaving them to a reset: clients know to connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_closes_its_sockets_with_going_away() {
    let server = TestServer::start(|_| {}).await;
    let (tenant, _) = unique_tenants();
    let (_, viewer) = server.tenant(&tenant).await;
    let mut socket = server.socket(&viewer).await;
    send_ws(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut socket, Duration::from_secs(5)).await,
        json!({"type": "pong"})
    );
    server.stop().await;
    let (mut notice, mut code) = (None, None);
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("the socket hears of the stop")
    {
        match message {
            Ok(Message::Text(text)) => notice = Some(serde_json::from_str::<Value>(&text).unwrap()),
            Ok(Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("the socket failed instead of closing: {e}"),
        }
    }
    assert_eq!(code, Some(1001), "notice: {notice:?}");
    assert_eq!(notice.unwrap()["code"], "UNAVAILABLE");
}

/// An operator turns fuel metering off for one tenant: its calls run on the engine
/// without fuel checks (the version compiled once more, for that engine), count no fuel,
/// and are still stopped at their deadline; a fuel budget with metering off is refused
/// and leaves the quota as it was; metering back on counts fuel again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_turns_fuel_metering_off_for_one_tenant() {
    let server = TestServer::start(|_| {}).await;
    let tenant = "unmetered";
    let (admin, _) = server.tenant(tenant).await;
    let (path, uploaded) = server.install_hostile(tenant, &admin, "spin", "loop").await;
    let (status, body) = server
        .json(
            "POST",
            &path,
            &admin,
            json!({"id": "fine", "component": uploaded["hash"], "config": {"attack": "ok"},
                   "grants": "cache,db:write,broadcast,log"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let quota = format!("/api/v1/tenants/{tenant}/quota");
    let operator = server.operator.clone();
    let render = |id: &'static str| {
        let (server, path, admin) = (&server, &path, &admin);
        async move { server.get(&format!("{path}/{id}/data"), admin).await }
    };
    let loads = || async {
        let metrics = server.metrics().await;
        let prefix = "plinth_component_loads_total{code=\"compiled\"} ";
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .parse::<u64>()
            .unwrap()
    };

    let (status, body) = render("fine").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["receipt"]["fuel_used"].as_u64().unwrap() > 0, "{body}");
    let compiled = loads().await;

    let (status, body) = server
        .json(
            "PUT",
            &quota,
            &operator,
            json!({"concurrent_calls": 8, "fuel_per_minute": null, "fuel_metering": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quota"]["fuel_metering"], false, "{body}");
    let (status, body) = render("fine").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["receipt"]["fuel_used"], Value::Null, "{body}");
    assert_eq!(
        loads().await,
        compiled + 1,
        "compiled once more, for the engine without fuel"
    );
    let started = std::time::Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), render("spin"))
        .await
        .expect("the deadline stops the loop");
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("EXECUTION_TIMEOUT")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{body}");
    let (status, body) = render("fine").await;
    assert_eq!(status, 200, "the server serves after the loop: {body}");

    let (status, body) = server
        .json(
            "PUT",
            &quota,
            &operator,
            json!({"concurrent_calls": 8, "fuel_per_minute": 1000, "fuel_metering": false}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("INVALID_VALUE")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("fuel_metering"),
        "{body}"
    );
    let (_, body) = server
        .get(&format!("/api/v1/tenants/{tenant}"), &operator)
        .await;
    assert_eq!(
        body["quota"],
        json!({"concurrent_calls": 8, "fuel_per_minute": null, "fuel_metering": false,
               "installations": 1000}),
        "a refused quota changes nothing"
    );

    let (status, body) = server.send("PUT", &quota, Some(&operator), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quota"]["fuel_metering"], true, "{body}");
    let (status, body) = render("fine").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["receipt"]["fuel_used"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(loads().await, compiled + 1, "the metered load was kept");
    server.stop().await;
}

/// A tenant has at most its quota's number of installations: one more is refused with
/// `CONFLICT` and writes nothing, installs racing for the last place get one of them,
/// uninstalling makes room, and another tenant is untouched.
async fn installations_are_capped_per_tenant(server: TestServer) {
    let (tenant, other) = unique_tenants();
    // Another tenant, with the default quota, installs first: its installations do not
    // count against the first tenant's.
    let (other_admin, _) = server.tenant(&other).await;
    let (status, body) = server
        .get(&format!("/api/v1/tenants/{other}"), &server.operator)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quota"]["installations"], 1000, "{body}");
    let (status, uploaded) = server
        .upload(&other, &other_admin, guest("extensions/hello-metric"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    for id in ["one", "two", "three"] {
        let (status, body) = server
            .json(
                "POST",
                &format!("/api/v1/tenants/{other}/installations"),
                &other_admin,
                json!({"id": id, "component": uploaded["hash"], "grants": "log"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (admin, _) = server.tenant(&tenant).await;
    let (status, uploaded) = server
        .upload(&tenant, &admin, guest("extensions/hello-metric"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let path = format!("/api/v1/tenants/{tenant}/installations");
    let install = |id: &'static str| {
        let (server, path, admin, hash) = (&server, &path, &admin, &uploaded["hash"]);
        async move {
            server
                .json(
                    "POST",
                    path,
                    admin,
                    json!({"id": id, "component": hash, "grants": "log"}),
                )
                .await
        }
    };
    let (status, body) = server
        .json(
            "PUT",
            &format!("/api/v1/tenants/{tenant}/quota"),
            &server.operator,
            json!({"concurrent_calls": 16, "fuel_per_minute": null, "installations": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quota"]["installations"], 2, "{body}");

    for id in ["one", "two"] {
        let (status, body) = install(id).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = install("three").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("CONFLICT")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );
    let (_, listed) = server.get(&path, &admin).await;
    assert_eq!(listed["installations"].as_array().unwrap().len(), 2);

    let (status, _) = server
        .send("DELETE", &format!("{path}/two"), Some(&admin), None)
        .await;
    assert_eq!(status, 204);
    let racing =
        futures_util::future::join_all(["three", "four", "five", "six"].map(install)).await;
    let statuses: Vec<u16> = racing.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        (
            statuses.iter().filter(|s| **s == 201).count(),
            statuses.iter().filter(|s| **s == 409).count()
        ),
        (1, 3),
        "one place, four installs: {racing:?}"
    );
    let (_, listed) = server.get(&path, &admin).await;
    assert_eq!(listed["installations"].as_array().unwrap().len(), 2);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installations_are_capped_per_tenant_embedded() {
    installations_are_capped_per_tenant(TestServer::start(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installations_are_capped_per_tenant_redis_postgres() {
    let schema = unique_schema();
    installations_are_capped_per_tenant(TestServer::start(|c| real_services(c, &schema)).await)
        .await;
}

/// A quota set through one node applies on another node sharing the metadata database
/// within a few refreshes, and so do going back to the default and deleting the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_set_on_one_node_applies_on_the_others() {
    let schema = unique_schema();
    let one = TestServer::start(|c| real_services(c, &schema)).await;
    let two = TestServer::start(|c| real_services(c, &schema)).await;
    let (tenant, _) = unique_tenants();
    one.tenant(&tenant).await;
    let seen_on_two = |calls: usize, metered: bool, installations: u32| {
        let (two, tenant) = (&two, &tenant);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let wanted = (calls, metered, installations);
            loop {
                let quota = two.server().app.sandbox.tenant_quotas().quota_of(tenant);
                if (
                    quota.concurrent_calls,
                    quota.fuel_metering,
                    quota.installations,
                ) == wanted
                {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node two still has {quota:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let quota = format!("/api/v1/tenants/{tenant}/quota");
    let own = json!({"concurrent_calls": 3, "fuel_per_minute": null, "fuel_metering": false,
                     "installations": 5});
    let (status, body) = one.json("PUT", &quota, &one.operator, own.clone()).await;
    assert_eq!(status, 200, "{body}");
    seen_on_two(3, false, 5).await;
    let (status, body) = one.send("PUT", &quota, Some(&one.operator), None).await;
    assert_eq!(status, 200, "{body}");
    seen_on_two(16, true, 1000).await;

    let (status, body) = one.json("PUT", &quota, &one.operator, own).await;
    assert_eq!(status, 200, "{body}");
    seen_on_two(3, false, 5).await;
    let (status, body) = one
        .send(
            "DELETE",
            &format!("/api/v1/tenants/{tenant}"),
            Some(&one.operator),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    seen_on_two(16, true, 1000).await;
    one.stop().await;
    two.stop().await;
}

/// An installation removed through another node is not forgotten on this one, so each
/// node keeps receipts for at most the tenant's `installations` installations: the ring
/// of one uninstalled through node one goes on node two when a new one is used there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_keeps_receipts_for_at_most_a_tenants_installations() {
    let schema = unique_schema();
    let one = TestServer::start(|c| real_services(c, &schema)).await;
    let two = TestServer::start(|c| real_services(c, &schema)).await;
    let (tenant, _) = unique_tenants();
    let (admin, _) = one.tenant(&tenant).await;
    let (status, body) = one
        .json(
            "PUT",
            &format!("/api/v1/tenants/{tenant}/quota"),
            &one.operator,
            json!({"concurrent_calls": 16, "fuel_per_minute": null, "installations": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, uploaded) = one
        .upload(&tenant, &admin, guest("extensions/hello-metric"))
        .await;
    assert_eq!(status, 201, "{uploaded}");
    let path = format!("/api/v1/tenants/{tenant}/installations");
    let install = |id: &'static str| {
        let (one, path, admin, hash) = (&one, &path, &admin, &uploaded["hash"]);
        async move {
            let body = json!({"id": id, "component": hash, "grants": "log"});
            let (status, body) = one.json("POST", path, admin, body).await;
            assert_eq!(status, 201, "{body}");
        }
    };
    let render_on_two = |id: &'static str| {
        let (two, path, admin) = (&two, &path, &admin);
        async move {
            let (status, body) = two.get(&format!("{path}/{id}/data"), admin).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let kept_on_two = |id: &str| two.server().app.calls.recent_receipts(&tenant, id).len();
    // Node two applies the quota on one of its refreshes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while two
        .server()
        .app
        .sandbox
        .tenant_quotas()
        .quota_of(&tenant)
        .installations
        != 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node two never read the quota"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    install("a").await;
    install("b").await;
    render_on_two("a").await;
    render_on_two("b").await;
    assert_eq!((kept_on_two("a"), kept_on_two("b")), (1, 1));
    let (status, _) = one
        .send("DELETE", &format!("{path}/b"), Some(&admin), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(kept_on_two("b"), 1, "node two did not hear of it");
    // Receipts are dated to the millisecond: a's next one must be later than b's.
    let b_at = two.server().app.calls.recent_receipts(&tenant, "b")[0].at_ms;
    while plinth_server::registry::now_ms() <= b_at {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    render_on_two("a").await;
    install("c").await;
    render_on_two("c").await;
    assert_eq!(
        (kept_on_two("a"), kept_on_two("b"), kept_on_two("c")),
        (2, 0, 1),
        "b, used least recently, made room for c"
    );
    one.stop().await;
    two.stop().await;
}
