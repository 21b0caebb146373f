//! The backends of every capability, chosen by configuration and shared by all calls.

use std::sync::Arc;

use serde::Deserialize;

use crate::capability::{broadcast, cache, db, log};
use crate::error::{ErrorCode, PlinthError};

/// The backends of every capability, chosen by configuration and shared by all calls.
#[derive(Clone)]
pub struct Backends {
    pub cache: Arc<dyn cache::CacheBackend>,
    pub db: Arc<dyn db::DbBackend>,
    pub broadcast: Arc<dyn broadcast::BroadcastBackend>,
    pub log: Arc<log::LogRing>,
}

/// Which backend each capability uses, as a config file names them
/// (`[cache] type = "redis"`, `url = "redis://127.0.0.1:6379"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsConfig {
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub broadcast: BroadcastConfig,
    #[serde(default)]
    pub db: DbConfig,
}

/// The tenants' database backend.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DbConfig {
    /// One SQLite file per tenant under the data directory.
    #[default]
    Sqlite,
    /// PostgreSQL: one schema and one role per tenant, provisioned by the URL's user.
    Postgres { url: String },
}

/// The broadcast backend.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BroadcastConfig {
    /// Subscribers of this process only.
    #[default]
    InProcess,
    /// Redis pub/sub: subscribers of every node that uses the same Redis.
    Redis { url: String },
}

/// The cache backend.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CacheConfig {
    /// In this process; lost on restart, not shared between nodes.
    #[default]
    InProcess,
    /// Redis, with the in-process cache as fallback while Redis is unreachable.
    Redis { url: String },
}

impl Backends {
    /// The embedded backends: in-process cache and broadcast, SQLite files under
    /// `data_dir/db`, an in-memory log ring.
    pub fn embedded(data_dir: &std::path::Path) -> Result<Self, PlinthError> {
        Backends::from_config(&BackendsConfig::default(), data_dir)
    }

    /// The backends a configuration names; files of embedded backends go under `data_dir`.
    pub fn from_config(
        config: &BackendsConfig,
        data_dir: &std::path::Path,
    ) -> Result<Self, PlinthError> {
        let cache: Arc<dyn cache::CacheBackend> = match &config.cache {
            CacheConfig::InProcess => Arc::new(cache::InProcessCache::default()),
            CacheConfig::Redis { url } => Arc::new(
                cache::redis::RedisCache::new(url)
                    .map_err(|e| PlinthError::new(ErrorCode::InvalidRequest, e.to_string()))?,
            ),
        };
        let broadcast: Arc<dyn broadcast::BroadcastBackend> = match &config.broadcast {
            BroadcastConfig::InProcess => Arc::new(broadcast::InProcessHub::default()),
            BroadcastConfig::Redis { url } => Arc::new(
                broadcast::redis::RedisHub::new(url)
                    .map_err(|e| PlinthError::new(ErrorCode::InvalidRequest, e.to_string()))?,
            ),
        };
        Ok(Backends {
            cache,
            broadcast,
            db: match &config.db {
                DbConfig::Sqlite => Arc::new(db::SqliteDb::open(&data_dir.join("db"))?),
                DbConfig::Postgres { url } => Arc::new(
                    db::postgres::PostgresDb::new(url)
                        .map_err(|e| PlinthError::new(ErrorCode::InvalidRequest, e.to_string()))?,
                ),
            },
            log: Arc::new(log::LogRing::default()),
        })
    }
}
