//! Capabilities: what a guest may ask of the host. Each capability is one unit: a small
//! async backend trait, an embedded backend, and the host side of its WIT interface,
//! implemented on a per-capability view of the call's state.

pub mod broadcast;
pub mod cache;
pub mod db;
pub mod log;
mod redis_link;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, PlinthError};

/// A capability as named in grants, receipts and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Cache,
    Db,
    Broadcast,
    Log,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Cache,
        Capability::Db,
        Capability::Broadcast,
        Capability::Log,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Cache => "cache",
            Capability::Db => "db",
            Capability::Broadcast => "broadcast",
            Capability::Log => "log",
        }
    }

    /// The capability behind a WIT interface of the contract, e.g. `plinth:extension/cache@0.1.0`.
    pub fn of_interface(interface: &str) -> Option<Capability> {
        let rest = interface.strip_prefix("plinth:extension/")?;
        let name = rest.split('@').next()?;
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One grant: a capability, and for the database whether it may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grant {
    #[serde(rename = "cache")]
    Cache,
    #[serde(rename = "db")]
    DbRead,
    #[serde(rename = "db:write")]
    DbWrite,
    #[serde(rename = "broadcast")]
    Broadcast,
    #[serde(rename = "log")]
    Log,
}

/// What an installation may use. Deny by default: an empty set grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants(BTreeSet<Grant>);

impl Grants {
    /// Every capability, the database read-write: what `plinth run` grants by default.
    pub fn all() -> Self {
        Grants(
            [Grant::Cache, Grant::DbWrite, Grant::Broadcast, Grant::Log]
                .into_iter()
                .collect(),
        )
    }

    pub fn none() -> Self {
        Grants::default()
    }

    /// Whether the capability may be imported at all.
    pub fn allows(&self, capability: Capability) -> bool {
        match capability {
            Capability::Cache => self.0.contains(&Grant::Cache),
            Capability::Db => self.0.contains(&Grant::DbRead) || self.0.contains(&Grant::DbWrite),
            Capability::Broadcast => self.0.contains(&Grant::Broadcast),
            Capability::Log => self.0.contains(&Grant::Log),
        }
    }

    /// Whether database writes are granted.
    pub fn allows_db_write(&self) -> bool {
        self.0.contains(&Grant::DbWrite)
    }
}

impl FromStr for Grants {
    type Err = PlinthError;

    /// Parses `cache,db:write,broadcast,log` (or `none`).
    ///
    /// ```
    /// # use plinth_host::{Capability, Grants};
    /// let grants: Grants = "cache,db".parse().unwrap();
    /// assert!(grants.allows(Capability::Db) && !grants.allows_db_write());
    /// assert!(!grants.allows(Capability::Broadcast));
    /// assert!("cache,files".parse::<Grants>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut grants = BTreeSet::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let grant = match item {
                "none" => continue,
                "cache" => Grant::Cache,
                "db" | "db:read" => Grant::DbRead,
                "db:write" => Grant::DbWrite,
                "broadcast" => Grant::Broadcast,
                "log" => Grant::Log,
                other => {
                    return Err(PlinthError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "unknown grant {other:?} (cache, db, db:write, broadcast, log, none)"
                        ),
                    ));
                }
            };
            grants.insert(grant);
        }
        Ok(Grants(grants))
    }
}

/// Who a call runs for. The host prefixes every key, topic and log line with it; a
/// guest never names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub tenant: String,
    pub installation: String,
}

impl Scope {
    /// A scope after checking both names are plain identifiers (`[a-z0-9-]`, 1..=63).
    pub fn new(tenant: &str, installation: &str) -> Result<Self, PlinthError> {
        check_identifier("tenant", tenant)?;
        check_identifier("installation", installation)?;
        Ok(Scope {
            tenant: tenant.into(),
            installation: installation.into(),
        })
    }
}

/// Checks that a tenant or installation name is a plain identifier (`[a-z0-9-]`,
/// 1..=63): backends build keys, file paths and SQL identifiers from it.
pub fn check_identifier(what: &str, name: &str) -> Result<(), PlinthError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PlinthError::new(
            ErrorCode::InvalidRequest,
            format!("{what} name {name:?} must be 1-63 characters of [a-z0-9-]"),
        ))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {} installation {}",
            self.tenant, self.installation
        )
    }
}

/// A failure a backend reports; the guest sees it as the contract's `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The tenant's database is locked by other work (`DB_BUSY`); the guest sees
    /// `unavailable`.
    #[error("database busy: {0}")]
    Busy(String),
    #[error("timeout: {0}")]
    Timeout(String),
}

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

/// Checks a guest-chosen name (cache key, prefix, topic): printable ASCII from a small
/// set, so it cannot escape the tenant's namespace (no `*`, `?`, `[`, `{`, `/`, NUL).
pub(crate) fn check_name(
    what: &str,
    name: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), BackendError> {
    if name.is_empty() && !allow_empty {
        return Err(BackendError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    if name.len() > max {
        return Err(BackendError::InvalidInput(format!(
            "{what} is {} bytes, more than {max}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(BackendError::InvalidInput(format!(
            "{what} {:?} contains {bad:?}; only [A-Za-z0-9._:-] are allowed",
            name.escape_debug().to_string()
        )));
    }
    Ok(())
}
