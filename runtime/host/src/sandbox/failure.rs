//! Why a call failed, named: the host's refusal, a limit, a trap, the guest's own error
//! or a broken ABI, each with its stable code and a message naming the call.

use wasmtime::Trap;

use crate::call::{Call, Invocation};
use crate::contract::WitError;
use crate::error::{ErrorCode, PlinthError};
use crate::limits::{LimitBreach, Limits};
use crate::sandbox::extension::Extension;
use crate::state::CallState;

/// Why a call failed, before it is put in words.
pub(crate) enum Failure {
    Refused(PlinthError),
    Timeout,
    NotExported(&'static str),
    Guest(WitError),
    Output(LimitBreach),
    BadJson(&'static str),
    Wasm {
        instantiating: bool,
        error: wasmtime::Error,
    },
}

impl Failure {
    /// The contract's error case when the guest returned one.
    pub(crate) fn guest_case(&self) -> Option<crate::call::GuestErrorCase> {
        use crate::call::GuestErrorCase as Case;
        match self {
            Failure::Guest(error) => Some(match error {
                WitError::InvalidInput(_) => Case::InvalidInput,
                WitError::NotFound(_) => Case::NotFound,
                WitError::Denied(_) => Case::Denied,
                WitError::QuotaExceeded(_) => Case::QuotaExceeded,
                WitError::Unavailable(_) => Case::Unavailable,
                WitError::Timeout(_) => Case::Timeout,
                WitError::Rejected(_) => Case::Rejected,
                WitError::Internal(_) => Case::Internal,
            }),
            _ => None,
        }
    }

    pub(crate) fn into_error(
        self,
        extension: &Extension,
        invocation: &Invocation,
        call: &Call,
        limits: &Limits,
        state: &CallState,
    ) -> PlinthError {
        let who = format!(
            "{} of {}: {}",
            invocation.scope,
            extension.label(),
            call.name()
        );
        let (code, detail) = match self {
            Failure::Refused(error) => return error,
            Failure::Timeout => (
                ErrorCode::ExecutionTimeout,
                format!(
                    "did not finish within {} ms (a host call hung)",
                    limits.timeout.as_millis()
                ),
            ),
            Failure::NotExported(interface) => (
                ErrorCode::WorldMismatch,
                format!(
                    "the component does not export {} (world {:?})",
                    crate::contract::interface(interface),
                    extension.world
                ),
            ),
            Failure::Guest(error) => {
                // A guest passing on the host's refusal keeps the host's code.
                let code = state
                    .record
                    .refusals
                    .iter()
                    .find(|(_, refused)| *refused == error)
                    .map_or(ErrorCode::GuestError, |(code, _)| *code);
                (
                    code,
                    format!(
                        "the extension returned an error: {}",
                        describe_wit_error(&error)
                    ),
                )
            }
            Failure::Output(breach) => (breach.code(), breach.to_string()),
            Failure::BadJson(what) => (
                ErrorCode::GuestError,
                format!("the extension returned {what} that is not JSON"),
            ),
            Failure::Wasm {
                instantiating,
                error,
            } => classify(&error, instantiating, limits, state),
        };
        PlinthError::new(code, format!("{who}: {detail}"))
    }
}

fn describe_wit_error(error: &WitError) -> String {
    let (case, message) = match error {
        WitError::InvalidInput(m) => ("invalid-input", m),
        WitError::NotFound(m) => ("not-found", m),
        WitError::Denied(m) => ("denied", m),
        WitError::QuotaExceeded(m) => ("quota-exceeded", m),
        WitError::Unavailable(m) => ("unavailable", m),
        WitError::Timeout(m) => ("timeout", m),
        WitError::Rejected(m) => ("rejected", m),
        WitError::Internal(m) => ("internal", m),
    };
    format!("{case}: {message}")
}

/// Names the cause of a wasmtime error: limits first, then traps, then the ABI.
fn classify(
    error: &wasmtime::Error,
    instantiating: bool,
    limits: &Limits,
    state: &CallState,
) -> (ErrorCode, String) {
    if let Some(breach) = error.downcast_ref::<LimitBreach>() {
        return (breach.code(), breach.to_string());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => (
                ErrorCode::ExecutionTimeout,
                format!("ran past its deadline of {} ms", limits.timeout.as_millis()),
            ),
            Trap::OutOfFuel => (
                ErrorCode::FuelExhausted,
                format!(
                    "used all of its fuel ({})",
                    limits.fuel.map_or("unmetered".into(), |f| f.to_string())
                ),
            ),
            Trap::StackOverflow => (ErrorCode::StackOverflow, "overflowed its wasm stack".into()),
            other => {
                let stderr = state.stderr.contents();
                let said = String::from_utf8_lossy(&stderr);
                let said = said.trim();
                let tail = said
                    .char_indices()
                    .rev()
                    .nth(500)
                    .map_or(said, |(i, _)| &said[i..]);
                if tail.is_empty() {
                    (ErrorCode::GuestTrap, format!("the guest trapped: {other}"))
                } else {
                    (
                        ErrorCode::GuestTrap,
                        format!("the guest trapped: {other}; stderr: {tail}"),
                    )
                }
            }
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            ErrorCode::GuestTrap,
            format!("the guest called exit({})", exit.0),
        );
    }
    let text = format!("{error:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return (
            ErrorCode::OutputTooLarge,
            format!(
                "more than {} bytes crossed from the guest to the host in one transfer",
                limits.output_bytes
            ),
        );
    }
    if instantiating {
        return (
            ErrorCode::InvalidComponent,
            format!("could not be instantiated: {text}"),
        );
    }
    // What remains are failures to lift the guest's values: invalid UTF-8, pointers out
    // of bounds, bad discriminants. The guest broke the canonical ABI.
    (ErrorCode::GuestAbiError, text)
}
