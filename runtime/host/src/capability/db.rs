//! The database capability: backend trait, the SQLite backend (one file per tenant),
//! the PostgreSQL backend ([`postgres`]: a schema and a role per tenant), and the host
//! side of `plinth:extension/db`.
//!
//! Parameters are written `$1`, `$2`, … in both backends (SQLite also takes `?1`).

pub mod postgres;
pub mod sqlite;
pub mod statement_budget;

pub use sqlite::SqliteDb;

use std::time::Instant;

use async_trait::async_trait;

use crate::capability::view::CapView;
use crate::contract::db as wit;
use crate::contract::{WitError, WitValue};
use crate::error::BackendError;
use crate::grant::Capability;
use wasmtime::component::{HasData, Linker};

/// A store's data as the `db` capability sees it; the linker's getter.
pub trait DbView: Send {
    fn db(&mut self) -> CapView<'_, dyn DbBackend>;
}

/// Marks the data the `db` host functions get ([`HasData`]).
struct DbData;

impl HasData for DbData {
    type Data<'a> = CapView<'a, dyn DbBackend>;
}

/// Links `plinth:extension/db` into `linker`, its host functions given the view
/// [`DbView`] takes of the store's data.
pub fn add_to_linker<T: DbView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, DbData>(linker, T::db)
}

/// Refuses a tenant id that is not a plain identifier ([`super::check_identifier`]): the
/// backends build file paths and SQL identifiers from it.
pub(crate) fn plain_tenant(tenant: &str) -> Result<(), BackendError> {
    crate::scope::check_identifier("tenant", tenant)
        .map_err(|e| BackendError::InvalidInput(e.message))
}

/// A typed value, both ways.
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl DbValue {
    /// Bytes the value occupies in a result, for result-size caps.
    pub fn size(&self) -> usize {
        match self {
            DbValue::Null => 1,
            DbValue::Integer(_) | DbValue::Real(_) => 8,
            DbValue::Text(t) => t.len(),
            DbValue::Blob(b) => b.len(),
        }
    }
}

/// Adds a row to a result, within the statement's row and byte caps.
pub(crate) fn admit(
    rows: &mut Vec<Vec<DbValue>>,
    bytes: &mut usize,
    row: Vec<DbValue>,
    bounds: &StatementBounds,
) -> Result<(), BackendError> {
    if rows.len() == bounds.max_rows {
        return Err(BackendError::QuotaExceeded(format!(
            "the query returns more than {} rows",
            bounds.max_rows
        )));
    }
    *bytes += row.iter().map(DbValue::size).sum::<usize>();
    if *bytes > bounds.max_bytes {
        return Err(BackendError::QuotaExceeded(format!(
            "the query returns more than {} bytes",
            bounds.max_bytes
        )));
    }
    rows.push(row);
    Ok(())
}

/// A result set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<DbValue>>,
}

/// Bounds of one statement.
#[derive(Debug, Clone, Copy)]
pub struct StatementBounds {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub deadline: Instant,
}

/// A database backend: each tenant has its own database, confined by the backend.
#[async_trait]
pub trait DbBackend: Send + Sync {
    async fn query(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<DbValue>,
        bounds: StatementBounds,
    ) -> Result<DbRows, BackendError>;

    async fn execute(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<DbValue>,
        bounds: StatementBounds,
    ) -> Result<u64, BackendError>;
}

fn from_wit(value: WitValue) -> DbValue {
    match value {
        WitValue::Null => DbValue::Null,
        WitValue::Integer(n) => DbValue::Integer(n),
        WitValue::Real(n) => DbValue::Real(n),
        WitValue::Text(t) => DbValue::Text(t),
        WitValue::Blob(b) => DbValue::Blob(b),
    }
}

fn to_wit(value: DbValue) -> WitValue {
    match value {
        DbValue::Null => WitValue::Null,
        DbValue::Integer(n) => WitValue::Integer(n),
        DbValue::Real(n) => WitValue::Real(n),
        DbValue::Text(t) => WitValue::Text(t),
        DbValue::Blob(b) => WitValue::Blob(b),
    }
}

impl CapView<'_, dyn DbBackend> {
    fn bounds(&self) -> StatementBounds {
        StatementBounds {
            max_rows: self.limits.db_rows,
            max_bytes: self.limits.db_bytes,
            deadline: self.deadline,
        }
    }
}

impl wit::Host for CapView<'_, dyn DbBackend> {
    async fn query(
        &mut self,
        sql: String,
        params: Vec<WitValue>,
    ) -> wasmtime::Result<Result<wit::Rows, WitError>> {
        self.enter(Capability::Db)?;
        let params = params.into_iter().map(from_wit).collect();
        let result = self
            .backend
            .query(&self.scope.tenant, &sql, params, self.bounds())
            .await
            .map(|rows| wit::Rows {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(to_wit).collect())
                    .collect(),
            });
        Ok(self.answer(result))
    }

    async fn execute(
        &mut self,
        sql: String,
        params: Vec<WitValue>,
    ) -> wasmtime::Result<Result<u64, WitError>> {
        self.enter(Capability::Db)?;
        let result = if self.grants.allows_db_write() {
            let params = params.into_iter().map(from_wit).collect();
            self.backend
                .execute(&self.scope.tenant, &sql, params, self.bounds())
                .await
        } else {
            Err(BackendError::Denied(format!(
                "{} has a read-only database grant; execute needs db:write",
                self.scope
            )))
        };
        Ok(self.answer(result))
    }
}
