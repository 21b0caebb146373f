//! Where the registry keeps its metadata: one small SQL interface with an embedded
//! SQLite backend and a PostgreSQL backend shared by every node. The registry writes
//! its SQL once, in the subset both speak (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING`); only column types differ, and the schema names them per dialect.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use plinth_host::lock::Recover;
use plinth_host::{ErrorCode, PlinthError};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A value in or out of the metadata database.
#[derive(Debug, Clone, PartialEq)]
pub enum Sql {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Sql {
    pub fn text(&self) -> Option<&str> {
        match self {
            Sql::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Sql::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for Sql {
    fn from(value: &str) -> Self {
        Sql::Text(value.to_owned())
    }
}

impl From<String> for Sql {
    fn from(value: String) -> Self {
        Sql::Text(value)
    }
}

impl From<i64> for Sql {
    fn from(value: i64) -> Self {
        Sql::Int(value)
    }
}

impl<T: Into<Sql>> From<Option<T>> for Sql {
    fn from(value: Option<T>) -> Self {
        value.map_or(Sql::Null, Into::into)
    }
}

pub type Row = Vec<Sql>;

/// The metadata database.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// Runs a statement that returns rows.
    async fn query(&self, sql: &str, params: Vec<Sql>) -> Result<Vec<Row>, PlinthError>;
    /// Runs a statement; the number of rows it changed.
    async fn execute(&self, sql: &str, params: Vec<Sql>) -> Result<u64, PlinthError>;
    /// Runs the schema script (statements separated by `;`).
    async fn migrate(&self, script: &str) -> Result<(), PlinthError>;
    /// The name of the type for binary columns.
    fn blob_type(&self) -> &'static str;
    /// Whether several nodes may share this store.
    fn shared(&self) -> bool;
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> PlinthError {
    PlinthError::new(
        ErrorCode::Unavailable,
        format!("metadata database ({what}): {error}"),
    )
}

/// `data_dir/metadata.sqlite3`, WAL mode, one connection.
pub struct SqliteStore {
    connection: Arc<Mutex<rusqlite::Connection>>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, PlinthError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| unavailable("create directory", e))?;
        }
        // SQLite's allocator carries the tenant statements' budgets; it must be set before
        // the first connection of the process, this one included.
        plinth_host::capability::db::statement_budget::install()
            .map_err(|e| PlinthError::new(ErrorCode::Internal, e))?;
        let connection = rusqlite::Connection::open(path).map_err(|e| unavailable("open", e))?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|e| unavailable("configure", e))?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| unavailable("configure", e))?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, PlinthError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().recover();
            work(&connection)
        })
        .await
        .map_err(|e| unavailable("worker", e))?
        .map_err(|e| unavailable("sqlite", e))
    }
}

fn bind_sqlite(statement: &mut rusqlite::Statement<'_>, params: &[Sql]) -> rusqlite::Result<()> {
    for (i, value) in params.iter().enumerate() {
        // `$N` parameters are named ones to SQLite, numbered by first appearance; look
        // each up by name so the registry may use them in any order.
        let Some(index) = statement.parameter_index(&format!("${}", i + 1))? else {
            continue;
        };
        match value {
            Sql::Null => statement.raw_bind_parameter(index, rusqlite::types::Null)?,
            Sql::Int(v) => statement.raw_bind_parameter(index, v)?,
            Sql::Text(v) => statement.raw_bind_parameter(index, v)?,
            Sql::Blob(v) => statement.raw_bind_parameter(index, v)?,
        }
    }
    Ok(())
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn query(&self, sql: &str, params: Vec<Sql>) -> Result<Vec<Row>, PlinthError> {
        let sql = sql.to_owned();
        self.with(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            bind_sqlite(&mut statement, &params)?;
            let columns = statement.column_count();
            let mut rows = statement.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    values.push(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Sql::Null,
                        rusqlite::types::ValueRef::Integer(v) => Sql::Int(v),
                        rusqlite::types::ValueRef::Real(v) => Sql::Int(v as i64),
                        rusqlite::types::ValueRef::Text(v) => {
                            Sql::Text(String::from_utf8_lossy(v).into_owned())
                        }
                        rusqlite::types::ValueRef::Blob(v) => Sql::Blob(v.to_vec()),
                    });
                }
                out.push(values);
            }
            Ok(out)
        })
        .await
    }

    async fn execute(&self, sql: &str, params: Vec<Sql>) -> Result<u64, PlinthError> {
        let sql = sql.to_owned();
        self.with(move |c| {
            let mut statement = c.prepare_cached(&sql)?;
            bind_sqlite(&mut statement, &params)?;
            Ok(statement.raw_execute()? as u64)
        })
        .await
    }

    async fn migrate(&self, script: &str) -> Result<(), PlinthError> {
        let script = script.to_owned();
        self.with(move |c| c.execute_batch(&script)).await
    }

    fn blob_type(&self) -> &'static str {
        "BLOB"
    }

    fn shared(&self) -> bool {
        false
    }
}

/// PostgreSQL: one pipelined client, reconnected when it drops. Tables live in their own
/// schema so the metadata never mixes with tenants' schemas.
pub struct PostgresStore {
    config: tokio_postgres::Config,
    schema: String,
    client: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
}

/// A NULL that PostgreSQL accepts for a parameter of any type.
#[derive(Debug)]
struct AnyNull;

impl ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl PostgresStore {
    pub fn new(url: &str, schema: &str) -> Result<Self, PlinthError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(PlinthError::new(
                ErrorCode::InvalidRequest,
                format!("metadata schema {schema:?}: use [a-z0-9_]"),
            ));
        }
        let config = url.parse().map_err(|e| {
            PlinthError::new(ErrorCode::InvalidRequest, format!("postgres url: {e}"))
        })?;
        Ok(PostgresStore {
            config,
            schema: schema.to_owned(),
            client: tokio::sync::Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<Arc<tokio_postgres::Client>, PlinthError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(3),
            self.config.connect(tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| unavailable("connect", "timed out"))?
        .map_err(|e| unavailable("connect", e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "metadata connection ended");
            }
        });
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {0}; SET search_path TO {0}",
                self.schema
            ))
            .await
            .or_else(|e| {
                // Two nodes creating the schema at once: one loses the race, harmlessly.
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| unavailable("schema", e))?;
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await
            .map_err(|e| unavailable("schema", e))?;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    fn refs(boxed: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
        boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    fn params(params: &[Sql]) -> Vec<Box<dyn ToSql + Sync + Send>> {
        params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Sql::Null => Box::new(AnyNull),
                    Sql::Int(v) => Box::new(*v),
                    Sql::Text(v) => Box::new(v.clone()),
                    Sql::Blob(v) => Box::new(v.clone()),
                }
            })
            .collect()
    }
}

fn pg_error(error: tokio_postgres::Error) -> PlinthError {
    if error.is_closed() || error.as_db_error().is_none() {
        unavailable("postgres", error)
    } else {
        PlinthError::new(ErrorCode::Internal, format!("metadata database: {error}"))
    }
}

#[async_trait]
impl MetaStore for PostgresStore {
    async fn query(&self, sql: &str, params: Vec<Sql>) -> Result<Vec<Row>, PlinthError> {
        let client = self.client().await?;
        let boxed = Self::params(&params);
        let refs = Self::refs(&boxed);
        let rows = client.query(sql, &refs).await.map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let ty = row.columns()[i].type_();
                        let value = if *ty == Type::INT8 {
                            row.try_get::<_, Option<i64>>(i).map(Sql::from)
                        } else if *ty == Type::INT4 {
                            row.try_get::<_, Option<i32>>(i)
                                .map(|v| Sql::from(v.map(i64::from)))
                        } else if *ty == Type::BYTEA {
                            row.try_get::<_, Option<Vec<u8>>>(i)
                                .map(|v| v.map_or(Sql::Null, Sql::Blob))
                        } else {
                            row.try_get::<_, Option<String>>(i).map(Sql::from)
                        };
                        value.map_err(pg_error)
                    })
                    .collect()
            })
            .collect()
    }

    async fn execute(&self, sql: &str, params: Vec<Sql>) -> Result<u64, PlinthError> {
        let client = self.client().await?;
        let boxed = Self::params(&params);
        let refs = Self::refs(&boxed);
        client.execute(sql, &refs).await.map_err(pg_error)
    }

    async fn migrate(&self, script: &str) -> Result<(), PlinthError> {
        let client = self.client().await?;
        // Nodes starting together take turns at the schema.
        let script = format!(
            "SELECT pg_advisory_lock(7405213); {script}; SELECT pg_advisory_unlock(7405213);"
        );
        client.batch_execute(&script).await.map_err(pg_error)
    }

    fn blob_type(&self) -> &'static str {
        "BYTEA"
    }

    fn shared(&self) -> bool {
        true
    }
}
