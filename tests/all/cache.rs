//! The cache capability: one test body run against every backend over real connections,
//! and Redis stopped and started again under a running cache.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_host::capability::cache::redis::RedisCache;
use plinth_host::capability::cache::{CacheBackend, InProcessCache};
use plinth_host::{BackendError, Backends, Call, Grants, Limits, Sandbox, SandboxConfig};
use plinth_tests::{guest, invocation, unique_tenants};
use serde_json::json;

/// The Redis every machine of this project runs (see .ci/run).
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// What every cache backend must do.
async fn keeps_the_contract(cache: &dyn CacheBackend) {
    let (a, b) = unique_tenants();
    assert_eq!(cache.get(&a, "missing").await.unwrap(), None);
    cache
        .set(&a, "orders:today", b"12".to_vec(), None)
        .await
        .unwrap();
    cache
        .set(&a, "orders:week", b"80".to_vec(), None)
        .await
        .unwrap();
    cache
        .set(&a, "users:count", b"3".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&a, "orders:today").await.unwrap().as_deref(),
        Some(&b"12"[..])
    );
    assert_eq!(
        cache.get(&a, "orders:today").await.unwrap().as_deref(),
        Some(&b"12"[..])
    );
    assert_eq!(
        cache.get(&a, "users:count").await.unwrap().as_deref(),
        Some(&b"3"[..])
    );

    // Another tenant sees none of it, whatever it asks.
    assert_eq!(cache.get(&b, "orders:today").await.unwrap(), None);
    assert_eq!(cache.invalidate_prefix(&b, "").await.unwrap(), 0);
    assert_eq!(cache.stats(&b, 5).await.unwrap().keys, 0);

    // TTLs expire.
    cache
        .set(&a, "flash", b"x".to_vec(), Some(Duration::from_millis(60)))
        .await
        .unwrap();
    assert!(cache.get(&a, "flash").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get(&a, "flash").await.unwrap(), None);

    // Counters.
    assert_eq!(cache.incr(&a, "visits", 5).await.unwrap(), 5);
    assert_eq!(cache.incr(&a, "visits", -2).await.unwrap(), 3);
    cache
        .set(&a, "word", b"hello".to_vec(), None)
        .await
        .unwrap();
    assert!(matches!(
        cache.incr(&a, "word", 1).await,
        Err(BackendError::InvalidInput(_))
    ));

    // Statistics: 4 hits (orders:today twice, users:count, flash) and 2 misses (missing,
    // flash after expiry); b's read counts for b.
    let stats = cache.stats(&a, 2).await.unwrap();
    assert_eq!((stats.hits, stats.misses), (4, 2), "{stats:?}");
    assert_eq!(
        stats.keys, 5,
        "orders:today, orders:week, users:count, visits, word: {stats:?}"
    );
    assert!(stats.memory_bytes > 0);
    assert_eq!(stats.top_keys[0].key, "orders:today");
    assert_eq!(
        (stats.top_keys[0].hits, stats.top_keys[0].size_bytes),
        (2, 2)
    );
    assert_eq!(stats.top_keys.len(), 2);

    // Deleting and invalidating by prefix.
    assert!(cache.delete(&a, "word").await.unwrap());
    assert!(!cache.delete(&a, "word").await.unwrap());
    assert_eq!(cache.invalidate_prefix(&a, "orders:").await.unwrap(), 2);
    assert_eq!(cache.get(&a, "orders:week").await.unwrap(), None);
    assert!(cache.get(&a, "users:count").await.unwrap().is_some());
    let stats = cache.stats(&a, 10).await.unwrap();
    assert_eq!(stats.keys, 2);
    assert!(
        stats.top_keys.iter().all(|k| !k.key.starts_with("orders:")),
        "{stats:?}"
    );
    cache.invalidate_prefix(&a, "").await.unwrap();
}

#[tokio::test]
async fn in_process_cache_keeps_the_contract() {
    keeps_the_contract(&InProcessCache::default()).await;
}

#[tokio::test]
async fn the_in_process_cache_is_bounded_per_value_and_per_tenant() {
    use plinth_host::capability::cache::{MAX_TENANT_BYTES, MAX_VALUE_BYTES};
    let cache = InProcessCache::default();
    let (a, b) = unique_tenants();
    let too_big = vec![0u8; MAX_VALUE_BYTES + 1];
    assert!(matches!(
        cache.set(&a, "big", too_big, None).await,
        Err(BackendError::QuotaExceeded(_))
    ));
    let value = vec![7u8; MAX_VALUE_BYTES];
    let mut stored = 0;
    let full = loop {
        match cache
            .set(&a, &format!("k{stored}"), value.clone(), None)
            .await
        {
            Ok(()) => stored += 1,
            Err(error) => break error,
        }
        assert!(
            stored <= MAX_TENANT_BYTES / MAX_VALUE_BYTES,
            "the tenant quota never applied"
        );
    };
    assert!(matches!(full, BackendError::QuotaExceeded(_)), "{full:?}");
    assert!(cache.stats(&a, 0).await.unwrap().memory_bytes <= MAX_TENANT_BYTES as u64);
    // Another tenant is unaffected, and expired entries make room again.
    cache.set(&b, "k", value.clone(), None).await.unwrap();
    cache.invalidate_prefix(&a, "").await.unwrap();
    for i in 0..stored {
        cache
            .set(
                &a,
                &format!("t{i}"),
                value.clone(),
                Some(Duration::from_millis(20)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    cache.set(&a, "after-expiry", value, None).await.unwrap();
}

#[tokio::test]
async fn redis_cache_keeps_the_contract() {
    let cache = RedisCache::new(REDIS_URL).unwrap();
    keeps_the_contract(&cache).await;
    // Served by Redis, not by the fallback: a missing Redis fails here, loudly.
    assert_eq!(
        cache.fallback_calls(),
        0,
        "Redis at {REDIS_URL} must be running for this test"
    );
}

#[tokio::test]
async fn cache_stats_shows_real_numbers_from_redis() {
    let (tenant, _) = unique_tenants();
    let cache = Arc::new(RedisCache::new(REDIS_URL).unwrap());
    cache
        .set(&tenant, "report:today", b"{}".to_vec(), None)
        .await
        .unwrap();
    for _ in 0..3 {
        cache.get(&tenant, "report:today").await.unwrap();
    }
    cache.get(&tenant, "report:yesterday").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut backends = Backends::embedded(dir.path()).unwrap();
    backends.cache = cache.clone();
    let sandbox = Sandbox::new(
        SandboxConfig {
            pool_instances: 4,
            ..SandboxConfig::default()
        },
        backends,
    )
    .unwrap();
    let widget = sandbox.load(&guest("extensions/cache-stats")).unwrap();
    let grants: Grants = "cache,broadcast,log".parse().unwrap();
    let call = Call::Render {
        config: json!({}),
        params: vec![],
    };
    let views = sandbox
        .call(
            &widget,
            &invocation(&tenant, grants, Limits::default()),
            call,
        )
        .await
        .outcome_json()
        .unwrap();
    assert_eq!(views["views"][0]["caption"], "3 hits, 1 misses");
    assert_eq!(views["views"][1]["value"], 1.0);
    let table = views["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "table")
        .unwrap()
        .clone();
    assert_eq!(table["rows"][0], json!(["report:today", 2, 3]));
    assert_eq!(cache.fallback_calls(), 0);
    cache.invalidate_prefix(&tenant, "").await.unwrap();
}

/// A Redis server of this test's own, on its own port, so stopping it touches nothing else.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis {
            port,
            child: Some(child),
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_stopped_mid_run_falls_back_and_recovers() {
    let port = 16_391;
    let mut redis = OwnRedis::start(port);
    let cache = RedisCache::new(&format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    let (tenant, _) = unique_tenants();
    cache
        .set(&tenant, "before", b"1".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(cache.fallback_calls(), 0);

    redis.stop();
    for i in 0..20 {
        // Every call keeps answering, from the fallback.
        cache
            .set(&tenant, "during", i.to_string().into_bytes(), None)
            .await
            .unwrap();
        assert_eq!(
            cache.get(&tenant, "during").await.unwrap(),
            Some(i.to_string().into_bytes())
        );
    }
    assert!(cache.on_fallback());
    let during_outage = cache.fallback_calls();
    assert!(during_outage >= 40, "{during_outage}");

    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        cache
            .set(&tenant, "after", b"2".to_vec(), None)
            .await
            .unwrap();
        if !cache.on_fallback() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis was not used again after it came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redis serves again: what is set now is in Redis, and no call falls back.
    let settled = cache.fallback_calls();
    assert_eq!(
        cache.get(&tenant, "after").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        cache.stats(&tenant, 5).await.unwrap().keys,
        1,
        "the restarted Redis holds only `after`"
    );
    assert_eq!(cache.fallback_calls(), settled);
}
