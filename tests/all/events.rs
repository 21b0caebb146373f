//! Events end to end: posted over HTTP, stored durably, delivered to handlers in fresh
//! sandboxes, retried, dead-lettered, replayed; on the embedded queue (SQLite) and on
//! Redis Streams + PostgreSQL; across a SIGKILL of a real server process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plinth_server::ServerConfig;
use plinth_server::config::EventQueueConfig;
use plinth_tests::{guest, socket_request, unique_tenants};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::server::{
    REDIS, TestServer, next_json, real_services, send_ws, unique_schema, wait_for,
};

const JOURNAL: &str = "tests/guests/event-journal";
const JOURNAL_FIXED: &str = "tests/guests/event-journal-fixed";

/// The Redis queue of a test's deployment (its metadata schema): keys of its own, as
/// two deployments sharing a Redis must have.
fn queue_of(schema: &str) -> EventQueueConfig {
    EventQueueConfig::Redis {
        url: REDIS.into(),
        prefix: format!("{schema}:events:"),
    }
}

/// Checks `what` until it gives a value or `wait` is over: for state another task
/// changes (a handler ran), read through the API.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    wait: Duration,
    what: impl Fn() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(found) = what().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token of `role` for `tenant`.
async fn token(server: &TestServer, tenant: &str, role: &str) -> String {
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/tokens"),
            &server.operator,
            json!({"role": role, "label": role}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Uploads and installs `crate_dir` as installation `id` with `grants`; the operator
/// installs, so limits above the defaults may be given.
async fn install(
    server: &TestServer,
    tenant: &str,
    admin: &str,
    crate_dir: &str,
    id: &str,
    grants: &str,
    limits: Value,
) -> String {
    let (status, uploaded) = server.upload(tenant, admin, guest(crate_dir)).await;
    assert_eq!(status, 201, "{uploaded}");
    let hash = uploaded["hash"].as_str().unwrap().to_owned();
    let mut request = json!({"id": id, "component": hash, "grants": grants});
    if !limits.is_null() {
        request["limits"] = limits;
    }
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/installations"),
            &server.operator,
            request,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    hash
}

/// A new tenant with the event journal installed as `journal`: its id and its admin and
/// viewer tokens.
async fn journal_tenant(server: &TestServer) -> (String, String, String) {
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    install(
        server,
        &tenant,
        &admin,
        JOURNAL,
        "journal",
        "db:write,broadcast,log",
        Value::Null,
    )
    .await;
    (tenant, admin, viewer)
}

/// Upgrades `journal` to the version whose handler does not trap.
async fn upgrade_journal(server: &TestServer, tenant: &str, admin: &str) {
    let (status, uploaded) = server.upload(tenant, admin, guest(JOURNAL_FIXED)).await;
    assert_eq!(status, 201, "{uploaded}");
    let (status, body) = server
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/installations/journal/upgrade"),
            admin,
            json!({"component": uploaded["hash"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn post(server: &TestServer, tenant: &str, token: &str, events: Value) -> (u16, Value) {
    server
        .json(
            "POST",
            &format!("/api/v1/tenants/{tenant}/events"),
            token,
            events,
        )
        .await
}

/// The first number under an object titled `title`, wherever it is in `value`.
fn titled_value(value: &Value, title: &str) -> Option<f64> {
    match value {
        Value::Object(map) => {
            if map.get("title").and_then(Value::as_str) == Some(title)
                && let Some(v) = map.get("value").and_then(Value::as_f64)
            {
                return Some(v);
            }
            map.values().find_map(|v| titled_value(v, title))
        }
        Value::Array(items) => items.iter().find_map(|v| titled_value(v, title)),
        _ => None,
    }
}

/// Every `(event id, attempt)` the journal handler recorded, read through its render.
async fn journal(server: &TestServer, tenant: &str, token: &str) -> Vec<(String, u64)> {
    let mut rows = Vec::new();
    for page in 0.. {
        let (status, body) = server
            .get(
                &format!("/api/v1/tenants/{tenant}/installations/journal/data?page={page}"),
                token,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let data = &body["views"][0]["data"];
        let got = data["rows"].as_array().expect("journal rows");
        for row in got {
            rows.push((
                row[0].as_str().unwrap().to_owned(),
                row[1].as_u64().unwrap(),
            ));
        }
        if got.len() < 500 {
            break;
        }
    }
    rows
}

/// Attempts per event id, from the journal.
fn attempts(rows: &[(String, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut by_id: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, attempt) in rows {
        by_id.entry(id.clone()).or_default().push(*attempt);
    }
    for attempts in by_id.values_mut() {
        attempts.sort();
    }
    by_id
}

/// POST `order.completed` → the sales-metrics handler updates the tenant's database and
/// cache and broadcasts → a subscribed socket gets the new numbers → the widget's
/// render agrees. A repeat of the id is acknowledged as a duplicate.
async fn order_completed_flow(server: TestServer) {
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = server.tenant(&tenant).await;
    let publisher = token(&server, &tenant, "publisher").await;
    install(
        &server,
        &tenant,
        &admin,
        "extensions/sales-metrics",
        "sales",
        "cache,db:write,broadcast,log",
        Value::Null,
    )
    .await;
    let mut socket = server.socket(&viewer).await;
    for topic in ["sales", "widget/sales"] {
        send_ws(&mut socket, json!({"type": "subscribe", "topic": topic})).await;
        assert_eq!(
            next_json(&mut socket, Duration::from_secs(5)).await,
            json!({"type": "subscribed", "topic": topic})
        );
    }
    let order = json!({
        "id": "order-1001",
        "name": "order.completed",
        "payload": {"order_id": 1001, "customer_id": 7, "staff_id": 2, "total": 120.5},
    });
    let (status, body) = post(&server, &tenant, &publisher, order.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": ["order-1001"], "duplicates": []}));
    // The handler's own broadcast, and the widget's views pushed after the event (in
    // either order).
    let (mut pushed, mut views) = (None, None);
    while pushed.is_none() || views.is_none() {
        let message = next_json(&mut socket, Duration::from_secs(30)).await;
        match message["topic"].as_str() {
            Some("sales") => pushed = Some(message),
            Some("widget/sales") => views = Some(message),
            _ => {}
        }
    }
    let (pushed, views) = (pushed.unwrap(), views.unwrap());
    assert_eq!(views["payload"]["cause"], "event", "{views}");
    let revenue = titled_value(&pushed["payload"], "Revenue").expect("revenue in the push");
    assert_eq!(
        titled_value(&views["payload"]["views"], "Revenue"),
        Some(revenue),
        "{views}"
    );
    let orders = titled_value(&pushed["payload"], "Orders").expect("orders in the push");
    assert!(revenue >= 120.5 && orders >= 1.0, "{pushed}");
    let (status, rendered) = server
        .get(
            &format!("/api/v1/tenants/{tenant}/installations/sales/data"),
            &viewer,
        )
        .await;
    assert_eq!(status, 200, "{rendered}");
    assert_eq!(titled_value(&rendered["views"], "Revenue"), Some(revenue));
    assert_eq!(titled_value(&rendered["views"], "Orders"), Some(orders));

    // The same id again: acknowledged, not delivered again.
    let (status, body) = post(&server, &tenant, &publisher, json!([order])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": [], "duplicates": ["order-1001"]}));
    let stats = until(Duration::from_secs(10), || async {
        let (status, stats) = server
            .get(
                &format!("/api/v1/tenants/{tenant}/installations/sales/deliveries"),
                &viewer,
            )
            .await;
        assert_eq!(status, 200, "{stats}");
        (stats["delivered"] == 1).then_some(stats)
    })
    .await
    .expect("one delivery counted");
    assert_eq!(stats["dead_letters_kept"], 0, "{stats}");

    // A second order moves the numbers, and the socket sees it.
    let (status, _) = post(
        &server,
        &tenant,
        &publisher,
        json!({"id": "order-1002", "name": "order.completed",
               "payload": {"order_id": 1002, "customer_id": 8, "staff_id": 1, "total": 79.5}}),
    )
    .await;
    assert_eq!(status, 202);
    let pushed = wait_for(&mut socket, Duration::from_secs(30), |m| {
        m["type"] == "message"
            && m["topic"] == "sales"
            && titled_value(&m["payload"], "Orders") == Some(orders + 1.0)
    })
    .await;
    assert_eq!(
        titled_value(&pushed["payload"], "Revenue"),
        Some(revenue + 79.5)
    );
    // The counts are taken after the handler's call returns, a moment after its
    // message is out: read until they are there.
    let series = [
        format!("plinth_events_accepted_total{{tenant=\"{tenant}\"}} 2"),
        format!("plinth_events_duplicates_total{{tenant=\"{tenant}\"}} 1"),
        format!("plinth_event_deliveries_total{{tenant=\"{tenant}\",outcome=\"done\"}} 2"),
        "plinth_event_handled_seconds_count 2".to_owned(),
    ];
    let metrics = until(Duration::from_secs(10), || async {
        let metrics = server.metrics().await;
        series
            .iter()
            .all(|s| metrics.contains(s.as_str()))
            .then_some(metrics)
    })
    .await;
    assert!(metrics.is_some(), "{series:?} not all in /metrics");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_completed_reaches_the_socket_and_the_render_embedded() {
    order_completed_flow(TestServer::start(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_completed_reaches_the_socket_and_the_render_redis_postgres() {
    let schema = unique_schema();
    order_completed_flow(
        TestServer::start(|config| {
            real_services(config, &schema);
            config.events.queue = queue_of(&schema);
        })
        .await,
    )
    .await;
}

/// Every kind of bad input gets its code, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_get_their_codes_and_nothing_is_stored() {
    let server = TestServer::start(|config| {
        // Nothing drains the queue, so the backlog cap can be reached.
        config.events.enabled = false;
        // One event a second after a burst of 30: the refill during the test is too
        // small to matter.
        config.events.rate_per_second = 1;
        config.events.burst = 30;
        config.events.max_batch = 30;
        config.events.max_backlog = 3;
    })
    .await;
    let (tenant, _, viewer) = journal_tenant(&server).await;
    let publisher = token(&server, &tenant, "publisher").await;
    let path = format!("/api/v1/tenants/{tenant}/events");
    let good = json!({"id": "e-1", "name": "test.one", "payload": {"n": 1}});
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"id\": \"e-1\",".to_vec(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "no name",
            json!({"id": "e-1", "payload": {}}).to_string().into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "no id",
            json!({"name": "test.one"}).to_string().into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a name with an empty segment",
            json!({"id": "e-1", "name": "test..one"})
                .to_string()
                .into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a name with a space",
            json!({"id": "e-1", "name": "test one"})
                .to_string()
                .into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "an id with a space",
            json!({"id": "e 1", "name": "test.one"})
                .to_string()
                .into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "an unknown priority",
            json!({"id": "e-1", "name": "test.one", "priority": "urgent"})
                .to_string()
                .into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "an unknown field",
            json!({"id": "e-1", "name": "test.one", "extra": 1})
                .to_string()
                .into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a batch with one bad event",
            json!([good, {"id": "e-2", "name": ""}])
                .to_string()
                .into_bytes(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a payload over 64 KiB",
            json!({"id": "e-1", "name": "test.one", "payload": {"blob": "x".repeat(70 << 10)}})
                .to_string()
                .into_bytes(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, answer) = server
            .send("POST", &path, Some(&publisher), Some(body))
            .await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{what}: {answer}"
        );
    }
    // Roles: a viewer may not post; a publisher may do nothing but post.
    let (status, answer) = post(&server, &tenant, &viewer, good.clone()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{answer}"
    );
    let (status, answer) = server
        .get(
            &format!("/api/v1/tenants/{tenant}/installations"),
            &publisher,
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{answer}"
    );
    let (other, _) = unique_tenants();
    server.tenant(&other).await;
    let (status, answer) = post(&server, &other, &publisher, good.clone()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{answer}"
    );
    let refused = tokio_tungstenite::connect_async(socket_request(
        &server.url("/api/v1/ws").replace("http://", "ws://"),
        &publisher,
    ))
    .await;
    assert!(refused.is_err(), "a publisher opened a WebSocket");

    // An empty batch stores nothing and is no error.
    let (status, body) = post(&server, &tenant, &publisher, json!([])).await;
    assert_eq!(
        (status, body),
        (202, json!({"accepted": [], "duplicates": []}))
    );
    // Nothing above was stored: the queue is empty and the ids are new.
    let (_, queue) = server.get(&format!("{path}/queue"), &viewer).await;
    assert_eq!(queue["waiting"], 0, "{queue}");
    let (status, body) = post(
        &server,
        &tenant,
        &publisher,
        json!([good, {"id": "e-2", "name": "test.two"}]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], json!(["e-1", "e-2"]));

    // The backlog cap (3 deliveries): a batch that would pass it is refused whole.
    let (status, answer) = post(
        &server,
        &tenant,
        &publisher,
        json!([{"id": "e-3", "name": "test.x"}, {"id": "e-4", "name": "test.x"}]),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{answer}"
    );
    let (_, queue) = server.get(&format!("{path}/queue"), &viewer).await;
    assert_eq!(queue["waiting"], 2, "{queue}");
    // An event no handler matches is stored (acknowledged) with no delivery.
    let (status, body) = post(
        &server,
        &tenant,
        &publisher,
        json!({"id": "o-1", "name": "other.thing"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    // The rate (a burst of 30, 5 used): a batch over what is left is refused whole.
    let many: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("r-{i}"), "name": "other.thing"}))
        .collect();
    let response = server
        .http
        .post(server.url(&path))
        .bearer_auth(&publisher)
        .body(serde_json::to_vec(&many).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["code"], "RATE_LIMITED", "{answer}");
    server.stop().await;
}

/// A handler that traps is retried with a growing attempt, then dead-lettered with its
/// error and receipt; `rejected` is dead-lettered at once; after an upgrade that fixes
/// the handler, replay delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_handler_ends_in_dead_letters_and_replay_handles_it_after_the_fix() {
    let server = TestServer::start(|config| {
        config.events.max_attempts = 3;
        config.events.backoff_base = Duration::from_millis(20);
        config.events.backoff_max = Duration::from_millis(100);
        // The breaker must not park it first in this test.
        config.scheduler.breaker_failures = 10;
    })
    .await;
    let (tenant, admin, viewer) = journal_tenant(&server).await;
    let (status, body) = post(
        &server,
        &tenant,
        &admin,
        json!([
            {"id": "poison", "name": "test.trap", "payload": {"trap": true}},
            {"id": "refused", "name": "test.refuse", "payload": {"fail": "rejected"}},
            {"id": "flaky", "name": "test.flaky", "payload": {"fail": "unavailable"}},
            {"id": "fine", "name": "test.fine", "payload": {}},
        ]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let letters_path = format!("/api/v1/tenants/{tenant}/dead-letters");
    let letters = until(Duration::from_secs(60), || async {
        let (_, body) = server.get(&letters_path, &viewer).await;
        let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
        (letters.len() == 3).then_some(letters)
    })
    .await
    .expect("three dead letters");
    let by_event: BTreeMap<&str, &Value> = letters
        .iter()
        .map(|l| (l["event"]["id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by_event["poison"]["attempts"], 3, "{letters:?}");
    assert_eq!(by_event["poison"]["error"]["code"], "GUEST_TRAP");
    assert_eq!(by_event["poison"]["receipt"]["outcome"], "GUEST_TRAP");
    assert_eq!(
        by_event["refused"]["attempts"], 1,
        "rejected is never retried"
    );
    assert_eq!(by_event["flaky"]["attempts"], 3);
    assert_eq!(by_event["flaky"]["error"]["code"], "GUEST_ERROR");
    let rows = attempts(&journal(&server, &tenant, &viewer).await);
    assert_eq!(rows["poison"], vec![1, 2, 3]);
    assert_eq!(rows["refused"], vec![1]);
    assert_eq!(rows["fine"], vec![1]);

    // One letter inspected by its id; a viewer may not replay.
    let id = by_event["poison"]["id"].as_str().unwrap();
    let (status, one) = server.get(&format!("{letters_path}/{id}"), &viewer).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["event"]["payload"], json!({"trap": true}));
    let (status, _) = server
        .send(
            "POST",
            &format!("{letters_path}/{id}/replay"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // The fix: an upgrade, then replay of everything of the installation.
    upgrade_journal(&server, &tenant, &admin).await;
    let (status, body) = server
        .send(
            "DELETE",
            &format!(
                "{letters_path}/{}",
                by_event["refused"]["id"].as_str().unwrap()
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, &body["purged"]), (200, &json!(1)), "{body}");
    let (status, body) = server
        .send(
            "POST",
            &format!("/api/v1/tenants/{tenant}/installations/journal/dead-letters/replay"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, &body["replayed"]), (202, &json!(2)), "{body}");
    let rows = until(Duration::from_secs(30), || async {
        let rows = attempts(&journal(&server, &tenant, &viewer).await);
        (rows["poison"].len() == 4).then_some(rows)
    })
    .await
    .expect("the replay ran");
    assert_eq!(rows["poison"], vec![1, 1, 2, 3], "replayed from attempt 1");
    // Handled now: the poison event is no longer a dead letter (flaky fails again).
    let letters = until(Duration::from_secs(30), || async {
        let (_, body) = server.get(&letters_path, &viewer).await;
        let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
        (letters.len() == 1).then_some(letters)
    })
    .await
    .expect("only flaky is left");
    assert_eq!(letters[0]["event"]["id"], "flaky");
    let (_, stats) = server
        .get(
            &format!("/api/v1/tenants/{tenant}/installations/journal/deliveries"),
            &viewer,
        )
        .await;
    assert_eq!(stats["dead_lettered"], 4, "{stats}");
    assert_eq!(stats["last_error"]["code"], "GUEST_ERROR", "{stats}");
    server.stop().await;
}

/// A parked installation's deliveries wait, and run once it is fixed and enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_installation_keeps_its_deliveries_waiting() {
    let server = TestServer::start(|config| {
        config.events.max_attempts = 10;
        config.events.backoff_base = Duration::from_millis(20);
        config.events.backoff_max = Duration::from_millis(50);
        config.scheduler.breaker_failures = 2;
    })
    .await;
    let (tenant, admin, viewer) = journal_tenant(&server).await;
    let (status, _) = post(
        &server,
        &tenant,
        &admin,
        json!({"id": "poison", "name": "test.trap", "payload": {"trap": true}}),
    )
    .await;
    assert_eq!(status, 202);
    let path = format!("/api/v1/tenants/{tenant}/installations/journal");
    until(Duration::from_secs(30), || async {
        let (_, body) = server.get(&path, &viewer).await;
        (body["status"] == "parked").then_some(())
    })
    .await
    .expect("parked by the breaker");
    let (_, queue) = server
        .get(&format!("/api/v1/tenants/{tenant}/events/queue"), &viewer)
        .await;
    assert_eq!(queue["waiting"], 1, "waiting, not lost: {queue}");
    assert_eq!(queue["dead_letters"], 0, "{queue}");
    upgrade_journal(&server, &tenant, &admin).await;
    let (status, body) = server
        .send("POST", &format!("{path}/enable"), Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = until(Duration::from_secs(30), || async {
        let rows = attempts(&journal(&server, &tenant, &viewer).await);
        (rows["poison"].len() == 3).then_some(rows)
    })
    .await
    .expect("delivered after the fix");
    assert_eq!(rows["poison"], vec![1, 2, 3]);
    server.stop().await;
}

/// High before normal before low within a tenant; one key's deliveries in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_run_high_first_and_keys_in_order() {
    let server = TestServer::start(|config| {
        config.events.enabled = false;
    })
    .await;
    let (tenant, admin, viewer) = journal_tenant(&server).await;
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(json!({"id": format!("low-{i}"), "name": "test.x", "priority": "low"}));
        batch.push(json!({"id": format!("high-{i}"), "name": "test.x", "priority": "high"}));
        batch.push(
            json!({"id": format!("key-{i}"), "name": "test.x", "key": "k",
                          "payload": if i == 1 {json!({"fail": "unavailable"})} else {json!({})}}),
        );
    }
    let (status, body) = post(&server, &tenant, &admin, Value::Array(batch)).await;
    assert_eq!(status, 202, "{body}");
    let dir = server.stop_keeping_dir().await;
    // The same data directory, now with one delivery at a time: the order is the
    // queue's, not a race's.
    let server = TestServer::start_in(dir, |config| {
        config.events.max_running = 1;
        config.events.max_attempts = 2;
        config.events.backoff_base = Duration::from_millis(50);
    })
    .await;
    let rows = until(Duration::from_secs(30), || async {
        let rows = journal(&server, &tenant, &viewer).await;
        (rows.len() == 16).then_some(rows)
    })
    .await
    .expect("every delivery ran");
    let order: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let first_low = order.iter().position(|id| id.starts_with("low-")).unwrap();
    let last_high = order
        .iter()
        .rposition(|id| id.starts_with("high-"))
        .unwrap();
    assert!(last_high < first_low, "{order:?}");
    // key-1 fails once and is retried; key-2 waits for it.
    let keyed: Vec<(&str, u64)> = rows
        .iter()
        .filter(|(id, _)| id.starts_with("key-"))
        .map(|(id, a)| (id.as_str(), *a))
        .collect();
    assert_eq!(
        keyed,
        vec![
            ("key-0", 1),
            ("key-1", 1),
            ("key-1", 2),
            ("key-2", 1),
            ("key-3", 1),
            ("key-4", 1)
        ]
    );
    server.stop().await;
}

/// A `plinth serve` in a process of its own, to be killed with SIGKILL: this test
/// binary started again to run [`server_process`].
struct Process {
    child: tokio::process::Child,
    server: TestServer,
}

/// What a server process runs on.
fn process_spec(data_dir: &std::path::Path, node: &str, schema: Option<&str>) -> Value {
    json!({"data_dir": data_dir, "node": node, "schema": schema})
}

impl Process {
    async fn start(spec: &Value) -> Process {
        let mut child = tokio::process::Command::new("/proc/self/exe")
            .args([
                "events::server_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PLINTH_TEST_SERVER", spec.to_string())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the test binary starts again");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .expect("the server process starts in time")
                .expect("its output")
                .expect("it prints where it listens");
            // The harness writes `test … ... ` on the same line first.
            if let Some((_, base)) = line.split_once("PLINTH_TEST_SERVER ") {
                break base.trim().to_owned();
            }
        };
        // The rest of its output is not read; keep the pipe drained so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let data_dir = spec["data_dir"].as_str().unwrap();
        let operator = std::fs::read_to_string(format!("{data_dir}/operator-token")).unwrap();
        Process {
            child,
            server: TestServer::remote(base, operator.trim().to_owned()),
        }
    }

    /// SIGKILL: no shutdown, nothing flushed, nothing settled.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Not a test: the server process the crash tests start and kill, configured by
/// `PLINTH_TEST_SERVER` (see [`process_spec`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a server process the crash tests start; not a test of its own"]
async fn server_process() {
    let Ok(spec) = std::env::var("PLINTH_TEST_SERVER") else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: spec["data_dir"].as_str().unwrap().into(),
        demo: false,
        pool_instances: 32,
        node_id: spec["node"].as_str().unwrap().to_owned(),
        ..ServerConfig::default()
    };
    config.events.backoff_base = Duration::from_millis(20);
    // A node that dies leaves its deliveries to the others after this.
    config.events.lease = Duration::from_secs(3);
    if let Some(schema) = spec["schema"].as_str() {
        real_services(&mut config, schema);
        config.events.queue = queue_of(schema);
    }
    let server = plinth_server::start(config).await.expect("server starts");
    plinth_server::operator_token(&server.app).await.unwrap();
    println!("PLINTH_TEST_SERVER {}", server.url());
    std::future::pending::<()>().await;
}

/// Posts batches of events until `stop` resolves; the ids that got a 202.
async fn post_until(
    server: &TestServer,
    tenant: &str,
    token: &str,
    prefix: &str,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> BTreeSet<String> {
    let mut accepted = BTreeSet::new();
    let mut stop = stop;
    // About 200 events a second, at most 2 000 in all: a steady stream the handlers keep
    // up with, not a flood that leaves the check at the end waiting on a backlog.
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    for batch in 0..200 {
        pace.tick().await;
        if stop.try_recv().is_ok() {
            break;
        }
        let events: Vec<Value> = (0..10)
            // Each handler holds its delivery for 20 ms: deliveries are in flight, and
            // some waiting, whenever the kill comes.
            .map(|i| {
                json!({"id": format!("{prefix}-{batch}-{i}"), "name": "test.load",
                            "payload": {"spin_ms": 20}})
            })
            .collect();
        let response = server
            .http
            .post(server.url(&format!("/api/v1/tenants/{tenant}/events")))
            .bearer_auth(token)
            .body(serde_json::to_vec(&events).unwrap())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match response {
            Ok(r) if r.status().as_u16() == 202 => {
                let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                for id in body["accepted"].as_array().unwrap() {
                    accepted.insert(id.as_str().unwrap().to_owned());
                }
            }
            // The server died under the request: nothing was promised.
            _ => break,
        }
    }
    accepted
}

/// Every event that got a 202 is handled, whatever a SIGKILL interrupted; a delivery
/// run again after the crash shows the handler a higher attempt, never a repeat.
async fn nothing_accepted_is_lost_across_a_kill(schema: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = process_spec(dir.path(), "crash-node", schema.as_deref());
    let first = Process::start(&spec).await;
    let server = &first.server;
    let (tenant, _, viewer) = journal_tenant(server).await;
    let publisher = token(server, &tenant, "publisher").await;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let posting = {
        let (server, tenant, publisher) = (
            TestServer::remote(server.url(""), server.operator.clone()),
            tenant.clone(),
            publisher.clone(),
        );
        tokio::spawn(async move { post_until(&server, &tenant, &publisher, "a", stopped).await })
    };
    // Killed mid-load: once handlers have started on what was accepted.
    until(Duration::from_secs(60), || async {
        (journal(server, &tenant, &viewer).await.len() >= 50).then_some(())
    })
    .await
    .expect("handlers run under load");
    first.kill().await;
    let _ = stop.send(());
    let accepted = posting.await.unwrap();
    assert!(accepted.len() >= 50, "{} accepted", accepted.len());

    let second = Process::start(&spec).await;
    let server = &second.server;
    let rows = until(Duration::from_secs(120), || async {
        let rows = attempts(&journal(server, &tenant, &viewer).await);
        accepted
            .iter()
            .all(|id| rows.contains_key(id))
            .then_some(rows)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "some of the {} accepted events were never handled",
            accepted.len()
        )
    });
    let mut redelivered = 0;
    for (id, attempts) in &rows {
        // A repeat shows only as a higher attempt.
        let distinct: BTreeSet<&u64> = attempts.iter().collect();
        assert_eq!(
            distinct.len(),
            attempts.len(),
            "{id} saw the same attempt twice: {attempts:?}"
        );
        // The first attempt may have died before the handler wrote its row: what the
        // handler sees of a redelivery is the attempt, higher than any before.
        assert!(attempts[0] >= 1, "{id}: {attempts:?}");
        redelivered += usize::from(attempts.len() > 1);
        assert!(id.starts_with("a-"), "an event nobody posted: {id}");
    }
    eprintln!(
        "{} accepted, {} handled, {redelivered} handled again after the kill",
        accepted.len(),
        rows.len()
    );
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_a_kill_embedded() {
    nothing_accepted_is_lost_across_a_kill(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_a_kill_redis_postgres() {
    nothing_accepted_is_lost_across_a_kill(Some(unique_schema())).await;
}

/// Two nodes on Redis Streams + PostgreSQL: one dies in the middle of a handler; the
/// other takes over what it held once the lease is over, and handles it (a higher
/// attempt), and the rest of the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_node_takes_over_a_dead_nodes_deliveries() {
    let schema = unique_schema();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Process::start(&process_spec(dir_a.path(), "node-a", Some(&schema))).await;
    let (tenant, _) = unique_tenants();
    let (admin, viewer) = a.server.tenant(&tenant).await;
    install(
        &a.server,
        &tenant,
        &admin,
        JOURNAL,
        "journal",
        "db:write,broadcast,log",
        json!({"timeout": "20s", "fuel": "off"}),
    )
    .await;
    // The first event holds its handler for 10 s: node A is surely inside it when
    // it is killed, the moment the journal shows it started.
    let mut batch =
        vec![json!({"id": "slow", "name": "test.slow", "payload": {"spin_ms": 10_000}})];
    batch.extend((0..20).map(|i| json!({"id": format!("quick-{i}"), "name": "test.quick"})));
    let (status, body) = post(&a.server, &tenant, &admin, Value::Array(batch)).await;
    assert_eq!(status, 202, "{body}");
    until(Duration::from_secs(30), || async {
        let rows = attempts(&journal(&a.server, &tenant, &viewer).await);
        rows.contains_key("slow").then_some(())
    })
    .await
    .expect("node A started the slow handler");
    a.kill().await;

    let b = Process::start(&process_spec(dir_b.path(), "node-b", Some(&schema))).await;
    let rows = until(Duration::from_secs(60), || async {
        let rows = attempts(&journal(&b.server, &tenant, &viewer).await);
        (rows.len() == 21 && rows["slow"].len() == 2).then_some(rows)
    })
    .await;
    let Some(rows) = rows else {
        let rows = attempts(&journal(&b.server, &tenant, &viewer).await);
        let (_, queue) = b
            .server
            .get(&format!("/api/v1/tenants/{tenant}/events/queue"), &viewer)
            .await;
        let (_, stats) = b
            .server
            .get(
                &format!("/api/v1/tenants/{tenant}/installations/journal/deliveries"),
                &viewer,
            )
            .await;
        let metrics = b.server.metrics().await;
        let metrics: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("event") && !l.starts_with('#'))
            .collect();
        panic!(
            "node B did not handle everything, the slow event again: {rows:?} {queue} {stats} {metrics:?}"
        );
    };
    assert_eq!(rows["slow"], vec![1, 2], "taken over with a higher attempt");
    b.kill().await;
}

/// A busy tenant does not starve a calm one: with a backlog of slow deliveries for one
/// tenant, another tenant's event is handled while that backlog is still long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tenant_does_not_starve_a_calm_one() {
    let server = TestServer::start(|config| {
        config.events.max_running = 4;
        config.events.max_running_per_tenant = 2;
    })
    .await;
    let (busy, busy_admin, busy_viewer) = journal_tenant(&server).await;
    let (calm, calm_admin, calm_viewer) = journal_tenant(&server).await;
    // 200 deliveries of 50 ms each, at most 2 at once: at least 5 s of work.
    let flood: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("flood-{i}"), "name": "test.flood", "payload": {"spin_ms": 50}}))
        .collect();
    let (status, body) = post(&server, &busy, &busy_admin, Value::Array(flood)).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(
        &server,
        &calm,
        &calm_admin,
        json!({"id": "calm-1", "name": "test.calm"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    until(Duration::from_secs(30), || async {
        let rows = journal(&server, &calm, &calm_viewer).await;
        (!rows.is_empty()).then_some(())
    })
    .await
    .expect("the calm tenant's event was handled");
    let (_, queue) = server
        .get(
            &format!("/api/v1/tenants/{busy}/events/queue"),
            &busy_viewer,
        )
        .await;
    let waiting = queue["waiting"].as_u64().unwrap();
    assert!(
        waiting > 100,
        "the calm tenant waited for the busy one: {waiting} of 200 left"
    );
    server.stop().await;
}
