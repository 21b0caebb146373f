//! What an installation may use: capabilities and the grants that allow them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, PlinthError};

/// A capability as named in grants, receipts and error messages.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
        let rest = interface
            .strip_prefix(crate::contract::PACKAGE)?
            .strip_prefix('/')?;
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

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Cache => "cache",
            Grant::DbRead => "db",
            Grant::DbWrite => "db:write",
            Grant::Broadcast => "broadcast",
            Grant::Log => "log",
        }
    }
}

/// `cache,db:write,log`: the form [`FromStr`] reads; empty for none.
impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, grant) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(grant.as_str())?;
        }
        Ok(())
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
