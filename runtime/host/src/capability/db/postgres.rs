//! The PostgreSQL backend: one schema and one role per tenant. Each tenant's statements
//! run on a connection logged in as the tenant's role, with its own `search_path`, so
//! PostgreSQL's own privileges keep every other tenant's schema out of reach (`SET ROLE`,
//! `SET search_path` and qualified names all fail with "permission denied"). Every
//! statement runs in its own transaction (read-only for `query`) with a local
//! `statement_timeout` at the call's deadline, and a client-side timeout that cancels it.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls};

use super::{DbBackend, DbRows, DbValue, StatementBounds, admit, plain_tenant};
use crate::error::BackendError;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Extra time the client allows past the server-side timeout before cancelling.
const CLIENT_GRACE: Duration = Duration::from_millis(200);

struct TenantConnection {
    client: tokio::sync::Mutex<Client>,
}

pub struct PostgresDb {
    base: Config,
    admin: tokio::sync::Mutex<Option<Client>>,
    /// Whether this process has taken the catalog from tenants' sight ([`CATALOG_LOCKDOWN`]).
    locked_down: AtomicBool,
    tenants: tokio::sync::Mutex<HashMap<String, Arc<TenantConnection>>>,
}

/// The role and schema names of a tenant. Tenant names are `[a-z0-9-]`, so these are
/// plain identifiers once `-` becomes `_`.
pub fn tenant_names(tenant: &str) -> (String, String) {
    let plain = tenant.replace('-', "_");
    (format!("plinth_t_{plain}"), format!("t_{plain}"))
}

/// What a tenant role may see of the database beyond its own schema. PostgreSQL lets
/// every role (PUBLIC) read the system catalogs: other tenants' schema, role, table and
/// column names, view definitions and row counts. The tenants' database is Plinth's, so
/// PUBLIC loses: SELECT on every catalog table and view (`pg_namespace`, `pg_roles`,
/// `pg_class`, `pg_stat_user_tables`, `pg_tables`, …); EXECUTE on the functions that
/// answer another relation's definition, size or statistics by OID; and TEMPORARY, whose
/// tables would sit outside the tenant's schema. `information_schema` still works for a
/// tenant: it runs as its owner and shows only what the tenant has privileges on.
/// Needs a superuser (the catalogs' owner); otherwise Plinth warns once at the first
/// tenant and the catalog stays readable. What OID casts (`16384::regclass`) still
/// name is in docs/security.md.
const CATALOG_LOCKDOWN: &str = r"
DO $lockdown$
DECLARE f regprocedure;
BEGIN
  -- Concurrent changes to one ACL fail ('tuple concurrently updated'): one at a time,
  -- with the lock provisioning takes.
  PERFORM pg_advisory_xact_lock(hashtext('plinth-provision'));
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  REVOKE SELECT ON ALL TABLES IN SCHEMA pg_catalog FROM PUBLIC;
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace
      AND (p.proname LIKE 'pg\_stat\_get\_%'
           OR p.proname IN ('pg_get_viewdef', 'pg_get_functiondef', 'pg_get_triggerdef',
                            'pg_get_indexdef', 'pg_get_ruledef', 'pg_get_constraintdef',
                            'pg_get_partition_constraintdef', 'pg_get_partkeydef',
                            'pg_get_statisticsobjdef', 'pg_get_statisticsobjdef_columns',
                            'pg_get_function_arguments', 'pg_get_function_result',
                            'pg_get_function_identity_arguments', 'pg_get_serial_sequence',
                            'pg_describe_object', 'pg_identify_object',
                            'pg_identify_object_as_address', 'pg_lock_status',
                            'pg_get_userbyid', 'pg_relation_size', 'pg_table_size',
                            'pg_total_relation_size', 'pg_indexes_size',
                            'pg_relation_filepath', 'pg_relation_filenode'))
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END
$lockdown$";

fn unavailable(error: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("tenant database: {error}"))
}

fn sql_error(error: tokio_postgres::Error) -> BackendError {
    let Some(db) = error.as_db_error() else {
        if error.is_closed() {
            return unavailable(&error);
        }
        // Conversion errors (a value of an unsupported type) are the statement's fault.
        let cause = error
            .source()
            .map_or_else(|| error.to_string(), |s| s.to_string());
        return BackendError::InvalidInput(cause);
    };
    let message = db.message().to_owned();
    match *db.code() {
        SqlState::INSUFFICIENT_PRIVILEGE => BackendError::Denied(message),
        SqlState::QUERY_CANCELED => {
            BackendError::Timeout("the statement ran past the call's deadline".into())
        }
        SqlState::READ_ONLY_SQL_TRANSACTION => BackendError::InvalidInput(
            "query runs read statements only; use execute to write".into(),
        ),
        SqlState::TOO_MANY_CONNECTIONS
        | SqlState::ADMIN_SHUTDOWN
        | SqlState::CANNOT_CONNECT_NOW => BackendError::Unavailable(message),
        SqlState::T_R_SERIALIZATION_FAILURE
        | SqlState::T_R_DEADLOCK_DETECTED
        | SqlState::LOCK_NOT_AVAILABLE => BackendError::Busy(format!("{message}; retry later")),
        _ => BackendError::InvalidInput(message),
    }
}

impl PostgresDb {
    /// A backend on the PostgreSQL at `url` (`postgresql://user@127.0.0.1:5432/db`); the
    /// URL's user provisions tenants' roles and schemas and needs CREATEROLE. Connects
    /// lazily.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        let base: Config = url
            .parse()
            .map_err(|e| BackendError::InvalidInput(format!("postgres URL: {e}")))?;
        Ok(PostgresDb {
            base,
            admin: tokio::sync::Mutex::new(None),
            locked_down: AtomicBool::new(false),
            tenants: tokio::sync::Mutex::default(),
        })
    }

    async fn connect(config: &Config) -> Result<Client, BackendError> {
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(2), config.connect(NoTls))
                .await
                .map_err(|_| unavailable("connecting timed out"))?
                .map_err(unavailable)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Creates the tenant's role (login, no other privilege) and schema if missing, and
    /// gives the role a fresh random password this process logs in with.
    async fn provision(&self, tenant: &str) -> Result<String, BackendError> {
        let (role, schema) = tenant_names(tenant);
        let mut password = [0u8; 24];
        getrandom::fill(&mut password).map_err(unavailable)?;
        let password = hex::encode(password);
        let mut admin = self.admin.lock().await;
        if admin.as_ref().is_none_or(Client::is_closed) {
            *admin = Some(Self::connect(&self.base).await?);
        }
        let admin = admin.as_mut().expect("connected above");
        if !self.locked_down.load(Ordering::Relaxed) {
            Self::lock_down(admin).await?;
            self.locked_down.store(true, Ordering::Relaxed);
        }
        let transaction = admin.transaction().await.map_err(sql_error)?;
        // Serialises provisioning across nodes: CREATE ROLE has no IF NOT EXISTS.
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('plinth-provision'))",
                &[],
            )
            .await
            .map_err(sql_error)?;
        let exists = transaction
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(sql_error)?
            .is_some();
        let create = if exists { "ALTER" } else { "CREATE" };
        // Identifiers and the password are [a-z0-9_] only: nothing to escape.
        transaction
            .batch_execute(&format!(
                "{create} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
                 NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 20 PASSWORD '{password}';
                 CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role};
                 ALTER ROLE {role} SET search_path = {schema};"
            ))
            .await
            .map_err(sql_error)?;
        transaction.commit().await.map_err(sql_error)?;
        Ok(password)
    }

    /// Takes the catalog from tenants' sight ([`CATALOG_LOCKDOWN`]), once per process:
    /// the statements are idempotent, and a new node repeats them harmlessly.
    async fn lock_down(admin: &Client) -> Result<(), BackendError> {
        if let Err(error) = admin.batch_execute(CATALOG_LOCKDOWN).await {
            tracing::warn!(%error, "cannot hide the PostgreSQL catalog from tenants; \
                connect as a superuser (see docs/security.md)");
            return Ok(());
        }
        let still_public: bool = admin
            .query_one(
                "SELECT has_table_privilege('public', 'pg_catalog.pg_class', 'SELECT')",
                &[],
            )
            .await
            .map_err(sql_error)?
            .get(0);
        if still_public {
            tracing::warn!(
                "the PostgreSQL catalog stays readable by tenants: the database user is \
                 not a superuser (see docs/security.md)"
            );
        }
        Ok(())
    }

    /// Removes a tenant's schema (with everything in it) and role: offboarding.
    pub async fn drop_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        // The names go into SQL unquoted: plain identifiers only.
        plain_tenant(tenant)?;
        // Closing the tenant's connection first: a role with a session cannot be dropped.
        self.tenants.lock().await.remove(tenant);
        let (role, schema) = tenant_names(tenant);
        let mut admin = self.admin.lock().await;
        if admin.as_ref().is_none_or(Client::is_closed) {
            *admin = Some(Self::connect(&self.base).await?);
        }
        let admin = admin.as_mut().expect("connected above");
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';
                 DROP SCHEMA IF EXISTS {schema} CASCADE;
                 DROP ROLE IF EXISTS {role};"
            ))
            .await
            .map_err(sql_error)
    }

    async fn tenant(&self, tenant: &str) -> Result<Arc<TenantConnection>, BackendError> {
        plain_tenant(tenant)?;
        let mut tenants = self.tenants.lock().await;
        // Never wait on a tenant's connection while holding the map: a long statement of
        // one tenant would block every other tenant's lookup. A connection in use is open.
        if let Some(found) = tenants.get(tenant)
            && found
                .client
                .try_lock()
                .map_or(true, |client| !client.is_closed())
        {
            return Ok(found.clone());
        }
        let password = self.provision(tenant).await?;
        let (role, schema) = tenant_names(tenant);
        let mut config = self.base.clone();
        config
            .user(&role)
            .password(password)
            .options(format!("-c search_path={schema}"))
            .application_name("plinth-tenant");
        let client = Self::connect(&config).await?;
        let found = Arc::new(TenantConnection {
            client: tokio::sync::Mutex::new(client),
        });
        tenants.insert(tenant.to_owned(), found.clone());
        Ok(found)
    }

    async fn run<T>(
        &self,
        tenant: &str,
        bounds: StatementBounds,
        read_only: bool,
        work: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let connection = self.tenant(tenant).await?;
        let mut client = connection.client.lock().await;
        let cancel = client.cancel_token();
        let left = bounds.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BackendError::Timeout("no time left in the call".into()));
        }
        let statement = async {
            let transaction = client
                .build_transaction()
                .read_only(read_only)
                .start()
                .await
                .map_err(sql_error)?;
            // Set inside the transaction: whatever the guest SET before is overridden.
            transaction
                .batch_execute(&format!(
                    "SET LOCAL statement_timeout = {}",
                    left.as_millis().max(1)
                ))
                .await
                .map_err(sql_error)?;
            let result = work(&transaction).await?;
            transaction.commit().await.map_err(sql_error)?;
            Ok(result)
        };
        match tokio::time::timeout(left + CLIENT_GRACE, statement).await {
            Ok(result) => result,
            Err(_) => {
                let _ = cancel.cancel_query(NoTls).await;
                Err(BackendError::Timeout(
                    "the statement ran past the call's deadline".into(),
                ))
            }
        }
    }
}

/// Any column value, decoded by its type.
struct Cell(DbValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let text = |bytes: &[u8]| {
            Ok::<_, Box<dyn StdError + Sync + Send>>(DbValue::Text(
                std::str::from_utf8(bytes)?.to_owned(),
            ))
        };
        Ok(Cell(match *ty {
            Type::BOOL => DbValue::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::INT2 => DbValue::Integer(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => DbValue::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => DbValue::Integer(i64::from_sql(ty, raw)?),
            Type::OID => DbValue::Integer(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => DbValue::Real(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => DbValue::Real(f64::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
                text(raw)?
            }
            Type::JSONB => text(raw.get(1..).ok_or("empty jsonb")?)?,
            Type::BYTEA => DbValue::Blob(raw.to_vec()),
            // Timestamps as milliseconds since the Unix epoch.
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                DbValue::Integer((i64::from_sql(&Type::INT8, raw)? + PG_EPOCH_US).div_euclid(1_000))
            }
            Type::DATE => {
                let days = i64::from(i32::from_sql(&Type::INT4, raw)?);
                DbValue::Integer(days * 86_400_000 + PG_EPOCH_US / 1_000)
            }
            Type::UUID => {
                let hex = hex::encode(raw);
                if hex.len() != 32 {
                    return Err("malformed uuid".into());
                }
                DbValue::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                ))
            }
            ref other => {
                return Err(format!("columns of type {other} are not supported; cast them in SQL (e.g. ::text or ::float8)").into());
            }
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Cell(DbValue::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl ToSql for DbValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let mismatch = || -> Box<dyn StdError + Sync + Send> {
            format!("a parameter of type {ty} cannot take {self:?}; cast it in SQL (e.g. $1::text)")
                .into()
        };
        match (self, ty) {
            (DbValue::Null, _) => return Ok(IsNull::Yes),
            (DbValue::Integer(n), &Type::INT2) => i16::try_from(*n)?.to_sql(ty, out)?,
            (DbValue::Integer(n), &Type::INT4) => i32::try_from(*n)?.to_sql(ty, out)?,
            (DbValue::Integer(n), &Type::INT8) => n.to_sql(ty, out)?,
            (DbValue::Integer(n), &Type::FLOAT4) => (*n as f32).to_sql(ty, out)?,
            (DbValue::Integer(n), &Type::FLOAT8) => (*n as f64).to_sql(ty, out)?,
            (DbValue::Integer(n), &Type::BOOL) => (*n != 0).to_sql(ty, out)?,
            (DbValue::Integer(ms), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                (ms.checked_mul(1_000).ok_or_else(mismatch)? - PG_EPOCH_US)
                    .to_sql(&Type::INT8, out)?
            }
            (DbValue::Integer(n), &Type::TEXT | &Type::VARCHAR) => {
                n.to_string().as_str().to_sql(ty, out)?
            }
            (DbValue::Real(n), &Type::FLOAT4) => (*n as f32).to_sql(ty, out)?,
            (DbValue::Real(n), &Type::FLOAT8) => n.to_sql(ty, out)?,
            (DbValue::Real(n), &Type::TEXT | &Type::VARCHAR) => {
                n.to_string().as_str().to_sql(ty, out)?
            }
            (
                DbValue::Text(t),
                &Type::TEXT
                | &Type::VARCHAR
                | &Type::BPCHAR
                | &Type::NAME
                | &Type::UNKNOWN
                | &Type::JSON,
            ) => {
                out.put_slice(t.as_bytes());
                IsNull::No
            }
            (DbValue::Text(t), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(t.as_bytes());
                IsNull::No
            }
            (DbValue::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out)?,
            _ => return Err(mismatch()),
        };
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[async_trait]
impl DbBackend for PostgresDb {
    async fn query(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<DbValue>,
        bounds: StatementBounds,
    ) -> Result<DbRows, BackendError> {
        self.run(tenant, bounds, true, async move |transaction| {
            let statement = transaction.prepare(sql).await.map_err(sql_error)?;
            let columns: Vec<String> = statement
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
            let stream = transaction
                .query_raw(&statement, params.iter())
                .await
                .map_err(sql_error)?;
            pin_mut!(stream);
            let (mut rows, mut bytes) = (Vec::new(), 0usize);
            while let Some(row) = stream.next().await {
                let row = row.map_err(sql_error)?;
                let values = (0..columns.len())
                    .map(|i| row.try_get::<_, Cell>(i).map(|cell| cell.0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error)?;
                admit(&mut rows, &mut bytes, values, &bounds)?;
            }
            Ok(DbRows { columns, rows })
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
        self.run(tenant, bounds, false, async move |transaction| {
            let statement = transaction.prepare(sql).await.map_err(sql_error)?;
            transaction
                .execute_raw(&statement, params.iter())
                .await
                .map_err(sql_error)
        })
        .await
    }
}
