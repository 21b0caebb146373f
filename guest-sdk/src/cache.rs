//! The tenant's cache. Keys are scoped to the tenant by the host.
//!
//! ```no_run
//! use plinth_sdk::cache;
//! cache::set_json("report:today", &serde_json::json!({"total": 3}), Some(60_000))?;
//! let hits = cache::incr("report:views", 1)?;
//! # Ok::<(), plinth_sdk::Error>(())
//! ```

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::bindings::plinth::extension::cache as wit;

pub use wit::{KeyStat, Statistics as Stats};

/// The bytes under `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    wit::get(key)
}

/// Stores bytes, expiring after `ttl_ms` when given.
pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), Error> {
    wit::set(key, value, ttl_ms)
}

/// Removes `key`; true when it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    wit::delete(key)
}

/// Adds `delta` to the counter under `key` and returns the new value.
pub fn incr(key: &str, delta: i64) -> Result<i64, Error> {
    wit::incr(key, delta)
}

/// Removes every key starting with `prefix`; returns how many.
pub fn invalidate_prefix(prefix: &str) -> Result<u64, Error> {
    wit::invalidate_prefix(prefix)
}

/// Statistics of the tenant's cache with up to `top` most-read keys.
pub fn stats(top: u32) -> Result<Stats, Error> {
    wit::stats(top)
}

/// The counter under `key`, if any.
pub fn get_i64(key: &str) -> Result<Option<i64>, Error> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Some)
            .ok_or_else(|| Error::InvalidInput(format!("cache key {key:?} is not an integer"))),
    }
}

/// A JSON value stored with [`set_json`].
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    get(key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(Error::from))
        .transpose()
}

/// Stores `value` as JSON.
pub fn set_json<T: Serialize>(key: &str, value: &T, ttl_ms: Option<u64>) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
    set(key, &bytes, ttl_ms)
}
