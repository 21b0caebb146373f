//! The HTTP surface against hostile clients, over real sockets: bodies are never read
//! before the token is checked, uploads take a bounded slot, connections are capped and
//! timed out, every response carries the security headers, metrics are not public, the
//! WebSocket trusts configured origins only, and nothing tells a tenant about another.

use std::net::SocketAddr;
use std::time::Duration;

use plinth_server::{RunningServer, ServerConfig};
use plinth_tests::guest;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any answer in these tests may take; every wait is bounded by it.
const PROMPTLY: Duration = Duration::from_secs(10);

struct Server {
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
    operator: String,
}

impl Server {
    async fn start(edit: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            // Not the temporary directory itself (made 0700 already): one the server makes.
            data_dir: dir.path().join("data"),
            demo: false,
            pool_instances: 16,
            ..ServerConfig::default()
        };
        config.scheduler.enabled = false;
        edit(&mut config);
        let server = plinth_server::start(config).await.expect("server starts");
        let operator = plinth_server::operator_token(&server.app).await.unwrap();
        Server {
            server: Some(server),
            _dir: dir,
            operator,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    async fn stop(mut self) {
        self.server.take().unwrap().stop().await.unwrap();
    }

    /// One request on its own connection; the answer's status, headers and JSON body.
    async fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
        let mut connection = Connection::open(self.addr()).await;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        connection
            .send(
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: {}\r\n\r\n",
                    self.addr(),
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        connection.send(body).await;
        connection.answer().await
    }

    async fn upload(&self, tenant: &str, token: &str, bytes: &[u8]) -> Answer {
        let path = format!("/api/v1/tenants/{tenant}/components");
        self.request("POST", &path, Some(token), bytes).await
    }

    /// A tenant and an admin token for it.
    async fn tenant(&self, id: &str) -> String {
        let created = self
            .request(
                "POST",
                "/api/v1/tenants",
                Some(&self.operator),
                json!({"id": id}).to_string().as_bytes(),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        self.token(id, "tenant-admin").await
    }

    async fn token(&self, tenant: &str, role: &str) -> String {
        let made = self
            .request(
                "POST",
                &format!("/api/v1/tenants/{tenant}/tokens"),
                Some(&self.operator),
                json!({"role": role}).to_string().as_bytes(),
            )
            .await;
        assert_eq!(made.status, 201, "{made:?}");
        made.json["token"].as_str().unwrap().to_owned()
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or_default()
    }
}

/// A raw HTTP/1.1 client connection: what a hostile client sends, byte for byte.
struct Connection {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        Connection {
            stream: TcpStream::connect(addr).await.unwrap(),
            read: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until `done` says what was read is enough; panics after [`PROMPTLY`].
    async fn read_until(&mut self, what: &str, done: impl Fn(&[u8]) -> Option<usize>) -> Vec<u8> {
        let read = async {
            loop {
                if let Some(end) = done(&self.read) {
                    return self.read.drain(..end).collect::<Vec<u8>>();
                }
                let mut chunk = [0u8; 8192];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                assert!(
                    n > 0,
                    "connection closed before {what}: {}",
                    String::from_utf8_lossy(&self.read)
                );
                self.read.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(PROMPTLY, read)
            .await
            .unwrap_or_else(|_| panic!("no {what} within {PROMPTLY:?}"))
    }

    /// The next response (an interim `100 Continue` included), its body read by its
    /// `Content-Length`.
    async fn answer(&mut self) -> Answer {
        let head = self
            .read_until("response head", |read| {
                read.windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| i + 4)
            })
            .await;
        let head = String::from_utf8(head).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let status: u16 = status.parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let body = self
            .read_until("response body", |read| {
                (read.len() >= length).then_some(length)
            })
            .await;
        Answer {
            status,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            headers,
        }
    }

    /// The status of the next response, or `None` if the connection ends first (a
    /// refused connection whose request the server never read may be reset before its
    /// answer is read). Panics after [`PROMPTLY`].
    async fn status_or_closed(&mut self) -> Option<u16> {
        let read = async {
            loop {
                if let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.read[..end]).into_owned();
                    return head.split(' ').nth(1).and_then(|s| s.parse().ok());
                }
                let mut chunk = [0u8; 8192];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.read.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(PROMPTLY, read)
            .await
            .expect("an answer or the end of the connection")
    }

    /// Whether the server closes the connection within [`PROMPTLY`].
    async fn closed(&mut self) -> bool {
        let wait = async {
            let mut chunk = [0u8; 8192];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PROMPTLY, wait).await.is_ok()
    }
}

fn upload_head(addr: SocketAddr, tenant: &str, token: Option<&str>, length: usize) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /api/v1/tenants/{tenant}/components HTTP/1.1\r\nHost: {addr}\r\n{auth}\
         Content-Type: application/wasm\r\nContent-Length: {length}\r\n"
    )
}

/// An anonymous client that announces a 32 MiB component and then trickles it gets its
/// 401 at once, having sent next to nothing: the token is checked from the headers and
/// the body is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_upload_is_refused_before_its_body_is_read() {
    let server = Server::start(|_| {}).await;
    server.tenant("acme").await;
    for token in [None, Some("plt_not-a-token")] {
        let mut connection = Connection::open(server.addr()).await;
        let head = upload_head(server.addr(), "acme", token, 32 << 20);
        connection.send(format!("{head}\r\n").as_bytes()).await;
        // The body, a byte at a time, until the answer comes.
        let (mut reader, mut writer) = connection.stream.into_split();
        let trickle = tokio::spawn(async move {
            let mut sent = 0usize;
            while writer.write_all(b"\0").await.is_ok() {
                sent += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if sent == 10_000 {
                    break;
                }
            }
            sent
        });
        let mut read = Vec::new();
        let answered = tokio::time::timeout(PROMPTLY, async {
            let mut chunk = [0u8; 4096];
            while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = reader.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        trickle.abort();
        assert!(answered.is_ok(), "no answer within {PROMPTLY:?}");
        let text = String::from_utf8_lossy(&read).to_string();
        assert!(text.starts_with("HTTP/1.1 401"), "{token:?}: {text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        // The JSON error follows the head.
        let mut rest = String::new();
        let _ = tokio::time::timeout(PROMPTLY, reader.read_to_string(&mut rest)).await;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned() + &rest;
        let error: Value = serde_json::from_str(body.trim()).expect("a JSON error");
        assert_eq!(error["code"], "UNAUTHENTICATED");
    }
    server.stop().await;
}

/// `Expect: 100-continue` without a valid token gets the 401 and never `100 Continue`,
/// so a well-behaved client does not even start sending; with a valid token it gets the
/// 100 and its body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_only_granted_to_a_valid_token() {
    let server = Server::start(|_| {}).await;
    let admin = server.tenant("acme").await;
    let mut connection = Connection::open(server.addr()).await;
    let head = upload_head(server.addr(), "acme", Some("plt_wrong"), 32 << 20);
    connection
        .send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
        .await;
    let answer = connection.answer().await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.code(), "UNAUTHENTICATED");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(connection.closed().await, "the connection stays open");

    let mut connection = Connection::open(server.addr()).await;
    let head = upload_head(server.addr(), "acme", Some(&admin), 8);
    connection
        .send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
        .await;
    assert_eq!(connection.answer().await.status, 100);
    connection.send(b"notwasm!").await;
    let answer = connection.answer().await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.header("connection"), None, "{answer:?}");
    server.stop().await;
}

/// Every route with a body refuses from the headers: anonymous, a viewer where an admin
/// is needed, another tenant's token. None of them waits for the announced body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_a_body_authorizes_before_reading_it() {
    let server = Server::start(|_| {}).await;
    let admin = server.tenant("acme").await;
    let viewer = server.token("acme", "viewer").await;
    server.tenant("other").await;
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("POST", "/api/v1/tenants", None, 401),
        ("POST", "/api/v1/tenants", Some(&admin), 403),
        ("PUT", "/api/v1/tenants/acme/quota", Some(&admin), 403),
        ("POST", "/api/v1/tenants/acme/tokens", Some(&viewer), 403),
        ("POST", "/api/v1/tenants/other/tokens", Some(&admin), 404),
        ("POST", "/api/v1/tenants/acme/installations", None, 401),
        (
            "POST",
            "/api/v1/tenants/acme/installations/x/upgrade",
            Some(&viewer),
            403,
        ),
        (
            "POST",
            "/api/v1/tenants/acme/installations/x/actions/go",
            None,
            401,
        ),
        (
            "PUT",
            "/api/v1/tenants/acme/dashboards/main",
            Some(&viewer),
            403,
        ),
        (
            "POST",
            "/api/v1/tenants/other/components",
            Some(&admin),
            404,
        ),
    ];
    for (method, path, token, status) in cases {
        let mut connection = Connection::open(server.addr()).await;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        connection
            .send(
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000\r\n\
                     Expect: 100-continue\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        let answer = connection.answer().await;
        assert_eq!(answer.status, *status, "{method} {path}: {answer:?}");
        assert!(answer.json["code"].is_string(), "{answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{path}");
    }
    server.stop().await;
}

/// Uploads take a slot before their body is read: a tenant gets
/// `upload_slots_per_tenant`, the node `upload_slots`; one more is `429 RATE_LIMITED`
/// with `Retry-After`, at once. `100 Continue` is the signal that a slot is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_for_a_slot_before_their_body_is_read() {
    let server = Server::start(|c| {
        c.http.upload_slots = 3;
        c.http.upload_slots_per_tenant = 2;
    })
    .await;
    let acme = server.tenant("acme").await;
    let other = server.tenant("other").await;
    let third = server.tenant("third").await;
    let mut receiving = Vec::new();
    for token in [&acme, &acme, &other] {
        let tenant = if token == &acme { "acme" } else { "other" };
        let mut connection = Connection::open(server.addr()).await;
        let head = upload_head(server.addr(), tenant, Some(token), 1 << 20);
        connection
            .send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
            .await;
        assert_eq!(connection.answer().await.status, 100);
        connection.send(&[0u8; 1024]).await;
        receiving.push(connection);
    }
    for (tenant, token, busy) in [
        ("acme", &acme, "uploads of tenant acme"),
        ("third", &third, "uploads are being received"),
    ] {
        let mut connection = Connection::open(server.addr()).await;
        let head = upload_head(server.addr(), tenant, Some(token), 1 << 20);
        connection
            .send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
            .await;
        let answer = connection.answer().await;
        assert_eq!((answer.status, answer.code()), (429, "RATE_LIMITED"));
        assert!(
            answer.json["message"].as_str().unwrap().contains(busy),
            "{answer:?}"
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert_eq!(answer.header("connection"), Some("close"));
    }
    // A stop lets requests in flight finish: these end when their clients go.
    drop(receiving);
    server.stop().await;
}

/// An authorized client that trickles its body holds its upload slot only until
/// `http.body_read_timeout`: it gets `408 REQUEST_TIMEOUT`, the slot is free for the next
/// upload, and a stop does not wait for a body that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_times_out_and_frees_its_slot() {
    let server = Server::start(|c| {
        c.http.upload_slots = 1;
        c.http.body_read_timeout = Duration::from_secs(2);
    })
    .await;
    let acme = server.tenant("acme").await;
    let mut slow = Connection::open(server.addr()).await;
    let head = upload_head(server.addr(), "acme", Some(&acme), 1 << 20);
    slow.send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
        .await;
    assert_eq!(slow.answer().await.status, 100);
    slow.send(&[0u8; 16]).await;
    // The only slot is taken: another upload is refused while the body trickles.
    let mut busy = Connection::open(server.addr()).await;
    busy.send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
        .await;
    assert_eq!(busy.answer().await.code(), "RATE_LIMITED");
    let answer = slow.answer().await;
    assert_eq!((answer.status, answer.code()), (408, "REQUEST_TIMEOUT"));
    assert_eq!(answer.header("connection"), Some("close"));
    // The slot is free again.
    let mut next = Connection::open(server.addr()).await;
    next.send(format!("{head}Expect: 100-continue\r\n\r\n").as_bytes())
        .await;
    assert_eq!(next.answer().await.status, 100);
    // A stop with that upload stalled mid-body returns once its body times out.
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops while an upload is stalled");
    drop(next);
}

/// JSON bodies hold a body slot while they are read: one token cannot make the node
/// hold more than `http.body_slots_per_token` of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_of_one_token_are_capped_while_read() {
    let server = Server::start(|c| c.http.body_slots_per_token = 1).await;
    let acme = server.tenant("acme").await;
    let head = |length: usize| {
        format!(
            "POST /api/v1/tenants/acme/tokens HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {acme}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
    };
    let body = br#"{"role": "viewer", "label": "slow"}"#;
    let mut slow = Connection::open(server.addr()).await;
    slow.send(head(body.len()).as_bytes()).await;
    // `100 Continue` comes once the body is being read, its slot held.
    assert_eq!(slow.answer().await.status, 100);
    slow.send(&body[..4]).await;
    let mut other = Connection::open(server.addr()).await;
    other.send(head(body.len()).as_bytes()).await;
    let refused = other.answer().await;
    assert_eq!((refused.status, refused.code()), (429, "RATE_LIMITED"));
    assert!(
        refused.json["message"]
            .as_str()
            .unwrap()
            .contains("request bodies of token"),
        "{refused:?}"
    );
    slow.send(&body[4..]).await;
    assert_eq!(slow.answer().await.status, 201);
    // The slot is back.
    let mut next = Connection::open(server.addr()).await;
    next.send(head(body.len()).as_bytes()).await;
    assert_eq!(next.answer().await.status, 100);
    next.send(body).await;
    assert_eq!(next.answer().await.status, 201);
    drop((slow, other));
    server.stop().await;
}

/// A body over the cap is `413 PAYLOAD_TOO_LARGE`: at once when its length says so, and
/// as soon as a chunked body grows over it, without reading the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_cap_are_refused_while_read() {
    let server = Server::start(|c| c.http.max_upload_bytes = 64 << 10).await;
    let admin = server.tenant("acme").await;
    let mut connection = Connection::open(server.addr()).await;
    let head = upload_head(server.addr(), "acme", Some(&admin), 1 << 30);
    connection.send(format!("{head}\r\n").as_bytes()).await;
    let answer = connection.answer().await;
    assert_eq!((answer.status, answer.code()), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(answer.header("connection"), Some("close"));

    let mut connection = Connection::open(server.addr()).await;
    connection
        .send(
            format!(
                "POST /api/v1/tenants/acme/components HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {admin}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    // 160 KiB: over the cap, and over what the server reads and drops past it (another
    // cap's worth) before answering, so the rest is left unread and the connection closed.
    let chunk = [7u8; 16 << 10];
    for _ in 0..10 {
        connection
            .send(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        connection.send(&chunk).await;
        connection.send(b"\r\n").await;
    }
    let answer = connection.answer().await;
    assert_eq!((answer.status, answer.code()), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(answer.header("connection"), Some("close"));
    server.stop().await;
}

/// Security headers on every response: the console, its script, health, errors, and the
/// token creation above all (no-store). The console runs under the policy: no inline
/// script or style.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let server = Server::start(|_| {}).await;
    let admin = server.tenant("acme").await;
    let made = server
        .request(
            "POST",
            "/api/v1/tenants/acme/tokens",
            Some(&admin),
            br#"{"role":"viewer"}"#,
        )
        .await;
    assert_eq!(made.status, 201);
    let mut answers = vec![("token creation", made)];
    for (path, token) in [
        ("/", None),
        ("/console/app.js", None),
        ("/console/console.css", None),
        ("/console/vendor/preact.mjs", None),
        ("/console/no-such-file.js", None),
        ("/healthz", None),
        ("/api/v1/tenants/acme", None),
        ("/api/v1/tenants/acme", Some(admin.as_str())),
        ("/no/such/route", None),
    ] {
        answers.push((path, server.request("GET", path, token, b"").await));
    }
    for (what, answer) in &answers {
        let policy = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{what}: no CSP: {answer:?}"));
        assert!(policy.contains("default-src 'none'"), "{what}: {policy}");
        assert!(policy.contains("script-src 'self'"), "{what}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{what}: {policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{what}");
    }

    // The console page itself: its script and style come from files.
    let mut connection = Connection::open(server.addr()).await;
    connection
        .send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut page = String::new();
    tokio::time::timeout(PROMPTLY, connection.stream.read_to_string(&mut page))
        .await
        .unwrap()
        .unwrap();
    let page = page.split("\r\n\r\n").nth(1).unwrap().to_owned();
    assert!(
        page.contains(r#"<script type="module" src="/console/app.js"></script>"#),
        "{page}"
    );
    assert!(
        !page.contains("<script>") && !page.contains("<style"),
        "{page}"
    );
    assert!(
        !page.contains(" style=") && !page.contains(" onclick="),
        "{page}"
    );
    let script = server.request("GET", "/console/app.js", None, b"").await;
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript"),
        "{script:?}"
    );
    // Only the console's own files: nothing outside its directory, and not the
    // vendored files' checksums or licences (no content type a browser should load).
    for path in [
        "/console/../Cargo.toml",
        "/console/%2e%2e/Cargo.toml",
        "/console/vendor/SHA256SUMS",
        "/console/vendor/fetch",
    ] {
        let answer = server.request("GET", path, None, b"").await;
        assert_eq!((answer.status, answer.code()), (404, "NOT_FOUND"), "{path}");
    }
    server.stop().await;
}

/// By default `/metrics` is on the main listener for operator tokens only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_operator_token_by_default() {
    let server = Server::start(|_| {}).await;
    let admin = server.tenant("acme").await;
    let anonymous = server.request("GET", "/metrics", None, b"").await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "UNAUTHENTICATED")
    );
    let tenant = server.request("GET", "/metrics", Some(&admin), b"").await;
    assert_eq!((tenant.status, tenant.code()), (403, "FORBIDDEN"));
    let mut connection = Connection::open(server.addr()).await;
    connection
        .send(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Connection: close\r\n\r\n",
                server.operator
            )
            .as_bytes(),
        )
        .await;
    let mut text = String::new();
    tokio::time::timeout(PROMPTLY, connection.stream.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("plinth_uptime_seconds"), "{text}");
    server.stop().await;
}

/// With `metrics_listen`, `/metrics` is served there without a token, and not at all on
/// the main listener, whoever asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_moves_metrics_to_their_own_address() {
    let server = Server::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics_addr = server.server.as_ref().unwrap().metrics_addr.unwrap();
    assert_ne!(metrics_addr, server.addr());
    let on_main = server
        .request("GET", "/metrics", Some(&server.operator), b"")
        .await;
    assert_eq!((on_main.status, on_main.code()), (404, "NOT_FOUND"));
    let mut connection = Connection::open(metrics_addr).await;
    connection
        .send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut text = String::new();
    tokio::time::timeout(PROMPTLY, connection.stream.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("plinth_uptime_seconds"), "{text}");
    // Only metrics there: the API is not.
    let mut connection = Connection::open(metrics_addr).await;
    connection
        .send(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(connection.answer().await.status, 404);
    server.stop().await;
}

/// The WebSocket's `Origin` check compares with the configured public origins, never
/// with the request's `Host` (which a DNS-rebinding page controls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origins_are_the_configured_public_ones() {
    async fn upgrade(addr: SocketAddr, host: &str, origin: &str, token: &str) -> Answer {
        let mut connection = Connection::open(addr).await;
        connection
            .send(
                format!(
                    "GET /api/v1/ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
                     Sec-WebSocket-Protocol: plinth.v1, plinth.token.{token}\r\n\
                     Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        connection.answer().await
    }
    let server = Server::start(|_| {}).await;
    let admin = server.tenant("acme").await;
    let port = server.addr().port();
    let evil = upgrade(server.addr(), "evil.example", "http://evil.example", &admin).await;
    assert_eq!((evil.status, evil.code()), (403, "FORBIDDEN"));
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let own = upgrade(server.addr(), "evil.example", &origin, &admin).await;
        assert_eq!(own.status, 101, "{origin}: {own:?}");
        // The console's way in: the token offered as a subprotocol, never echoed.
        assert_eq!(
            own.header("sec-websocket-protocol"),
            Some("plinth.v1"),
            "{own:?}"
        );
    }
    server.stop().await;

    let server =
        Server::start(|c| c.public_origins = vec!["https://console.example.com".into()]).await;
    let admin = server.tenant("acme").await;
    let port = server.addr().port();
    let configured = upgrade(server.addr(), "x", "https://console.example.com", &admin).await;
    assert_eq!(configured.status, 101, "{configured:?}");
    let loopback = format!("http://127.0.0.1:{port}");
    let other = upgrade(
        server.addr(),
        &format!("127.0.0.1:{port}"),
        &loopback,
        &admin,
    )
    .await;
    assert_eq!((other.status, other.code()), (403, "FORBIDDEN"));
    server.stop().await;
}

/// A tenant uploading bytes another tenant uploaded first is answered the same
/// `compiled_ms`: the shared compile cache does not tell on the other tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_do_not_reveal_another_tenants_compile() {
    let bytes = guest("extensions/hello-metric");
    let server = Server::start(|_| {}).await;
    let first = server.tenant("first").await;
    let second = server.tenant("second").await;
    let a = server.upload("first", &first, &bytes).await;
    assert_eq!(a.status, 201, "{a:?}");
    let b = server.upload("second", &second, &bytes).await;
    assert_eq!(b.status, 201, "{b:?}");
    assert!(a.json["compiled_ms"].as_u64().unwrap() > 0, "{a:?}");
    assert_eq!(a.json["compiled_ms"], b.json["compiled_ms"]);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("uploaded_ms");
        v
    };
    assert_eq!(strip(a.json), strip(b.json));
    server.stop().await;
}

/// An action the extension does not declare is `404 NOT_FOUND`, not a gateway error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_action_is_not_found() {
    let bytes = guest("extensions/cache-stats");
    let server = Server::start(|_| {}).await;
    let admin = server.tenant("acme").await;
    let uploaded = server.upload("acme", &admin, &bytes).await;
    assert_eq!(uploaded.status, 201, "{uploaded:?}");
    let grants = uploaded.json["descriptor"]["capabilities"].clone();
    let installed = server
        .request(
            "POST",
            "/api/v1/tenants/acme/installations",
            Some(&admin),
            json!({"id": "stats", "component": uploaded.json["hash"], "grants": grants, "tick_interval_ms": 0})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(installed.status, 201, "{installed:?}");
    let missing = server
        .request(
            "POST",
            "/api/v1/tenants/acme/installations/stats/actions/no-such-action",
            Some(&admin),
            b"{}",
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "NOT_FOUND"),
        "{missing:?}"
    );
    let declared = server
        .request(
            "POST",
            "/api/v1/tenants/acme/installations/stats/actions/export",
            Some(&admin),
            br#"{"format":"json"}"#,
        )
        .await;
    assert_eq!(declared.status, 200, "{declared:?}");
    server.stop().await;
}

/// Slowloris: half a request line, then nothing; and an idle keep-alive connection.
/// Both are closed after `http.header_read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let server = Server::start(|c| c.http.header_read_timeout = Duration::from_millis(300)).await;
    let mut slow = Connection::open(server.addr()).await;
    slow.send(b"GET /heal").await;
    assert!(slow.closed().await, "a half-sent request line is kept open");

    let mut idle = Connection::open(server.addr()).await;
    idle.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(idle.answer().await.status, 200);
    assert!(
        idle.closed().await,
        "an idle keep-alive connection is kept open"
    );
    server.stop().await;
}

/// Opens `count` connections that each get an answer, then one more, which must be
/// refused with `503 UNAVAILABLE` and closed; answers the ones kept.
async fn fill_then_refuse(server: &Server, count: usize) -> Vec<Connection> {
    let mut open = Vec::new();
    for _ in 0..count {
        let mut connection = Connection::open(server.addr()).await;
        connection
            .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        assert_eq!(connection.answer().await.status, 200);
        open.push(connection);
    }
    let mut over = Connection::open(server.addr()).await;
    let answer = over.answer().await;
    assert_eq!((answer.status, answer.code()), (503, "UNAVAILABLE"));
    assert!(over.closed().await);
    open
}

/// Connections over `http.max_connections` are answered 503 and closed at once; the
/// ones within keep working, and a place freed is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused() {
    let server = Server::start(|c| {
        c.http.max_connections = 3;
        c.http.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut open = fill_then_refuse(&server, 3).await;
    // The ones within the cap still serve.
    for connection in &mut open {
        connection
            .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        assert_eq!(connection.answer().await.status, 200);
    }
    // One closes (the server sees it end its connection); its place is free again.
    let mut leaving = open.pop().unwrap();
    leaving
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(leaving.answer().await.status, 200);
    assert!(leaving.closed().await);
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        let mut again = Connection::open(server.addr()).await;
        // A refused connection may be closed before this is written: not an error here.
        let _ = again
            .stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        if again.status_or_closed().await == Some(200) {
            break;
        }
        // The server may still be tearing the closed connection down.
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

/// One client address may hold at most `http.max_connections_per_address` connections;
/// the next is refused like one over the node's cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_capped() {
    let server = Server::start(|c| {
        c.http.max_connections_per_address = 2;
        c.http.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let open = fill_then_refuse(&server, 2).await;
    drop(open);
    server.stop().await;
}

/// A client that pipelines requests and never reads the answers holds its connection
/// only until a write has waited `http.header_read_timeout`: the server closes it with
/// most answers unsent, rather than keeping it (and its place) for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed() {
    let server = Server::start(|c| c.http.header_read_timeout = Duration::from_millis(300)).await;
    let mut connection = Connection::open(server.addr()).await;
    let request = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    const REQUESTS: usize = 2_000;
    let mut pipelined = Vec::with_capacity(request.len() * REQUESTS);
    for _ in 0..REQUESTS {
        pipelined.extend_from_slice(request);
    }
    // Written while nothing is read: the answers fill both sides' buffers, and the
    // server's write waits. What the timeout is for takes time to happen.
    let _ = connection.stream.write_all(&pipelined).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut answers = 0;
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(PROMPTLY, connection.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&chunk[..n]);
                answers += seen.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
                // Keep only a tail that may hold the start of a status line.
                let keep = seen.len().saturating_sub(11);
                seen.drain(..keep);
            }
            Err(_) => panic!("the connection stayed open and silent"),
        }
    }
    assert!(
        answers < REQUESTS,
        "all {answers} answers were written: the stalled connection was kept"
    );
    server.stop().await;
}

/// A tenant created under an id that an earlier tenant had starts empty: whatever was
/// written for that id after its deletion (a call still running, a node not yet told)
/// is dropped first. An id that is not a plain identifier touches no backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_never_sees_what_an_earlier_one_left() {
    use plinth_host::capability::db::StatementBounds;
    let server = Server::start(|_| {}).await;
    let app = server.server.as_ref().unwrap().app.clone();
    let backends = app.backends();
    let bounds = || StatementBounds {
        max_rows: 10,
        max_bytes: 1 << 20,
        deadline: std::time::Instant::now() + Duration::from_secs(10),
    };
    // What a late writer leaves for an id no tenant has.
    backends
        .cache
        .set("ghost", "left", b"behind".to_vec(), None)
        .await
        .unwrap();
    backends
        .db
        .execute(
            "ghost",
            "CREATE TABLE leftover (x INTEGER)",
            vec![],
            bounds(),
        )
        .await
        .unwrap();
    server.tenant("ghost").await;
    assert_eq!(backends.cache.get("ghost", "left").await.unwrap(), None);
    let old = backends
        .db
        .query("ghost", "SELECT x FROM leftover", vec![], bounds())
        .await;
    assert!(old.is_err(), "the leftover table is still there: {old:?}");
    // A second create is a conflict and drops nothing.
    backends
        .cache
        .set("ghost", "mine", b"kept".to_vec(), None)
        .await
        .unwrap();
    let again = server
        .request(
            "POST",
            "/api/v1/tenants",
            Some(&server.operator),
            json!({"id": "ghost"}).to_string().as_bytes(),
        )
        .await;
    assert_eq!((again.status, again.code()), (409, "CONFLICT"));
    assert_eq!(
        backends
            .cache
            .get("ghost", "mine")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    for id in ["../escape", "Ghost", ""] {
        let bad = server
            .request(
                "POST",
                "/api/v1/tenants",
                Some(&server.operator),
                json!({ "id": id }).to_string().as_bytes(),
            )
            .await;
        assert_eq!((bad.status, bad.code()), (400, "INVALID_REQUEST"), "{id:?}");
    }
    server.stop().await;
}

/// The data directory is this user's only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = Server::start(|_| {}).await;
    let dir = &server.server.as_ref().unwrap().app.config.data_dir;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    server.stop().await;
}
