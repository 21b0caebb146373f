//! The Redis cache backend. Keys live under `plinth:{tenant}:c:` (the braces are a Redis
//! Cluster hash tag: one tenant's keys share a slot). While Redis is unreachable, calls
//! fall back to an in-process cache; the fallback is counted and logged, and Redis is
//! tried again after a short pause.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError};

use super::{CacheBackend, CacheStats, InProcessCache, KeyStat, check_value_size};
use crate::capability::redis_link::{LinkDown, OPERATION_TIMEOUT, RedisLink};
use crate::error::BackendError;

/// Keys examined at most by `stats` (key count and memory are exact below this).
const STATS_SCAN_LIMIT: usize = 10_000;

/// Reads the value, and counts a hit (with the key's hit count) or a miss, in one trip.
const GET_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('HINCRBY', KEYS[2], 'hits', 1)
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[1])
else
  redis.call('HINCRBY', KEYS[2], 'misses', 1)
end
return value
";

pub struct RedisCache {
    link: RedisLink,
    fallback: InProcessCache,
    on_fallback: AtomicBool,
    fallback_calls: AtomicU64,
    get_script: redis::Script,
}

fn key(tenant: &str, key: &str) -> String {
    format!("plinth:{{{tenant}}}:c:{key}")
}

fn stats_key(tenant: &str) -> String {
    format!("plinth:{{{tenant}}}:stats")
}

fn top_key(tenant: &str) -> String {
    format!("plinth:{{{tenant}}}:top")
}

/// Whether an error means Redis cannot be reached (fall back) rather than that the
/// command was refused (tell the guest).
fn unreachable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}

impl RedisCache {
    /// A cache on the Redis at `url` (`redis://127.0.0.1:6379`). Connects lazily, so
    /// Plinth starts even while Redis is down.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        Ok(RedisCache {
            link: RedisLink::open(url)?,
            fallback: InProcessCache::default(),
            on_fallback: AtomicBool::new(false),
            fallback_calls: AtomicU64::new(0),
            get_script: redis::Script::new(GET_SCRIPT),
        })
    }

    /// Calls served by the in-process fallback since start.
    pub fn fallback_calls(&self) -> u64 {
        self.fallback_calls.load(Ordering::Relaxed)
    }

    /// Whether the last attempt found Redis unreachable.
    pub fn on_fallback(&self) -> bool {
        self.on_fallback.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        match self.link.connection().await {
            Ok(connection) => Some(connection),
            Err(LinkDown::Paused) => None,
            Err(LinkDown::Failed(why)) => {
                self.note_down(&why);
                None
            }
        }
    }

    fn went_down(&self, why: &str) {
        self.link.went_down();
        self.note_down(why);
    }

    /// Logs the switch to the fallback once, not on every call.
    fn note_down(&self, why: &str) {
        if !self.on_fallback.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                "redis cache unreachable: serving from the in-process fallback"
            );
        }
    }

    fn came_back(&self) {
        if self.on_fallback.swap(false, Ordering::Relaxed) {
            tracing::info!("redis cache reachable again: serving from redis");
        }
    }

    /// Runs `operation` on Redis; `Ok(None)` means Redis is unreachable and the caller
    /// falls back.
    async fn on_redis<T, F>(
        &self,
        operation: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<Option<T>, BackendError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let Some(connection) = self.connection().await else {
            self.fallback_calls.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, operation(connection)).await {
            Ok(Ok(value)) => {
                self.came_back();
                Ok(Some(value))
            }
            Ok(Err(error)) if !unreachable(&error) => {
                Err(BackendError::InvalidInput(format!("cache: {error}")))
            }
            Ok(Err(error)) => {
                self.went_down(&error.to_string());
                self.fallback_calls.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(_) => {
                self.went_down("operation timed out");
                self.fallback_calls.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    async fn scan(
        connection: &mut ConnectionManager,
        pattern: &str,
        limit: usize,
    ) -> Result<Vec<String>, RedisError> {
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(connection)
                .await?;
            found.extend(keys);
            if next == 0 || found.len() >= limit {
                return Ok(found);
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl CacheBackend for RedisCache {
    fn fallback_calls(&self) -> u64 {
        RedisCache::fallback_calls(self)
    }

    /// Unlike a guest's calls, this does not fall back: keys left in Redis would
    /// outlive the tenant, so an unreachable Redis is an error the caller reports.
    async fn drop_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        self.fallback.drop_tenant(tenant).await?;
        let pattern = format!("{}*", key(tenant, ""));
        let bookkeeping = [stats_key(tenant), top_key(tenant)];
        let dropped = self
            .on_redis(|mut c| async move {
                let keys = Self::scan(&mut c, &pattern, usize::MAX).await?;
                for batch in keys.chunks(500).chain([&bookkeeping[..]]) {
                    redis::cmd("UNLINK")
                        .arg(batch)
                        .query_async::<u64>(&mut c)
                        .await?;
                }
                Ok(())
            })
            .await?;
        dropped.ok_or_else(|| {
            BackendError::Unavailable(format!(
                "cache: redis unreachable; the keys of tenant {tenant} are still there"
            ))
        })
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let keys = [key(tenant, name), stats_key(tenant), top_key(tenant)];
        let found = self
            .on_redis(|mut c| async move {
                self.get_script
                    .key(&keys[0])
                    .key(&keys[1])
                    .key(&keys[2])
                    .arg(name)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match found {
            Some(value) => Ok(value),
            None => self.fallback.get(tenant, name).await,
        }
    }

    async fn set(
        &self,
        tenant: &str,
        name: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        check_value_size(&value)?;
        let full = key(tenant, name);
        let stored = self
            .on_redis(|mut c| {
                let value = value.clone();
                async move {
                    match ttl {
                        Some(ttl) => {
                            c.pset_ex::<_, _, ()>(&full, value, ttl.as_millis().max(1) as u64)
                                .await
                        }
                        None => c.set::<_, _, ()>(&full, value).await,
                    }
                }
            })
            .await?;
        match stored {
            Some(()) => Ok(()),
            None => self.fallback.set(tenant, name, value, ttl).await,
        }
    }

    async fn delete(&self, tenant: &str, name: &str) -> Result<bool, BackendError> {
        let (full, top) = (key(tenant, name), top_key(tenant));
        let removed = self
            .on_redis(|mut c| async move {
                let (removed, _): (u64, u64) = redis::pipe()
                    .del(&full)
                    .zrem(&top, name)
                    .query_async(&mut c)
                    .await?;
                Ok(removed > 0)
            })
            .await?;
        match removed {
            Some(removed) => Ok(removed),
            None => self.fallback.delete(tenant, name).await,
        }
    }

    async fn incr(&self, tenant: &str, name: &str, delta: i64) -> Result<i64, BackendError> {
        let full = key(tenant, name);
        let value = self
            .on_redis(|mut c| async move { c.incr::<_, _, i64>(&full, delta).await })
            .await?;
        match value {
            Some(value) => Ok(value),
            None => self.fallback.incr(tenant, name, delta).await,
        }
    }

    async fn invalidate_prefix(&self, tenant: &str, prefix: &str) -> Result<u64, BackendError> {
        // Prefixes are checked to [A-Za-z0-9._:-], so they hold no SCAN glob characters.
        let pattern = format!("{}*", key(tenant, prefix));
        let top = top_key(tenant);
        let cut = key(tenant, "").len();
        let removed = self
            .on_redis(|mut c| async move {
                let keys = Self::scan(&mut c, &pattern, usize::MAX).await?;
                let mut removed = 0;
                for batch in keys.chunks(500) {
                    let names: Vec<&str> = batch.iter().map(|k| &k[cut..]).collect();
                    let (count, _): (u64, u64) = redis::pipe()
                        .unlink(batch)
                        .zrem(&top, names)
                        .query_async(&mut c)
                        .await?;
                    removed += count;
                }
                Ok(removed)
            })
            .await?;
        match removed {
            Some(removed) => Ok(removed),
            None => self.fallback.invalidate_prefix(tenant, prefix).await,
        }
    }

    async fn stats(&self, tenant: &str, top: usize) -> Result<CacheStats, BackendError> {
        let (stats, top_set, pattern) = (
            stats_key(tenant),
            top_key(tenant),
            format!("{}*", key(tenant, "")),
        );
        let cut = key(tenant, "").len();
        let found = self
            .on_redis(|mut c| async move {
                let (hits, misses): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
                    .arg(&stats)
                    .arg("hits")
                    .arg("misses")
                    .query_async(&mut c)
                    .await?;
                let keys = Self::scan(&mut c, &pattern, STATS_SCAN_LIMIT).await?;
                let mut memory_bytes = 0;
                for batch in keys.chunks(500) {
                    let mut pipe = redis::pipe();
                    for k in batch {
                        pipe.cmd("MEMORY").arg("USAGE").arg(k);
                    }
                    let sizes: Vec<Option<u64>> = pipe.query_async(&mut c).await?;
                    memory_bytes += sizes.into_iter().flatten().sum::<u64>();
                }
                // Keys that expired or were deleted may still be ranked; skip them.
                let ranked: Vec<(String, f64)> = c
                    .zrevrange_withscores(&top_set, 0, (top + 32) as isize - 1)
                    .await?;
                let mut pipe = redis::pipe();
                for (name, _) in &ranked {
                    let full = format!("{}{name}", &pattern[..cut]);
                    pipe.exists(&full).strlen(full);
                }
                let sizes: Vec<(bool, u64)> = if ranked.is_empty() {
                    Vec::new()
                } else {
                    let flat: Vec<u64> = pipe.query_async(&mut c).await?;
                    flat.chunks(2).map(|pair| (pair[0] == 1, pair[1])).collect()
                };
                let top_keys: Vec<KeyStat> = ranked
                    .into_iter()
                    .zip(sizes)
                    .filter(|(_, (exists, _))| *exists)
                    .take(top)
                    .map(|((name, hits), (_, size))| KeyStat {
                        key: name,
                        size_bytes: size,
                        hits: hits as u64,
                    })
                    .collect();
                Ok(CacheStats {
                    hits: hits.unwrap_or(0),
                    misses: misses.unwrap_or(0),
                    keys: keys.len() as u64,
                    memory_bytes,
                    top_keys,
                })
            })
            .await?;
        match found {
            Some(stats) => Ok(stats),
            None => self.fallback.stats(tenant, top).await,
        }
    }
}
