//! Stable error codes. Every failure Plinth reports carries one of these codes and a
//! message that names the tenant, installation or capability involved.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string form (`EXECUTION_TIMEOUT`, …) is
/// part of Plinth's API: codes are added, never renamed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The call ran past its deadline (epoch interruption or the outer timeout).
    ExecutionTimeout,
    /// The call used all of its fuel.
    FuelExhausted,
    /// Linear memory or a table would grow past the call's cap.
    MemoryLimit,
    /// The guest's wasm stack overflowed.
    StackOverflow,
    /// More data than allowed crossed from the guest to the host in one transfer, or
    /// the call's result is larger than its cap.
    OutputTooLarge,
    /// A per-call quota (host calls, value sizes, rows) was exceeded.
    QuotaExceeded,
    /// The guest trapped: panic, `unreachable`, out-of-bounds access, …
    GuestTrap,
    /// The guest broke the canonical ABI: invalid UTF-8, bad pointers, bad discriminants.
    GuestAbiError,
    /// The bytes are a core WebAssembly module, not a component.
    NotAComponent,
    /// The bytes are not a valid component (or not WebAssembly at all).
    InvalidComponent,
    /// The component does not export what a Plinth world requires, or with other types.
    WorldMismatch,
    /// The component imports a capability the installation was not granted, or one that
    /// Plinth never provides.
    CapabilityDenied,
    /// The tenant's database stayed locked by other work past the busy timeout; the guest
    /// saw `unavailable` and passed it on. Retrying later may succeed.
    DbBusy,
    /// The guest returned an error of the contract (`types.error`).
    GuestError,
    /// The request itself is malformed (bad JSON config, unknown limit, …).
    InvalidRequest,
    /// A host-side failure that is not the guest's doing.
    Internal,
    /// The request carries no token, or one Plinth does not know.
    Unauthenticated,
    /// The token is valid but its role or tenant does not allow this.
    Forbidden,
    /// No such tenant, component, installation, dashboard or route.
    NotFound,
    /// The thing already exists, or is in a state that refuses the request.
    Conflict,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    /// Too many requests (or compilations, or WebSocket messages) at once.
    RateLimited,
    /// Compiling an uploaded component took longer than the server allows.
    CompileTimeout,
    /// The client took longer than the server allows to send a request's body.
    RequestTimeout,
    /// The route exists but not with this HTTP method (the `Allow` header lists them).
    MethodNotAllowed,
    /// An installation's config does not match the widget's JSON schema.
    InvalidConfig,
    /// The request matches the API's schema, but a value is refused by a rule the schema
    /// cannot state: an expiry in the past, two fields that exclude each other, a tick
    /// interval outside this server's range.
    InvalidValue,
    /// An upgrade imports capabilities the installation has not been granted.
    GrantsRequired,
    /// The installation is disabled by its tenant.
    InstallationDisabled,
    /// The installation was parked by the circuit breaker after repeated failures.
    InstallationParked,
    /// A service Plinth depends on (metadata database, Redis) cannot be reached.
    Unavailable,
}

impl ErrorCode {
    /// The stable string form, e.g. `"FUEL_EXHAUSTED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ExecutionTimeout => "EXECUTION_TIMEOUT",
            ErrorCode::FuelExhausted => "FUEL_EXHAUSTED",
            ErrorCode::MemoryLimit => "MEMORY_LIMIT",
            ErrorCode::StackOverflow => "STACK_OVERFLOW",
            ErrorCode::OutputTooLarge => "OUTPUT_TOO_LARGE",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::GuestTrap => "GUEST_TRAP",
            ErrorCode::GuestAbiError => "GUEST_ABI_ERROR",
            ErrorCode::NotAComponent => "NOT_A_COMPONENT",
            ErrorCode::InvalidComponent => "INVALID_COMPONENT",
            ErrorCode::WorldMismatch => "WORLD_MISMATCH",
            ErrorCode::CapabilityDenied => "CAPABILITY_DENIED",
            ErrorCode::DbBusy => "DB_BUSY",
            ErrorCode::GuestError => "GUEST_ERROR",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::CompileTimeout => "COMPILE_TIMEOUT",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidValue => "INVALID_VALUE",
            ErrorCode::GrantsRequired => "GRANTS_REQUIRED",
            ErrorCode::InstallationDisabled => "INSTALLATION_DISABLED",
            ErrorCode::InstallationParked => "INSTALLATION_PARKED",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }
}

impl ErrorCode {
    /// Every code, for documentation and the OpenAPI document.
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::ExecutionTimeout,
        ErrorCode::FuelExhausted,
        ErrorCode::MemoryLimit,
        ErrorCode::StackOverflow,
        ErrorCode::OutputTooLarge,
        ErrorCode::QuotaExceeded,
        ErrorCode::GuestTrap,
        ErrorCode::GuestAbiError,
        ErrorCode::NotAComponent,
        ErrorCode::InvalidComponent,
        ErrorCode::WorldMismatch,
        ErrorCode::CapabilityDenied,
        ErrorCode::DbBusy,
        ErrorCode::GuestError,
        ErrorCode::InvalidRequest,
        ErrorCode::Internal,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::CompileTimeout,
        ErrorCode::RequestTimeout,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidValue,
        ErrorCode::GrantsRequired,
        ErrorCode::InstallationDisabled,
        ErrorCode::InstallationParked,
        ErrorCode::Unavailable,
    ];

    /// Whether the guest caused this failure (the circuit breaker counts these).
    pub fn is_guest_fault(self) -> bool {
        matches!(
            self,
            ErrorCode::ExecutionTimeout
                | ErrorCode::FuelExhausted
                | ErrorCode::MemoryLimit
                | ErrorCode::StackOverflow
                | ErrorCode::OutputTooLarge
                | ErrorCode::GuestTrap
                | ErrorCode::GuestAbiError
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure with its stable code; serializes as `{"code": …, "message": …}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Error))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PlinthError {
    pub code: ErrorCode,
    pub message: String,
    /// The fields that failed, where the error is about a document's fields (an
    /// installation's config against its schema): a form shows each at its field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
}

/// One field of a document that failed a check.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// Where, as a JSON pointer (`/target`; empty for the whole document).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl PlinthError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        PlinthError {
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The error naming the fields that failed.
    pub fn with_fields(mut self, fields: Vec<FieldProblem>) -> Self {
        self.fields = fields;
        self
    }
}

pub type Result<T, E = PlinthError> = std::result::Result<T, E>;

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
