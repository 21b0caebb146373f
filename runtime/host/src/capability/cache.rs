//! The cache capability: backend trait, the in-process backend, the Redis backend
//! ([`redis`]), and the host side of `plinth:extension/cache`.

pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::capability::view::CapView;
use crate::contract::WitError;
use crate::contract::cache as wit;
use crate::error::BackendError;
use crate::grant::Capability;
use crate::scope::check_name;
use wasmtime::component::{HasData, Linker};

/// A store's data as the `cache` capability sees it; the linker's getter.
pub trait CacheView: Send {
    fn cache(&mut self) -> CapView<'_, dyn CacheBackend>;
}

/// Marks the data the `cache` host functions get ([`HasData`]).
struct CacheData;

impl HasData for CacheData {
    type Data<'a> = CapView<'a, dyn CacheBackend>;
}

/// Links `plinth:extension/cache` into `linker`, its host functions given the view
/// [`CacheView`] takes of the store's data.
pub fn add_to_linker<T: CacheView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, CacheData>(linker, T::cache)
}

/// Longest key a guest may use, in bytes.
pub const MAX_KEY_BYTES: usize = 200;

/// Statistics of one tenant's cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub keys: u64,
    pub memory_bytes: u64,
    pub top_keys: Vec<KeyStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyStat {
    pub key: String,
    pub size_bytes: u64,
    pub hits: u64,
}

/// A cache backend. Keys arrive validated and relative to the tenant; the backend keeps
/// tenants apart (the in-process backend keys its map by tenant).
#[async_trait]
pub trait CacheBackend: Send + Sync {
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    async fn set(
        &self,
        tenant: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError>;
    async fn delete(&self, tenant: &str, key: &str) -> Result<bool, BackendError>;
    async fn incr(&self, tenant: &str, key: &str, delta: i64) -> Result<i64, BackendError>;
    async fn invalidate_prefix(&self, tenant: &str, prefix: &str) -> Result<u64, BackendError>;
    async fn stats(&self, tenant: &str, top: usize) -> Result<CacheStats, BackendError>;

    /// Calls answered by a fallback while the real backend was unreachable (a metric).
    fn fallback_calls(&self) -> u64 {
        0
    }

    /// Removes every key of `tenant`: the tenant is being deleted.
    async fn drop_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        self.invalidate_prefix(tenant, "").await.map(|_| ())
    }
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
    hits: u64,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// Largest value the in-process cache keeps.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Refuses a value over [`MAX_VALUE_BYTES`]; every backend applies it.
pub(crate) fn check_value_size(value: &[u8]) -> Result<(), BackendError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(BackendError::QuotaExceeded(format!(
            "a value of {} bytes is over the cap of {MAX_VALUE_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Bytes (keys and values) one tenant may keep in the in-process cache.
pub const MAX_TENANT_BYTES: usize = 64 << 20;
/// Keys one tenant may keep in the in-process cache.
pub const MAX_TENANT_KEYS: usize = 100_000;

#[derive(Default)]
struct TenantCache {
    entries: HashMap<String, Entry>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl TenantCache {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= key.len() + entry.value.len();
        Some(entry)
    }

    fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    /// Stores an entry within the tenant's quotas, purging expired entries first when
    /// the tenant is at its limit.
    fn insert(&mut self, key: &str, entry: Entry, now: Instant) -> Result<(), BackendError> {
        let previous = self
            .entries
            .get(key)
            .map_or(0, |e| key.len() + e.value.len());
        let needed = key.len() + entry.value.len();
        let over = |cache: &TenantCache| {
            cache.bytes - previous + needed > MAX_TENANT_BYTES
                || (previous == 0 && cache.entries.len() >= MAX_TENANT_KEYS)
        };
        if over(self) {
            self.purge_expired(now);
        }
        let previous = self
            .entries
            .get(key)
            .map_or(0, |e| key.len() + e.value.len());
        if self.bytes - previous + needed > MAX_TENANT_BYTES
            || (previous == 0 && self.entries.len() >= MAX_TENANT_KEYS)
        {
            return Err(BackendError::QuotaExceeded(format!(
                "the tenant's cache is full ({MAX_TENANT_BYTES} bytes or {MAX_TENANT_KEYS} keys)"
            )));
        }
        self.remove(key);
        self.bytes += needed;
        self.entries.insert(key.to_owned(), entry);
        Ok(())
    }
}

/// The embedded cache: one map per tenant in this process, each behind its own lock,
/// TTLs checked on access, bounded per value and per tenant.
#[derive(Default)]
pub struct InProcessCache {
    tenants: Mutex<HashMap<String, Arc<Mutex<TenantCache>>>>,
}

impl InProcessCache {
    fn with_tenant<R>(&self, tenant: &str, f: impl FnOnce(&mut TenantCache, Instant) -> R) -> R {
        let cache = {
            let mut tenants = self
                .tenants
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            tenants.entry(tenant.to_owned()).or_default().clone()
        };
        let mut cache = cache.lock().unwrap_or_else(|poison| poison.into_inner());
        f(&mut cache, Instant::now())
    }
}

#[async_trait]
impl CacheBackend for InProcessCache {
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.with_tenant(tenant, |cache, now| {
            match cache.entries.get_mut(key).filter(|e| e.live(now)) {
                Some(entry) => {
                    entry.hits += 1;
                    cache.hits += 1;
                    Some(entry.value.clone())
                }
                None => {
                    cache.remove(key);
                    cache.misses += 1;
                    None
                }
            }
        }))
    }

    async fn set(
        &self,
        tenant: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        check_value_size(&value)?;
        self.with_tenant(tenant, |cache, now| {
            let hits = cache
                .entries
                .get(key)
                .filter(|e| e.live(now))
                .map_or(0, |e| e.hits);
            let entry = Entry {
                value,
                expires: ttl.map(|ttl| now + ttl),
                hits,
            };
            cache.insert(key, entry, now)
        })
    }

    async fn delete(&self, tenant: &str, key: &str) -> Result<bool, BackendError> {
        Ok(self.with_tenant(tenant, |cache, now| {
            cache.remove(key).is_some_and(|e| e.live(now))
        }))
    }

    async fn incr(&self, tenant: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        self.with_tenant(tenant, |cache, now| {
            let (current, expires, hits) = match cache.entries.get(key).filter(|e| e.live(now)) {
                Some(entry) => (
                    std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| {
                            BackendError::InvalidInput(format!("{key:?} is not an integer"))
                        })?,
                    entry.expires,
                    entry.hits,
                ),
                None => (0, None, 0),
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| BackendError::InvalidInput(format!("{key:?} would overflow")))?;
            let entry = Entry {
                value: next.to_string().into_bytes(),
                expires,
                hits,
            };
            cache.insert(key, entry, now)?;
            Ok(next)
        })
    }

    async fn drop_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        // The whole map goes, counters and byte accounting with it.
        self.tenants
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(tenant);
        Ok(())
    }

    async fn invalidate_prefix(&self, tenant: &str, prefix: &str) -> Result<u64, BackendError> {
        Ok(self.with_tenant(tenant, |cache, _| {
            let doomed: Vec<String> = cache
                .entries
                .keys()
                .filter(|key| key.starts_with(prefix))
                .cloned()
                .collect();
            for key in &doomed {
                cache.remove(key);
            }
            doomed.len() as u64
        }))
    }

    async fn stats(&self, tenant: &str, top: usize) -> Result<CacheStats, BackendError> {
        Ok(self.with_tenant(tenant, |cache, now| {
            cache.purge_expired(now);
            let mut top_keys: Vec<KeyStat> = cache
                .entries
                .iter()
                .map(|(key, e)| KeyStat {
                    key: key.clone(),
                    size_bytes: e.value.len() as u64,
                    hits: e.hits,
                })
                .collect();
            top_keys.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.key.cmp(&b.key)));
            top_keys.truncate(top);
            CacheStats {
                hits: cache.hits,
                misses: cache.misses,
                keys: cache.entries.len() as u64,
                memory_bytes: cache.bytes as u64,
                top_keys,
            }
        }))
    }
}

fn check_key(name: &str) -> Result<(), BackendError> {
    check_name("cache key", name, MAX_KEY_BYTES, false)
}

impl wit::Host for CapView<'_, dyn CacheBackend> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, WitError>> {
        self.enter(Capability::Cache)?;
        let result = match check_key(&key) {
            Ok(()) => self.backend.get(&self.scope.tenant, &key).await,
            Err(e) => Err(e),
        };
        Ok(self.answer(result))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        self.enter(Capability::Cache)?;
        let result = match check_key(&key) {
            Ok(()) => {
                let ttl = ttl_ms.map(Duration::from_millis);
                self.backend.set(&self.scope.tenant, &key, value, ttl).await
            }
            Err(e) => Err(e),
        };
        Ok(self.answer(result))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, WitError>> {
        self.enter(Capability::Cache)?;
        let result = match check_key(&key) {
            Ok(()) => self.backend.delete(&self.scope.tenant, &key).await,
            Err(e) => Err(e),
        };
        Ok(self.answer(result))
    }

    async fn incr(&mut self, key: String, delta: i64) -> wasmtime::Result<Result<i64, WitError>> {
        self.enter(Capability::Cache)?;
        let result = match check_key(&key) {
            Ok(()) => self.backend.incr(&self.scope.tenant, &key, delta).await,
            Err(e) => Err(e),
        };
        Ok(self.answer(result))
    }

    async fn invalidate_prefix(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<u64, WitError>> {
        self.enter(Capability::Cache)?;
        // An empty prefix is allowed: it clears the tenant's whole cache, nothing more.
        let result = match check_name("cache prefix", &prefix, MAX_KEY_BYTES, true) {
            Ok(()) => {
                self.backend
                    .invalidate_prefix(&self.scope.tenant, &prefix)
                    .await
            }
            Err(e) => Err(e),
        };
        Ok(self.answer(result))
    }

    async fn stats(&mut self, top: u32) -> wasmtime::Result<Result<wit::Statistics, WitError>> {
        self.enter(Capability::Cache)?;
        let top = top.min(100) as usize;
        let result = self
            .backend
            .stats(&self.scope.tenant, top)
            .await
            .map(|s| wit::Statistics {
                hits: s.hits,
                misses: s.misses,
                keys: s.keys,
                memory_bytes: s.memory_bytes,
                top_keys: s
                    .top_keys
                    .into_iter()
                    .map(|k| wit::KeyStat {
                        key: k.key,
                        size_bytes: k.size_bytes,
                        hits: k.hits,
                    })
                    .collect(),
            });
        Ok(self.answer(result))
    }
}
