//! The database capability: backend trait, the SQLite backend (one file per tenant),
//! the PostgreSQL backend ([`postgres`]: a schema and a role per tenant), and the host
//! side of `plinth:extension/db`.
//!
//! Parameters are written `$1`, `$2`, … in both backends (SQLite also takes `?1`).

pub mod postgres;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode as SqliteCode, OpenFlags};

use super::{BackendError, Capability};
use crate::bindings::plinth::extension::db as wit;
use crate::bindings::{WitError, WitValue};
use crate::error::{ErrorCode, PlinthError};
use crate::state::CapView;

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

/// The embedded database: one SQLite file per tenant under a directory. An authorizer
/// keeps statements inside that file (no ATTACH, no PRAGMA but a few read-only ones).
pub struct SqliteDb {
    dir: PathBuf,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

struct Tenant {
    connection: Mutex<Connection>,
    /// Deadline of the running statement, in ms since the Unix epoch; read by the
    /// progress handler, which interrupts the statement past it.
    deadline_ms: Arc<AtomicU64>,
}

/// Pages a tenant's SQLite file may have (4 KiB each).
const MAX_PAGES: i64 = 65_536;

/// PRAGMAs that only read the schema; every other PRAGMA is denied.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "foreign_key_list",
];

fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        // Transactions are the host's: a transaction left open on the tenant's shared
        // connection would outlive the call, and a ROLLBACK would undo others' writes.
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. } => {
            if READ_ONLY_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name))
            {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SqliteDb {
    /// Opens (creating) the directory that holds the tenants' database files.
    pub fn open(dir: &Path) -> Result<Self, PlinthError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            PlinthError::new(
                ErrorCode::Internal,
                format!("cannot create database directory {}: {e}", dir.display()),
            )
        })?;
        Ok(SqliteDb {
            dir: dir.to_owned(),
            tenants: Mutex::default(),
        })
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<Tenant>, BackendError> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = tenants.get(tenant) {
            return Ok(found.clone());
        }
        // Tenant names are checked identifiers ([a-z0-9-]), so the path stays in `dir`.
        let path = self.dir.join(format!("{tenant}.sqlite3"));
        let unavailable =
            |e: rusqlite::Error| BackendError::Unavailable(format!("tenant database: {e}"));
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        connection
            .busy_timeout(Duration::from_millis(250))
            .map_err(unavailable)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        // A tenant's file stops growing at 256 MiB (65 536 pages of 4 KiB): a write
        // grant cannot fill the disk every tenant shares.
        connection
            .pragma_update(None, "max_page_count", MAX_PAGES)
            .map_err(unavailable)?;
        for (limit, value) in [
            (Limit::SQLITE_LIMIT_ATTACHED, 0),
            (Limit::SQLITE_LIMIT_LENGTH, 4 << 20),
            (Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000),
            (Limit::SQLITE_LIMIT_COLUMN, 200),
            (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
            (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50),
            (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 999),
            (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10),
        ] {
            connection.set_limit(limit, value).map_err(unavailable)?;
        }
        // Set after the PRAGMAs above: from here on the guest's statements are confined.
        connection.authorizer(Some(authorize));
        let deadline_ms = Arc::new(AtomicU64::new(u64::MAX));
        let watched = deadline_ms.clone();
        connection.progress_handler(
            1_000,
            Some(move || now_ms() > watched.load(Ordering::Relaxed)),
        );
        let found = Arc::new(Tenant {
            connection: Mutex::new(connection),
            deadline_ms,
        });
        tenants.insert(tenant.to_owned(), found.clone());
        Ok(found)
    }

    async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        bounds: StatementBounds,
        work: impl FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let tenant = self.tenant(tenant)?;
        tokio::task::spawn_blocking(move || {
            let connection = tenant.connection.lock().unwrap_or_else(|p| p.into_inner());
            let left = bounds.deadline.saturating_duration_since(Instant::now());
            tenant
                .deadline_ms
                .store(now_ms() + left.as_millis() as u64, Ordering::Relaxed);
            let result = work(&connection);
            tenant.deadline_ms.store(u64::MAX, Ordering::Relaxed);
            result
        })
        .await
        .map_err(|e| BackendError::Unavailable(format!("database worker failed: {e}")))?
    }
}

fn sql_error(error: rusqlite::Error) -> BackendError {
    // A denied function reports SQLITE_ERROR with this text rather than SQLITE_AUTH.
    if error.to_string().contains("not authorized") {
        return BackendError::Denied(format!(
            "statement not allowed in a tenant database: {error}"
        ));
    }
    match error.sqlite_error_code() {
        Some(SqliteCode::OperationInterrupted) => {
            BackendError::Timeout("the statement ran past the call's deadline".into())
        }
        Some(SqliteCode::DatabaseBusy | SqliteCode::DatabaseLocked) => {
            BackendError::Busy("the tenant's database is locked by other work; retry later".into())
        }
        Some(SqliteCode::AuthorizationForStatementDenied) => BackendError::Denied(format!(
            "statement not allowed in a tenant database: {error}"
        )),
        Some(SqliteCode::TooBig) => BackendError::QuotaExceeded(format!("{error}")),
        _ => BackendError::InvalidInput(format!("{error}")),
    }
}

/// Binds `$N` (and `?N`, `?`) placeholders to `params[N - 1]`, so the same statement
/// text works on SQLite and PostgreSQL.
fn bind(statement: &mut rusqlite::Statement<'_>, params: Vec<DbValue>) -> Result<(), BackendError> {
    for index in 1..=statement.parameter_count() {
        let number = match statement.parameter_name(index) {
            Some(name) => name[1..].parse::<usize>().map_err(|_| {
                BackendError::InvalidInput(format!(
                    "parameter {name} is not numbered; write $1, $2, …"
                ))
            })?,
            None => index,
        };
        let value = params.get(number.wrapping_sub(1)).cloned().ok_or_else(|| {
            BackendError::InvalidInput(format!(
                "the statement uses ${number} but {} parameters were given",
                params.len()
            ))
        })?;
        statement
            .raw_bind_parameter(index, to_sql(value))
            .map_err(sql_error)?;
    }
    Ok(())
}

fn to_sql(value: DbValue) -> SqlValue {
    match value {
        DbValue::Null => SqlValue::Null,
        DbValue::Integer(n) => SqlValue::Integer(n),
        DbValue::Real(n) => SqlValue::Real(n),
        DbValue::Text(t) => SqlValue::Text(t),
        DbValue::Blob(b) => SqlValue::Blob(b),
    }
}

fn from_sql(value: ValueRef<'_>) -> DbValue {
    match value {
        ValueRef::Null => DbValue::Null,
        ValueRef::Integer(n) => DbValue::Integer(n),
        ValueRef::Real(n) => DbValue::Real(n),
        ValueRef::Text(t) => DbValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => DbValue::Blob(b.to_vec()),
    }
}

#[async_trait]
impl DbBackend for SqliteDb {
    async fn query(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<DbValue>,
        bounds: StatementBounds,
    ) -> Result<DbRows, BackendError> {
        let sql = sql.to_owned();
        self.run(tenant, bounds, move |connection| {
            let mut statement = connection.prepare(&sql).map_err(sql_error)?;
            if !statement.readonly() {
                return Err(BackendError::InvalidInput(
                    "query runs read statements only; use execute to write".into(),
                ));
            }
            let columns: Vec<String> = statement
                .column_names()
                .into_iter()
                .map(String::from)
                .collect();
            let params: Vec<SqlValue> = params.into_iter().map(to_sql).collect();
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(sql_error)?;
            let (mut out, mut bytes) = (Vec::new(), 0usize);
            while let Some(row) = rows.next().map_err(sql_error)? {
                let values = (0..columns.len())
                    .map(|i| row.get_ref(i).map(from_sql))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                admit(&mut out, &mut bytes, values, &bounds)?;
            }
            Ok(DbRows { columns, rows: out })
        })
        .await
    }

    async fn execute(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<DbValue>,
        bounds: StatementBounds,
    ) -> Result<u64, BackendError> {
        let sql = sql.to_owned();
        self.run(tenant, bounds, move |connection| {
            let mut statement = connection.prepare(&sql).map_err(sql_error)?;
            bind(&mut statement, params)?;
            let changed = statement.raw_execute().map_err(sql_error)?;
            Ok(changed as u64)
        })
        .await
    }
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
