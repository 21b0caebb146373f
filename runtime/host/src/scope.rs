//! Who a call runs for, and the names a guest may choose inside its tenant's namespace.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{BackendError, ErrorCode, PlinthError};

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
