//! The embedded database: one SQLite file per tenant under a directory.
//!
//! Tenant SQL is confined by allow-lists, never deny-lists: the authorizer lets through
//! only the statement kinds, SQL functions, PRAGMAs and table-valued functions listed
//! here, so a function or virtual table a future SQLite adds stays out of reach until
//! someone lists it. `SQLITE_DBCONFIG_DEFENSIVE` is on and the FTS3 tokenizer switch off.
//!
//! Work SQLite does for a tenant is bounded like the guest: every value is at most
//! [`MAX_VALUE_BYTES`] and a row at most [`MAX_COLUMNS`] of them, a result is checked
//! value by value before it is copied out, no TEMP objects (their file would sit in the
//! host's temp dir, outside `max_page_count`), and the deadline holds while a statement
//! is prepared (the authorizer, which SQLite calls for every table, column and function
//! it resolves, refuses once the deadline has passed or a statement has resolved too
//! much) as well as while it runs (the progress handler). SQLite's heap in the whole
//! process is capped at [`HEAP_LIMIT`] as the last line.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode as SqliteCode, OpenFlags};

use super::statement_budget::{self, Spent, StatementBudget};
use super::{DbBackend, DbRows, DbValue, StatementBounds, admit, plain_tenant};
use crate::error::BackendError;
use crate::error::{ErrorCode, PlinthError};
use crate::lock::Recover;

/// Pages a tenant's SQLite file may have (4 KiB each): 256 MiB.
const MAX_PAGES: i64 = 65_536;

/// The largest text or blob a tenant statement may make or read. With [`MAX_COLUMNS`]
/// it bounds what one result row costs the host before the result cap can be checked.
pub const MAX_VALUE_BYTES: i32 = 1 << 20;

/// Columns in a table, an index or a result row.
pub const MAX_COLUMNS: i32 = 100;

/// Operations in one prepared statement: widget queries need a few hundred; a statement
/// that expands (nested views) past this fails while it is being prepared.
pub const MAX_STATEMENT_OPS: i32 = 100_000;

/// Tables, columns and functions one statement may resolve while it is prepared. Nested
/// views multiply these; a statement past the cap is refused before it can run.
pub const MAX_RESOLUTIONS: u32 = 50_000;

/// SQLite's heap in the whole process (every tenant's page cache and statements, and
/// the server's own SQLite registry): past it an allocation fails with an error for the
/// statement that asked, never for the process.
pub const HEAP_LIMIT: i64 = 1 << 30;

/// Page cache per tenant connection, in KiB (SQLite's negative `cache_size`).
const CACHE_KIB: i64 = 1_024;

/// SQL functions a tenant statement may call: SQLite's core scalar, aggregate, window,
/// date and time, math and JSON functions. Not listed, so refused: `load_extension`,
/// `fts3_tokenizer` (takes a pointer from a bound parameter and returns host
/// addresses), the FTS3/FTS5 and R*Tree helpers, `sqlite_compileoption_*`,
/// `sqlite_version`, `sqlite_source_id` and SQLite's internal functions.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // JSON operators are functions named after them.
    "->",
    "->>",
    // ALTER TABLE's own helpers, which it calls through the authorizer. SQLite marks
    // them internal: a tenant statement naming them gets "no such function".
    "sqlite_drop_column",
    "sqlite_rename_column",
    "sqlite_rename_quotefix",
    "sqlite_rename_table",
    "sqlite_rename_test",
    // Core scalar functions.
    "abs",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "if",
    "ifnull",
    "iif",
    "instr",
    "last_insert_rowid",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "octet_length",
    "printf",
    "quote",
    "random",
    "randomblob",
    "replace",
    "round",
    "rtrim",
    "sign",
    "soundex",
    "substr",
    "substring",
    "total_changes",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unistr",
    "unistr_quote",
    "unlikely",
    "upper",
    "zeroblob",
    // Aggregates.
    "avg",
    "count",
    "group_concat",
    "median",
    "percentile",
    "percentile_cont",
    "percentile_disc",
    "string_agg",
    "sum",
    "total",
    // Window functions.
    "cume_dist",
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "nth_value",
    "ntile",
    "percent_rank",
    "rank",
    "row_number",
    // Date and time.
    "current_date",
    "current_time",
    "current_timestamp",
    "date",
    "datetime",
    "julianday",
    "strftime",
    "time",
    "timediff",
    "unixepoch",
    // Math.
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // JSON.
    "json",
    "json_array",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "json_group_array",
    "json_group_object",
    "json_insert",
    "json_object",
    "json_patch",
    "json_pretty",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_set",
    "json_type",
    "json_valid",
    "jsonb",
    "jsonb_array",
    "jsonb_extract",
    "jsonb_group_array",
    "jsonb_group_object",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_patch",
    "jsonb_remove",
    "jsonb_replace",
    "jsonb_set",
];

/// Table-valued functions (eponymous virtual tables) a tenant statement may read. Every
/// other module SQLite has compiled in (`dbstat`, FTS's and R*Tree's, and any later
/// one) is refused, and no virtual table can be created.
pub const ALLOWED_TABLE_FUNCTIONS: &[&str] =
    &["json_each", "json_tree", "jsonb_each", "jsonb_tree"];

/// PRAGMAs that only read the schema; every other PRAGMA is refused, and so are their
/// `pragma_*` table-valued forms but these.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "foreign_key_list",
];

/// Whether `name` is in `list`, ignoring ASCII case.
fn listed(list: &[&str], name: &str) -> bool {
    list.iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// What the authorizer and the progress handler share about the statement in progress.
struct StatementWatch {
    /// Deadline of the running statement, in ms since the Unix epoch; `u64::MAX` when
    /// no statement runs.
    deadline_ms: AtomicU64,
    /// Tables, columns and functions resolved while preparing the current statement.
    resolutions: AtomicU32,
    /// Set when the authorizer refused because the deadline had passed.
    overran: AtomicBool,
    /// Set when the authorizer refused because the statement resolved too much.
    too_complex: AtomicBool,
}

impl StatementWatch {
    fn begin(&self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        self.resolutions.store(0, Ordering::Relaxed);
        self.overran.store(false, Ordering::Relaxed);
        self.too_complex.store(false, Ordering::Relaxed);
        self.deadline_ms
            .store(now_ms() + left.as_millis() as u64, Ordering::Relaxed);
    }

    fn end(&self) {
        self.deadline_ms.store(u64::MAX, Ordering::Relaxed);
    }

    fn past_deadline(&self) -> bool {
        now_ms() > self.deadline_ms.load(Ordering::Relaxed)
    }

    /// The error for a refusal the watch caused, if it did.
    fn refusal(&self) -> Option<BackendError> {
        if self.overran.load(Ordering::Relaxed) {
            Some(BackendError::Timeout(
                "the statement's preparation ran past the call's deadline".into(),
            ))
        } else if self.too_complex.load(Ordering::Relaxed) {
            Some(BackendError::QuotaExceeded(format!(
                "the statement is too complex: it resolves more than {MAX_RESOLUTIONS} \
                 tables, columns and functions"
            )))
        } else {
            None
        }
    }
}

/// The authorizer of a tenant connection. `modules` are the virtual-table modules this
/// SQLite has, read before the authorizer was installed.
fn authorize(
    context: AuthContext<'_>,
    watch: &StatementWatch,
    modules: &HashSet<String>,
) -> Authorization {
    // Preparation runs no progress handler; this is where its deadline is kept.
    if watch.past_deadline() {
        watch.overran.store(true, Ordering::Relaxed);
        return Authorization::Deny;
    }
    if watch.resolutions.fetch_add(1, Ordering::Relaxed) >= MAX_RESOLUTIONS {
        watch.too_complex.store(true, Ordering::Relaxed);
        return Authorization::Deny;
    }
    let allowed = match context.action {
        AuthAction::Select | AuthAction::Recursive => true,
        AuthAction::Function { function_name } => listed(ALLOWED_FUNCTIONS, function_name),
        AuthAction::Pragma { pragma_name, .. } => listed(READ_ONLY_PRAGMAS, pragma_name),
        AuthAction::Read { table_name, .. } => {
            let lower = table_name.to_ascii_lowercase();
            if let Some(pragma) = lower.strip_prefix("pragma_") {
                listed(READ_ONLY_PRAGMAS, pragma)
            } else {
                !modules.contains(&lower) || listed(ALLOWED_TABLE_FUNCTIONS, &lower)
            }
        }
        // SQLite's own tables are SQLite's: a tenant reads them, never writes them. DDL
        // asks for a write to the schema table, which SQLite itself (defensive mode)
        // refuses to any direct statement.
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name } => {
            !is_sqlite_table(table_name) || listed(SCHEMA_TABLES, table_name)
        }
        // In `main` only: `CREATE TABLE temp.t` is a TEMP table that SQLite reports as
        // an ordinary one in the `temp` schema.
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateTrigger { .. } => context.database_name == Some("main"),
        AuthAction::DropTable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::AlterTable { .. }
        | AuthAction::Reindex { .. }
        | AuthAction::Analyze { .. } => true,
        // Refused: ATTACH and DETACH (other files); transactions and savepoints (the
        // host's: one left open would outlive the call on the shared connection); TEMP
        // objects (their file is outside the tenant's page cap); virtual tables; and
        // any action this list does not know.
        _ => false,
    };
    if allowed {
        Authorization::Allow
    } else {
        Authorization::Deny
    }
}

/// SQLite's tables that tenant statements make SQLite write: the schema tables (DDL;
/// `ALTER TABLE … RENAME` updates the temp schema's too) and `sqlite_sequence` (the
/// tenant's own AUTOINCREMENT counters, which a rename updates).
const SCHEMA_TABLES: &[&str] = &[
    "sqlite_master",
    "sqlite_schema",
    "sqlite_temp_master",
    "sqlite_temp_schema",
    "sqlite_sequence",
];

fn is_sqlite_table(name: &str) -> bool {
    name.len() >= 7 && name[..7].eq_ignore_ascii_case("sqlite_")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The embedded database: one SQLite file per tenant under a directory, confined by the
/// allow-lists above.
pub struct SqliteDb {
    dir: PathBuf,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

struct Tenant {
    connection: Mutex<Connection>,
    watch: Arc<StatementWatch>,
}

static HEAP: Once = Once::new();

impl SqliteDb {
    /// Opens (creating) the directory that holds the tenants' database files.
    pub fn open(dir: &Path) -> Result<Self, PlinthError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            PlinthError::new(
                ErrorCode::Internal,
                format!("cannot create database directory {}: {e}", dir.display()),
            )
        })?;
        statement_budget::install().map_err(|e| PlinthError::new(ErrorCode::Internal, e))?;
        HEAP.call_once(|| {
            // SAFETY: sets a process-wide number; SQLite allows it at any time.
            unsafe { rusqlite::ffi::sqlite3_hard_heap_limit64(HEAP_LIMIT) };
        });
        Ok(SqliteDb {
            dir: dir.to_owned(),
            tenants: Mutex::default(),
        })
    }

    /// The path of a tenant's database file. Tenant names are checked identifiers
    /// ([a-z0-9-]), so the path stays in `dir`.
    fn path(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.sqlite3"))
    }

    /// Removes a tenant's database file (with its WAL): offboarding. The connection is
    /// closed first; a statement in progress finishes on the unlinked file.
    pub fn drop_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        plain_tenant(tenant)?;
        self.tenants.lock().recover().remove(tenant);
        let path = self.path(tenant);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BackendError::Unavailable(format!(
                        "cannot remove {}: {e}",
                        file.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<Tenant>, BackendError> {
        let mut tenants = self.tenants.lock().recover();
        if let Some(found) = tenants.get(tenant) {
            return Ok(found.clone());
        }
        plain_tenant(tenant)?;
        let path = self.path(tenant);
        restrict_permissions(&path)?;
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        let watch = Arc::new(StatementWatch {
            deadline_ms: AtomicU64::new(u64::MAX),
            resolutions: AtomicU32::new(0),
            overran: AtomicBool::new(false),
            too_complex: AtomicBool::new(false),
        });
        confine(&connection, watch.clone())?;
        let found = Arc::new(Tenant {
            connection: Mutex::new(connection),
            watch,
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
            let connection = tenant.connection.lock().recover();
            if Instant::now() >= bounds.deadline {
                return Err(BackendError::Timeout("no time left in the call".into()));
            }
            tenant.watch.begin(bounds.deadline);
            let budget = StatementBudget::begin(bounds.deadline);
            let result = work(&connection);
            let spent = budget.finish();
            tenant.watch.end();
            result.map_err(|error| match spent {
                Some(Spent::Time) => {
                    BackendError::Timeout("the statement ran past the call's deadline".into())
                }
                Some(Spent::Memory) => BackendError::QuotaExceeded(format!(
                    "the statement needs more than {} MiB of memory",
                    statement_budget::STATEMENT_HEAP >> 20
                )),
                None => tenant.watch.refusal().unwrap_or(error),
            })
        })
        .await
        .map_err(|e| BackendError::Unavailable(format!("database worker failed: {e}")))?
    }
}

fn unavailable(e: rusqlite::Error) -> BackendError {
    BackendError::Unavailable(format!("tenant database: {e}"))
}

/// Data files are the tenant's: readable by the host's user only. The file is created
/// 0600 before SQLite opens it (SQLite's `-wal` and `-shm` files take its mode), and a
/// file from an earlier version is tightened.
fn restrict_permissions(path: &Path) -> Result<(), BackendError> {
    let failed = |e: std::io::Error| {
        BackendError::Unavailable(format!("tenant database {}: {e}", path.display()))
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path).map_err(failed)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
    }
    #[cfg(not(unix))]
    options.open(path).map_err(failed)?;
    Ok(())
}

/// Sets a fresh tenant connection's configuration, limits, authorizer and progress
/// handler. Everything here runs before the authorizer is installed.
fn confine(connection: &Connection, watch: Arc<StatementWatch>) -> Result<(), BackendError> {
    connection
        .busy_timeout(Duration::from_millis(250))
        .map_err(unavailable)?;
    for (setting, on) in [
        // Refuses writes that corrupt the file (writable_schema, shadow tables).
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        // Off: with it, fts3_tokenizer() takes a function pointer from SQL.
        (DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false),
        // Functions in views, triggers, defaults and checks must be harmless ones.
        (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
        (DbConfig::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false),
    ] {
        connection.set_db_config(setting, on).map_err(unavailable)?;
    }
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    // A tenant's file stops growing at 256 MiB: a write grant cannot fill the disk
    // every tenant shares.
    connection
        .pragma_update(None, "max_page_count", MAX_PAGES)
        .map_err(unavailable)?;
    connection
        .pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(unavailable)?;
    // Temporary b-trees (sorts, DISTINCT, GROUP BY, materialized subqueries) in memory,
    // where the statement budget counts them, not in files in the host's temp dir.
    connection
        .pragma_update(None, "temp_store", "MEMORY")
        .map_err(unavailable)?;
    for (limit, value) in [
        (Limit::SQLITE_LIMIT_ATTACHED, 0),
        (Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES),
        (Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000),
        (Limit::SQLITE_LIMIT_COLUMN, MAX_COLUMNS),
        (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
        (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50),
        (Limit::SQLITE_LIMIT_VDBE_OP, MAX_STATEMENT_OPS),
        (Limit::SQLITE_LIMIT_FUNCTION_ARG, 32),
        (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1_000),
        (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 999),
        (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10),
        (Limit::SQLITE_LIMIT_WORKER_THREADS, 0),
    ] {
        connection.set_limit(limit, value).map_err(unavailable)?;
    }
    let modules = connection
        .prepare("SELECT name FROM pragma_module_list")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .map(|name| name.map(|n| n.to_ascii_lowercase()))
                .collect::<Result<HashSet<String>, _>>()
        })
        .map_err(unavailable)?;
    // From here on the guest's statements are confined.
    let authorizing = watch.clone();
    connection.authorizer(Some(move |context: AuthContext<'_>| {
        authorize(context, &authorizing, &modules)
    }));
    connection.progress_handler(1_000, Some(move || watch.past_deadline()));
    Ok(())
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
        Some(SqliteCode::TooBig) => BackendError::QuotaExceeded(format!(
            "{error} (a value is at most {MAX_VALUE_BYTES} bytes)"
        )),
        // Past the operations limit (SQLite reports it as out of memory) or SQLite's
        // heap limit for the process.
        Some(SqliteCode::OutOfMemory) => BackendError::QuotaExceeded(format!(
            "the statement is too large: more than {MAX_STATEMENT_OPS} operations, or more \
             memory than SQLite may use"
        )),
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

/// Bytes a value will take in the result, read before it is copied.
fn ref_size(value: &ValueRef<'_>) -> usize {
    match value {
        ValueRef::Null => 1,
        ValueRef::Integer(_) | ValueRef::Real(_) => 8,
        ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
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
            bind(&mut statement, params)?;
            let mut rows = statement.raw_query();
            let (mut out, mut bytes) = (Vec::new(), 0usize);
            let over = || {
                BackendError::QuotaExceeded(format!(
                    "the query returns more than {} bytes",
                    bounds.max_bytes
                ))
            };
            while let Some(row) = rows.next().map_err(sql_error)? {
                // Each value's size is read from SQLite's own buffer before it is copied:
                // a row past the cap is refused with at most the cap copied.
                let mut row_bytes = 0usize;
                let mut values = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    let value = row.get_ref(i).map_err(sql_error)?;
                    row_bytes += ref_size(&value);
                    if bytes + row_bytes > bounds.max_bytes {
                        return Err(over());
                    }
                    values.push(from_sql(value));
                }
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
