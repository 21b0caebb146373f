//! What one capability's host functions see of the call: its backend, the call's scope,
//! grants, limits and deadline, and the record the call keeps as it runs.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::contract::WitError;
use crate::error::{BackendError, ErrorCode};
use crate::grant::{Capability, Grants};
use crate::limits::{LimitBreach, Limits};
use crate::scope::Scope;

/// One line the guest logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// One message a call published; delivered only when the call succeeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Publication {
    pub topic: String,
    pub payload: serde_json::Value,
}

/// What a call did, kept as it runs: host calls by capability, the host's refusals,
/// log lines and pending publications.
#[derive(Debug, Default)]
pub struct CallRecord {
    pub host_calls: BTreeMap<Capability, u64>,
    pub total_host_calls: u64,
    /// Errors the host answered with, so a guest that passes one on is reported with
    /// the host's code (`QUOTA_EXCEEDED`, `CAPABILITY_DENIED`) rather than `GUEST_ERROR`.
    pub refusals: Vec<(ErrorCode, WitError)>,
    pub logs: Vec<LogLine>,
    pub dropped_logs: u64,
    pub published: Vec<Publication>,
}

/// The view of the call's state that one capability's host functions see.
pub struct CapView<'a, B: ?Sized> {
    pub record: &'a mut CallRecord,
    pub scope: &'a Scope,
    pub grants: &'a Grants,
    pub limits: &'a Limits,
    /// When the call's deadline passes; backends bound their own work by it.
    pub deadline: Instant,
    pub backend: &'a B,
}

impl<B: ?Sized> CapView<'_, B> {
    /// Counts a host call, trapping past the call's cap. The grant was checked at load;
    /// checking again here keeps a bug elsewhere from becoming a hole.
    pub fn enter(&mut self, capability: Capability) -> wasmtime::Result<()> {
        if !self.grants.allows(capability) {
            return Err(LimitBreach::Ungranted { capability }.into());
        }
        self.record.total_host_calls += 1;
        let calls = self.record.host_calls.entry(capability).or_default();
        *calls += 1;
        if *calls > self.limits.capability_calls {
            return Err(LimitBreach::CapabilityCalls {
                capability,
                cap: self.limits.capability_calls,
            }
            .into());
        }
        if self.record.total_host_calls > self.limits.host_calls {
            return Err(LimitBreach::HostCalls {
                cap: self.limits.host_calls,
            }
            .into());
        }
        Ok(())
    }

    /// Turns a backend answer into the guest's, remembering refusals.
    pub fn answer<T>(&mut self, result: Result<T, BackendError>) -> Result<T, WitError> {
        result.map_err(|error| {
            let (code, wit) = match error {
                BackendError::InvalidInput(m) => (ErrorCode::GuestError, WitError::InvalidInput(m)),
                BackendError::NotFound(m) => (ErrorCode::GuestError, WitError::NotFound(m)),
                BackendError::Denied(m) => (ErrorCode::CapabilityDenied, WitError::Denied(m)),
                BackendError::QuotaExceeded(m) => {
                    (ErrorCode::QuotaExceeded, WitError::QuotaExceeded(m))
                }
                BackendError::Unavailable(m) => (ErrorCode::GuestError, WitError::Unavailable(m)),
                BackendError::Busy(m) => (ErrorCode::DbBusy, WitError::Unavailable(m)),
                BackendError::Timeout(m) => (ErrorCode::GuestError, WitError::Timeout(m)),
            };
            if code != ErrorCode::GuestError {
                self.record.refusals.push((code, wit.clone()));
            }
            wit
        })
    }
}
