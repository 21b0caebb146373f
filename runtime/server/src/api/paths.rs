//! The path parameters of the API as the OpenAPI document describes them. Ids are what
//! [`crate::registry::check_id`] accepts. The `tenant` of a path is read by the role
//! extractors ([`super::auth`]); it is here for the document.

use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub tenant: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InstallationPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    pub tenant: String,
    /// The installation's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActionPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    pub tenant: String,
    /// The installation's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub id: String,
    /// An action the extension declares.
    pub action: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ComponentPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    pub tenant: String,
    /// SHA-256 of the component, 64 hex digits.
    #[param(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DashboardPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    pub tenant: String,
    /// The dashboard's name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub name: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantTokenPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    pub tenant: String,
    /// The token's public id (16 hex digits), as listed.
    #[param(pattern = "^[0-9a-f]{16}$")]
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// The token's public id (16 hex digits), as listed.
    #[param(pattern = "^[0-9a-f]{16}$")]
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeadLetterPath {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    pub tenant: String,
    /// The dead letter's id, 16 hex digits.
    #[param(pattern = "^[0-9a-f]{16}$")]
    pub id: String,
}
