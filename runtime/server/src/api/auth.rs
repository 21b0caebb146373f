//! Who may call a route, as extractors read from the headers alone: a handler that takes
//! one never runs, and never reads its body, for a request its token may not make.
//!
//! - [`Caller`]: any working token;
//! - [`Operator`]: an operator token;
//! - [`Viewer`]: may read the tenant the path names (its viewers and admins, operators);
//! - [`Admin`]: may change it (its admins, operators);
//! - [`Publisher`]: may post events to it (its publishers and admins, operators); a
//!   publisher token may do nothing else.
//!
//! Another tenant's token learns nothing about a tenant: it gets `NOT_FOUND`, as for a
//! tenant that does not exist.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use plinth_host::ErrorCode;

use super::error::{ApiError, ApiResult, error};
use crate::app::App;
use crate::registry::{Principal, Role};

/// The bearer token of a request, if it sent one.
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The principal of a token; unknown, revoked or expired is `UNAUTHENTICATED`, the
/// message says which.
pub async fn principal_of(app: &App, token: Option<&str>) -> ApiResult<Principal> {
    let Some(token) = token else {
        return Err(error(
            ErrorCode::Unauthenticated,
            "send a token: Authorization: Bearer plt_…",
        ));
    };
    Ok(app.registry.principal(token).await?)
}

/// Any working token.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Self> {
        Ok(Caller(principal_of(app, token_of(&parts.headers)).await?))
    }
}

/// An operator token.
pub struct Operator;

impl FromRequestParts<Arc<App>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Self> {
        let principal = principal_of(app, token_of(&parts.headers)).await?;
        if principal.role != Role::Operator {
            return Err(error(ErrorCode::Forbidden, "operators only"));
        }
        Ok(Operator)
    }
}

/// A token that may read the tenant of the path (`{tenant}`).
pub struct Viewer {
    pub tenant: String,
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Self> {
        let (_, tenant) = authorize(parts, app, Access::Read).await?;
        Ok(Viewer { tenant })
    }
}

/// A token that may change the tenant of the path (`{tenant}`).
pub struct Admin {
    pub principal: Principal,
    pub tenant: String,
}

impl Admin {
    /// Operators may raise an installation's limits above the server's defaults.
    pub fn may_raise_limits(&self) -> bool {
        self.principal.role == Role::Operator
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Self> {
        let (principal, tenant) = authorize(parts, app, Access::Change).await?;
        Ok(Admin { principal, tenant })
    }
}

/// A token that may post events to the tenant of the path (`{tenant}`).
pub struct Publisher {
    pub tenant: String,
}

impl FromRequestParts<Arc<App>> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Self> {
        let (_, tenant) = authorize(parts, app, Access::Publish).await?;
        Ok(Publisher { tenant })
    }
}

/// What a route does with its tenant.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    Read,
    Change,
    Publish,
}

/// The tenant the path names.
pub(super) async fn tenant_of(parts: &mut Parts, app: &Arc<App>) -> ApiResult<String> {
    let params = RawPathParams::from_request_parts(parts, app)
        .await
        .map_err(|e| error(ErrorCode::InvalidRequest, e.body_text()))?;
    params
        .iter()
        .find(|(name, _)| *name == "tenant")
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| error(ErrorCode::Internal, "route without a {tenant}"))
}

async fn authorize(
    parts: &mut Parts,
    app: &Arc<App>,
    access: Access,
) -> ApiResult<(Principal, String)> {
    let tenant = tenant_of(parts, app).await?;
    let principal = principal_of(app, token_of(&parts.headers)).await?;
    let own = principal.tenant.as_deref() == Some(tenant.as_str());
    let allowed = match principal.role {
        Role::Operator => true,
        Role::TenantAdmin => own,
        Role::Viewer => own && access == Access::Read,
        Role::Publisher => own && access == Access::Publish,
    };
    if !allowed {
        return Err(if !own && principal.role != Role::Operator {
            error(ErrorCode::NotFound, format!("no tenant {tenant}"))
        } else {
            error(
                ErrorCode::Forbidden,
                format!("a {:?} token cannot do this", principal.role).to_lowercase(),
            )
        });
    }
    if principal.role == Role::Operator {
        app.registry.tenant(&tenant).await?;
    }
    Ok((principal, tenant))
}
