//! The broadcast capability: one test body against every backend, and fan-out between
//! two nodes through Redis.

use std::time::Duration;

use plinth_host::capability::broadcast::redis::RedisHub;
use plinth_host::capability::broadcast::{BroadcastBackend, InProcessHub};
use plinth_tests::unique_tenants;
use serde_json::json;
use tokio::time::timeout;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Waits until a Redis hub's pattern subscription is live.
async fn listening(hub: &RedisHub) {
    for _ in 0..200 {
        if hub.listening() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the hub never subscribed to Redis");
}

/// Waits until a subscription delivers.
async fn settle(hub: &dyn BroadcastBackend, tenant: &str) {
    let mut probe = hub.subscribe(tenant, "probe");
    for _ in 0..100 {
        hub.publish(tenant, "probe", json!("ping")).await.unwrap();
        if timeout(Duration::from_millis(50), probe.recv())
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("the hub never delivered a probe");
}

async fn keeps_the_contract(hub: &dyn BroadcastBackend) {
    let (a, b) = unique_tenants();
    let mut sales = hub.subscribe(&a, "sales");
    let mut other_topic = hub.subscribe(&a, "alerts");
    let mut other_tenant = hub.subscribe(&b, "sales");
    settle(hub, &a).await;

    hub.publish(&a, "sales", json!({"orders": 3}))
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(2), sales.recv())
        .await
        .expect("delivered")
        .unwrap();
    assert_eq!(
        (message.tenant.as_str(), message.topic.as_str()),
        (a.as_str(), "sales")
    );
    assert_eq!(*message.payload, json!({"orders": 3}));
    // Exactly once, to that topic of that tenant only.
    assert!(
        timeout(Duration::from_millis(200), sales.recv())
            .await
            .is_err(),
        "delivered twice"
    );
    assert!(other_topic.try_recv().is_err());
    assert!(other_tenant.try_recv().is_err());
}

#[tokio::test]
async fn in_process_hub_keeps_the_contract() {
    keeps_the_contract(&InProcessHub::default()).await;
}

#[tokio::test]
async fn redis_hub_keeps_the_contract() {
    let hub = RedisHub::new(REDIS_URL).unwrap();
    hub.subscribe("warm-up", "x");
    listening(&hub).await;
    keeps_the_contract(&hub).await;
    assert_eq!(
        hub.local_only_deliveries(),
        0,
        "Redis at {REDIS_URL} must be running for this test"
    );
}

#[tokio::test]
async fn redis_fans_out_between_nodes() {
    let (tenant, other) = unique_tenants();
    let (node_one, node_two) = (
        RedisHub::new(REDIS_URL).unwrap(),
        RedisHub::new(REDIS_URL).unwrap(),
    );
    let mut on_two = node_two.subscribe(&tenant, "orders");
    let mut other_on_two = node_two.subscribe(&other, "orders");
    settle(&node_two, &tenant).await;
    node_one
        .publish(&tenant, "warm-up", json!(null))
        .await
        .unwrap();

    node_one
        .publish(&tenant, "orders", json!({"id": 7}))
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(2), on_two.recv())
        .await
        .expect("reached node two")
        .unwrap();
    assert_eq!(*message.payload, json!({"id": 7}));
    assert!(
        other_on_two.try_recv().is_err(),
        "another tenant's subscriber on node two hears nothing"
    );
    assert_eq!(
        node_one.local_only_deliveries() + node_two.local_only_deliveries(),
        0
    );
}

#[tokio::test]
async fn without_redis_messages_still_reach_this_node() {
    // Nothing listens on this port: every publish is local-only, and says so.
    let hub = RedisHub::new("redis://127.0.0.1:1").unwrap();
    let (tenant, _) = unique_tenants();
    let mut sales = hub.subscribe(&tenant, "sales");
    hub.publish(&tenant, "sales", json!(1)).await.unwrap();
    let message = timeout(Duration::from_secs(2), sales.recv())
        .await
        .expect("delivered locally")
        .unwrap();
    assert_eq!(*message.payload, json!(1));
    assert_eq!(hub.local_only_deliveries(), 1);
}
