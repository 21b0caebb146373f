//! Per-call limits. Every call gets a fresh store with these limits; the engine and
//! the store enforce them, never the guest.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, PlinthError};
use crate::grant::Capability;

/// The largest linear memory any call may ask for. The pooling allocator reserves
/// address space for this size per memory slot, so it bounds `memory_bytes` too.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

/// A pool slot's share of core instances: what one call may instantiate. A Rust guest
/// is two or three core instances; a Python component (libc, libpython, the app and the
/// glue between them) needs about forty.
pub const SLOT_INSTANCES: usize = 64;
/// A pool slot's share of tables.
pub const SLOT_TABLES: usize = 8;
/// A pool slot's share of linear memories.
pub const SLOT_MEMORIES: usize = 4;

/// What one call may use. Defaults suit a dashboard widget; see `docs/limits.md`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wasm fuel (roughly one unit per instruction). `None` runs without fuel metering
    /// (the wall-clock deadline still applies). Only honoured on a fuel-enabled engine.
    pub fuel: Option<u64>,
    /// Cap on all linear memories of the instance together, in bytes.
    pub memory_bytes: u64,
    /// Cap on elements per table.
    pub table_elements: usize,
    /// Cap on core instances (a component is several).
    pub instances: usize,
    /// Cap on tables.
    pub tables: usize,
    /// Cap on linear memories.
    pub memories: usize,
    /// Wall-clock deadline for the whole call, instantiation included.
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub timeout: Duration,
    /// Cap on calls from the guest into capabilities, all together.
    pub host_calls: u64,
    /// Cap on calls into any one capability.
    pub capability_calls: u64,
    /// Cap on bytes crossing from the guest to the host in one transfer (arguments of
    /// a host call, or the call's result), and on the size of the result as JSON.
    pub output_bytes: usize,
    /// Cap on lines the guest may log in one call (further lines are counted, not kept).
    pub log_lines: usize,
    /// Cap on rows one database query returns.
    pub db_rows: usize,
    /// Cap on the bytes one database query returns (text and blobs counted by length).
    pub db_bytes: usize,
    /// Cap on messages one call publishes.
    pub broadcast_messages: usize,
    /// Cap on the size of one published message, in bytes.
    pub broadcast_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Some(500_000_000),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: SLOT_INSTANCES,
            tables: SLOT_TABLES,
            memories: SLOT_MEMORIES,
            timeout: Duration::from_millis(1_000),
            host_calls: 10_000,
            capability_calls: 5_000,
            output_bytes: 1 << 20,
            log_lines: 200,
            db_rows: 10_000,
            db_bytes: 4 << 20,
            broadcast_messages: 100,
            broadcast_bytes: 64 << 10,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

impl Limits {
    /// Applies one `key=value` setting, as given to `plinth run --limit`.
    /// Sizes accept `KiB`, `MiB`, `GiB` suffixes; the timeout accepts `ms` and `s`;
    /// `fuel=off` disables fuel metering.
    ///
    /// ```
    /// # use plinth_host::Limits;
    /// let mut limits = Limits::default();
    /// limits.set("memory", "16MiB").unwrap();
    /// limits.set("timeout", "250ms").unwrap();
    /// limits.set("fuel", "off").unwrap();
    /// assert_eq!(limits.memory_bytes, 16 << 20);
    /// assert_eq!(limits.fuel, None);
    /// assert!(limits.set("colour", "blue").is_err());
    /// ```
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), PlinthError> {
        let bad = |what: &str| {
            PlinthError::new(
                ErrorCode::InvalidRequest,
                format!("limit {key}={value}: {what}"),
            )
        };
        match key {
            "fuel" => {
                self.fuel = if value == "off" {
                    None
                } else {
                    Some(
                        value
                            .parse()
                            .map_err(|_| bad("expected a count or `off`"))?,
                    )
                }
            }
            "memory" => {
                self.memory_bytes = parse_size(value).ok_or_else(|| bad("expected a size"))?
            }
            "table-elements" => {
                self.table_elements = value.parse().map_err(|_| bad("expected a count"))?
            }
            "instances" => self.instances = value.parse().map_err(|_| bad("expected a count"))?,
            "timeout" => {
                self.timeout =
                    parse_duration(value).ok_or_else(|| bad("expected e.g. 500ms or 2s"))?
            }
            "host-calls" => self.host_calls = value.parse().map_err(|_| bad("expected a count"))?,
            "capability-calls" => {
                self.capability_calls = value.parse().map_err(|_| bad("expected a count"))?
            }
            "output" => {
                self.output_bytes =
                    parse_size(value).ok_or_else(|| bad("expected a size"))? as usize
            }
            "log-lines" => self.log_lines = value.parse().map_err(|_| bad("expected a count"))?,
            "db-rows" => self.db_rows = value.parse().map_err(|_| bad("expected a count"))?,
            "db-bytes" => {
                self.db_bytes = parse_size(value).ok_or_else(|| bad("expected a size"))? as usize
            }
            "broadcast-messages" => {
                self.broadcast_messages = value.parse().map_err(|_| bad("expected a count"))?
            }
            "broadcast-bytes" => {
                self.broadcast_bytes =
                    parse_size(value).ok_or_else(|| bad("expected a size"))? as usize
            }
            _ => {
                return Err(bad(
                    "unknown limit (fuel, memory, table-elements, instances, timeout, host-calls, capability-calls, output, log-lines, db-rows, db-bytes, broadcast-messages, broadcast-bytes)",
                ));
            }
        }
        self.validate()
    }

    /// Checks that the limits are enforceable by the engine as configured.
    pub fn validate(&self) -> Result<(), PlinthError> {
        let bad = |message: String| Err(PlinthError::new(ErrorCode::InvalidValue, message));
        if self.memory_bytes > MAX_MEMORY_BYTES {
            return bad(format!(
                "memory limit {} exceeds the engine's maximum of {MAX_MEMORY_BYTES} bytes",
                self.memory_bytes
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(600) {
            return bad("timeout must be between 1 ms and 600 s".into());
        }
        if self.instances > SLOT_INSTANCES
            || self.tables > SLOT_TABLES
            || self.memories > SLOT_MEMORIES
        {
            return bad(format!(
                "at most {SLOT_INSTANCES} instances, {SLOT_TABLES} tables and {SLOT_MEMORIES} \
                 memories per call (a pool slot's share)"
            ));
        }
        if self.output_bytes == 0 {
            return bad("output limit must be at least one byte".into());
        }
        Ok(())
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
    .unwrap_or((text, 1));
    number.trim().parse::<u64>().ok()?.checked_mul(scale)
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = text.strip_suffix('s') {
        return s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
    }
    text.parse().ok().map(Duration::from_millis)
}

/// A rule the host enforces by trapping; the call ends with its code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitBreach {
    #[error("linear memory would grow to {requested} bytes, over the cap of {cap} bytes")]
    Memory { requested: u64, cap: u64 },
    #[error("a table would grow to {requested} elements, over the cap of {cap}")]
    Table { requested: usize, cap: usize },
    #[error("more than {cap} host calls in one call")]
    HostCalls { cap: u64 },
    #[error("more than {cap} calls to the `{capability}` capability in one call")]
    CapabilityCalls { capability: Capability, cap: u64 },
    #[error("the result is {bytes} bytes as JSON, over the cap of {cap} bytes")]
    Output { bytes: usize, cap: usize },
    #[error("called the `{capability}` capability, which is not granted")]
    Ungranted { capability: Capability },
}

impl LimitBreach {
    pub fn code(&self) -> ErrorCode {
        match self {
            LimitBreach::Memory { .. } | LimitBreach::Table { .. } => ErrorCode::MemoryLimit,
            LimitBreach::HostCalls { .. } | LimitBreach::CapabilityCalls { .. } => {
                ErrorCode::QuotaExceeded
            }
            LimitBreach::Output { .. } => ErrorCode::OutputTooLarge,
            LimitBreach::Ungranted { .. } => ErrorCode::CapabilityDenied,
        }
    }
}
