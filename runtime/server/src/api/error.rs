//! API errors: every error is `{"code", "message"}` with the one HTTP status of its
//! code ([`status_of`]).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plinth_host::{ErrorCode, PlinthError};

/// The HTTP status of each error code; one status per code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::CapabilityDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict
        | ErrorCode::GrantsRequired
        | ErrorCode::InstallationDisabled
        | ErrorCode::InstallationParked => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::NotAComponent
        | ErrorCode::InvalidComponent
        | ErrorCode::WorldMismatch
        | ErrorCode::InvalidConfig
        | ErrorCode::InvalidValue => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::RateLimited | ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // The extension failed: the server is a gateway to the tenant's code.
        ErrorCode::FuelExhausted
        | ErrorCode::MemoryLimit
        | ErrorCode::StackOverflow
        | ErrorCode::OutputTooLarge
        | ErrorCode::GuestTrap
        | ErrorCode::GuestAbiError
        | ErrorCode::GuestError => StatusCode::BAD_GATEWAY,
        ErrorCode::CompileTimeout | ErrorCode::Unavailable | ErrorCode::DbBusy => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::ExecutionTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// An API error: the response is `{"code", "message"}`.
#[derive(Debug)]
pub struct ApiError(pub PlinthError);

impl From<PlinthError> for ApiError {
    fn from(error: PlinthError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let mut response = (status, Json(&self.0)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Slots and quotas free up within seconds (an upload, a compilation, a
            // tenant's running calls).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // Lets the metrics middleware count errors by code without parsing bodies.
        response.extensions_mut().insert(self.0.code);
        response
    }
}

/// An API error of `code`.
pub fn error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError(PlinthError::new(code, message))
}

pub type ApiResult<T> = Result<T, ApiError>;
