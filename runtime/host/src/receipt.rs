//! The usage receipt every call returns.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::error::ErrorCode;
use crate::grant::Capability;

/// How a call ended: `OK` or its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageOutcome {
    Ok,
    Error(ErrorCode),
}

impl fmt::Display for UsageOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageOutcome::Ok => f.write_str("OK"),
            UsageOutcome::Error(code) => f.write_str(code.as_str()),
        }
    }
}

impl Serialize for UsageOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What one call used.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub tenant: String,
    pub installation: String,
    /// SHA-256 of the component.
    pub component: String,
    /// The export called (`render`, `on-tick`, `invoke`, `handle`, `describe`).
    pub call: &'static str,
    /// `OK` or the error code.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outcome: UsageOutcome,
    /// Fuel consumed; absent on an engine without fuel metering.
    pub fuel_used: Option<u64>,
    /// Largest total linear memory the instance reached.
    pub peak_memory_bytes: u64,
    /// Instantiation, call and result conversion.
    pub wall_time_us: u64,
    pub host_calls: BTreeMap<Capability, u64>,
    /// Size of the result as JSON.
    pub output_bytes: usize,
    /// Log lines over the per-call cap, counted and not kept.
    pub logs_dropped: u64,
}
