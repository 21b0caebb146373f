//! What the server does, independent of HTTP: uploads, installs and upgrades, calls
//! into installations with their grants and limits, usage receipts, the circuit breaker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plinth_host::{
    Backends, Call, CallReport, ErrorCode, Extension, Grants, Invocation, Limits, PlinthError,
    Receipt, Sandbox, SandboxConfig, Scope, component_hash,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::config::{MetadataConfig, ServerConfig};
use crate::metrics::Metrics;
use crate::registry::{ComponentVersion, Installation, Registry, Tenant, check_id, now_ms};
use crate::store::{MetaStore, PostgresStore, SqliteStore};
use plinth_host::capability::db::SqliteDb;
use plinth_host::capability::db::postgres::PostgresDb;

/// The tenants' databases, by kind: what deleting a tenant has to drop.
enum TenantDatabases {
    Sqlite(Arc<SqliteDb>),
    Postgres(Arc<PostgresDb>),
}

/// Receipts and errors kept per installation for the API.
const RECENT: usize = 100;

/// How long a node trusts its copy of an installation. Changes made on this node are
/// seen at once; changes made on another node within this time.
const INSTALLATION_MEMORY: Duration = Duration::from_secs(1);

/// Scope under which `describe` runs at upload.
const UPLOAD_SCOPE: &str = "upload";

/// A failure recorded for an installation.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRecord {
    pub at_ms: i64,
    pub call: &'static str,
    pub code: ErrorCode,
    pub message: String,
}

/// What an upload answers.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    #[serde(flatten)]
    pub component: ComponentVersion,
    pub capabilities: Vec<String>,
    pub imports: Vec<String>,
    /// How long this node took to load the component the first time. The same for
    /// every upload of the same bytes, so a tenant cannot tell from it whether another
    /// tenant uploaded them before (the compile cache is shared).
    pub compiled_ms: u64,
}

/// The body of an install request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    pub id: String,
    /// SHA-256 of an uploaded component.
    pub component: String,
    #[serde(default)]
    pub config: Option<Value>,
    /// Capabilities granted: `"cache,db,broadcast"` or a list. None is granted by default.
    #[serde(default)]
    pub grants: Option<GrantList>,
    /// Limits to lower (`{"fuel": "100000000", "timeout": "500ms"}`).
    #[serde(default)]
    pub limits: HashMap<String, Value>,
    /// Tick interval; the extension's `refresh-interval-ms` when absent, none when 0.
    #[serde(default)]
    pub tick_interval_ms: Option<u64>,
}

/// Grants as a comma-separated string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum GrantList {
    Text(String),
    List(Vec<String>),
}

impl GrantList {
    fn text(&self) -> String {
        match self {
            GrantList::Text(t) => t.clone(),
            GrantList::List(l) => l.join(","),
        }
    }
}

/// The body of an upgrade request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    pub component: String,
    /// The grants after the upgrade; the current ones when absent.
    #[serde(default)]
    pub grants: Option<GrantList>,
    /// A new config; the current one when absent.
    #[serde(default)]
    pub config: Option<Value>,
    /// Only report the permission diff.
    #[serde(default)]
    pub dry_run: bool,
}

/// What an upgrade changes in permissions.
#[derive(Debug, Clone, Serialize)]
pub struct PermissionDiff {
    pub from: String,
    pub to: String,
    pub added_capabilities: Vec<String>,
    pub removed_capabilities: Vec<String>,
    pub grants: String,
    pub applied: bool,
}

pub struct App {
    pub config: ServerConfig,
    pub node_id: String,
    pub sandbox: Arc<Sandbox>,
    pub registry: Registry,
    pub metrics: Metrics,
    extensions: Mutex<HashMap<String, Arc<Extension>>>,
    compile_slots: Arc<Semaphore>,
    upload_slots: Slots,
    body_slots: Slots,
    receipts: Mutex<HashMap<(String, String), VecDeque<Receipt>>>,
    errors: Mutex<HashMap<(String, String), VecDeque<ErrorRecord>>>,
    failures: Mutex<HashMap<(String, String), u32>>,
    /// Installations read recently, so a render does not wait on the metadata database.
    installations: Mutex<HashMap<(String, String), (Instant, Installation)>>,
    labels: Mutex<HashMap<String, Arc<str>>>,
    /// Woken when installations change, so the scheduler reloads at once.
    pub schedule_changed: Notify,
    pub hub: crate::ws::Hub,
    tenant_databases: TenantDatabases,
    pub started: Instant,
}

fn invalid(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::InvalidRequest, message)
}

impl App {
    pub async fn new(config: ServerConfig) -> Result<Arc<Self>, PlinthError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            PlinthError::new(
                ErrorCode::Internal,
                format!("cannot create {}: {e}", config.data_dir.display()),
            )
        })?;
        let store: Arc<dyn MetaStore> = match &config.metadata {
            MetadataConfig::Sqlite => Arc::new(SqliteStore::open(
                &config.data_dir.join("metadata.sqlite3"),
            )?),
            MetadataConfig::Postgres { url, schema } => Arc::new(PostgresStore::new(url, schema)?),
        };
        let registry = Registry::open(store).await?;
        let mut backends = Backends::from_config(&config.backends, &config.data_dir)?;
        // The tenants' databases as their own type as well, so a deleted tenant's file or
        // schema can be dropped; the sandbox gets the same instance.
        let tenant_databases = match &config.backends.db {
            plinth_host::DbConfig::Sqlite => {
                let db = Arc::new(SqliteDb::open(&config.data_dir.join("db"))?);
                backends.db = db.clone();
                TenantDatabases::Sqlite(db)
            }
            plinth_host::DbConfig::Postgres { url } => {
                let db = Arc::new(
                    PostgresDb::new(url)
                        .map_err(|e| PlinthError::new(ErrorCode::InvalidRequest, e.to_string()))?,
                );
                backends.db = db.clone();
                TenantDatabases::Postgres(db)
            }
        };
        let sandbox = Sandbox::new(
            SandboxConfig {
                cache_dir: Some(config.data_dir.join("compiled")),
                pool_instances: config.pool_instances,
                tenant_quota: config.tenant_quota.clone(),
                ..SandboxConfig::default()
            },
            backends,
        )?;
        for tenant in registry.tenants().await? {
            sandbox
                .tenant_quotas()
                .set(&tenant.id, tenant.quota.clone());
        }
        let node_id = if config.node_id.is_empty() {
            let mut id = [0u8; 4];
            getrandom::fill(&mut id)
                .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))?;
            format!("node-{}", hex::encode(id))
        } else {
            config.node_id.clone()
        };
        Ok(Arc::new(App {
            compile_slots: Arc::new(Semaphore::new(config.http.compile_slots)),
            upload_slots: Slots::new(
                "uploads",
                config.http.upload_slots,
                config.http.upload_slots_per_tenant,
            ),
            body_slots: Slots::new(
                "request bodies",
                config.http.body_slots,
                config.http.body_slots_per_token,
            ),
            config,
            node_id,
            sandbox: Arc::new(sandbox),
            registry,
            metrics: Metrics::default(),
            extensions: Mutex::default(),
            receipts: Mutex::default(),
            errors: Mutex::default(),
            failures: Mutex::default(),
            installations: Mutex::default(),
            labels: Mutex::default(),
            schedule_changed: Notify::new(),
            hub: crate::ws::Hub::default(),
            tenant_databases,
            started: Instant::now(),
        }))
    }

    pub fn backends(&self) -> &Backends {
        self.sandbox.backends()
    }

    /// An installation as calls see it: from memory when read within
    /// [`INSTALLATION_MEMORY`], else from the registry.
    pub async fn installation(&self, tenant: &str, id: &str) -> Result<Installation, PlinthError> {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some((at, found)) = self
            .installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < INSTALLATION_MEMORY
        {
            return Ok(found.clone());
        }
        let found = self.registry.installation(tenant, id).await?;
        let mut memory = self.installations.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() > 100_000 {
            memory.clear();
        }
        memory.insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Forgets the remembered copy of an installation after changing it.
    fn changed(&self, tenant: &str, id: &str) {
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), id.to_owned()));
        self.schedule_changed.notify_one();
    }

    /// A place for one upload of `tenant` being received, taken before its body is read:
    /// at most `http.upload_slots` bodies on the node and `upload_slots_per_tenant` of
    /// one tenant are held at once. None free is `RATE_LIMITED`.
    pub fn upload_slot(&self, tenant: &str) -> Result<Slot, PlinthError> {
        self.upload_slots.take("tenant", tenant)
    }

    /// A place for one JSON body being received for the token `token_id`, taken before
    /// it is read: at most `http.body_slots` on the node and `body_slots_per_token` for
    /// one token, so authorized clients cannot make the node hold bodies without bound.
    pub fn body_slot(&self, token_id: &str) -> Result<Slot, PlinthError> {
        self.body_slots.take("token", token_id)
    }

    /// Compiles on a blocking thread, one of a bounded number at a time, with a timeout.
    /// The compilation goes on after a timeout (Cranelift cannot be interrupted), still
    /// holding its slot, so timed-out uploads cannot pile up compilations either.
    async fn compile(&self, bytes: Arc<Vec<u8>>) -> Result<Arc<Extension>, PlinthError> {
        let permit = self
            .compile_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                PlinthError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{} components are being compiled already; try again shortly",
                        self.config.http.compile_slots
                    ),
                )
            })?;
        let sandbox = self.sandbox.clone();
        self.metrics
            .compiles_running
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let metrics_guard = CompileGauge(self);
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            sandbox.load(&bytes)
        });
        let result = tokio::time::timeout(self.config.http.compile_timeout, work).await;
        drop(metrics_guard);
        match result {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(join)) => Err(PlinthError::new(
                ErrorCode::Internal,
                format!("compilation failed: {join}"),
            )),
            Err(_) => Err(PlinthError::new(
                ErrorCode::CompileTimeout,
                format!(
                    "compiling took longer than {} ms",
                    self.config.http.compile_timeout.as_millis()
                ),
            )),
        }
    }

    /// Uploads a component for `tenant`: compiles it, asks it to describe itself, keeps
    /// the bytes content-addressed and records the version.
    pub async fn upload(&self, tenant: &str, bytes: Vec<u8>) -> Result<Uploaded, PlinthError> {
        self.registry.tenant(tenant).await?;
        let hash = component_hash(&bytes);
        let size = bytes.len() as i64;
        let bytes = Arc::new(bytes);
        let extension = self.compile(bytes.clone()).await?;
        // Not the time this upload waited: a hit in the shared compile cache would tell
        // that someone uploaded these bytes before.
        let compiled_ms = extension.load_time.as_millis() as u64;
        let invocation = Invocation {
            scope: Scope::new(tenant, UPLOAD_SCOPE)?,
            grants: Grants::none(),
            limits: self.config.default_limits.clone(),
        };
        let report = self
            .sandbox
            .call(&extension, &invocation, Call::Describe)
            .await;
        let descriptor = report.outcome.map_err(|e| {
            PlinthError::new(
                e.code,
                format!("describe() failed at upload: {}", e.message),
            )
        })?;
        let extension_id = descriptor["id"].as_str().unwrap_or_default().to_owned();
        check_id("extension id", &extension_id)?;
        if let Some(schema) = descriptor.get("config_schema") {
            jsonschema::validator_for(schema).map_err(|e| {
                PlinthError::new(
                    ErrorCode::InvalidComponent,
                    format!("{extension_id}: its config schema is not a valid JSON Schema: {e}"),
                )
            })?;
        }
        let version = ComponentVersion {
            hash: hash.clone(),
            extension: extension_id,
            version: descriptor["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            world: serde_json::to_value(extension.world)
                .ok()
                .and_then(|w| w.as_str().map(str::to_owned))
                .unwrap_or_default(),
            descriptor,
            size,
            uploaded_ms: now_ms(),
        };
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone());
        self.registry.put_component(tenant, &version, bytes).await?;
        self.extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, extension.clone());
        Ok(Uploaded {
            component: version,
            capabilities: extension
                .capabilities()
                .iter()
                .map(|c| c.to_string())
                .collect(),
            imports: extension.imports.iter().map(|i| i.name.clone()).collect(),
            compiled_ms,
        })
    }

    /// The loaded extension of a stored component; compiled (or read from the compile
    /// cache) on first use on this node.
    pub async fn extension(&self, hash: &str) -> Result<Arc<Extension>, PlinthError> {
        if let Some(found) = self
            .extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
        {
            return Ok(found.clone());
        }
        let bytes = self.registry.blob(hash).await?;
        let sandbox = self.sandbox.clone();
        let extension = tokio::task::spawn_blocking(move || sandbox.load(&bytes))
            .await
            .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))??;
        self.extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash.to_owned(), extension.clone());
        Ok(extension)
    }

    /// Limits from the server's defaults with the installation's changes; a tenant may
    /// only lower them (`may_raise` for operators).
    fn limits(
        &self,
        changes: &HashMap<String, Value>,
        may_raise: bool,
    ) -> Result<Limits, PlinthError> {
        let ceiling = &self.config.default_limits;
        let mut limits = ceiling.clone();
        for (key, value) in changes {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(invalid(format!("limit {key}: {other} is not a value"))),
            };
            limits.set(key, &value)?;
        }
        limits.validate()?;
        if !may_raise {
            let (now, max) = (
                serde_json::to_value(&limits).unwrap_or_default(),
                serde_json::to_value(ceiling).unwrap_or_default(),
            );
            for (key, ceiling_value) in max.as_object().into_iter().flatten() {
                let above = match (now.get(key), ceiling_value) {
                    (Some(Value::Number(a)), Value::Number(b)) => {
                        a.as_f64().unwrap_or(0.0) > b.as_f64().unwrap_or(0.0)
                    }
                    (Some(Value::Null), Value::Number(_)) => true,
                    _ => false,
                };
                if above {
                    return Err(PlinthError::new(
                        ErrorCode::Forbidden,
                        format!(
                            "limit {key} may not be raised above the server's {ceiling_value}; \
                             ask an operator"
                        ),
                    ));
                }
            }
        }
        Ok(limits)
    }

    fn validate_config(
        &self,
        version: &ComponentVersion,
        config: &Value,
    ) -> Result<(), PlinthError> {
        if !config.is_object() {
            return Err(PlinthError::new(
                ErrorCode::InvalidConfig,
                "an installation's config is a JSON object",
            ));
        }
        let Some(schema) = version.descriptor.get("config_schema") else {
            return Ok(());
        };
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            PlinthError::new(ErrorCode::InvalidComponent, format!("config schema: {e}"))
        })?;
        let problems: Vec<String> = validator
            .iter_errors(config)
            .take(5)
            .map(|e| {
                let at = e.instance_path.to_string();
                format!("{}: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlinthError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "config does not match the schema of {}@{}: {}",
                    version.extension,
                    version.version,
                    problems.join("; ")
                ),
            ))
        }
    }

    fn tick_interval(
        &self,
        version: &ComponentVersion,
        asked: Option<u64>,
    ) -> Result<Option<u64>, PlinthError> {
        let interval = match asked {
            Some(0) => None,
            Some(ms) => Some(ms),
            None => version.descriptor["refresh_interval_ms"].as_u64(),
        };
        if let Some(ms) = interval {
            if version.world == "event-handler" {
                return Err(invalid(format!(
                    "{} is an event handler; only widgets tick",
                    version.extension
                )));
            }
            let min = self.config.scheduler.min_interval.as_millis() as u64;
            let max = crate::scheduler::MAX_INTERVAL_MS;
            if ms < min || ms > max {
                return Err(invalid(format!(
                    "tick interval {ms} ms is outside the server's {min}..={max} ms"
                )));
            }
        }
        Ok(interval)
    }

    fn grants(text: &str) -> Result<Grants, PlinthError> {
        if text.trim().is_empty() {
            return Ok(Grants::none());
        }
        text.parse()
            .map_err(|e: PlinthError| PlinthError::new(ErrorCode::InvalidRequest, e.message))
    }

    /// Installs a component for a tenant after checking grants, config and limits.
    pub async fn install(
        &self,
        tenant: &str,
        request: InstallRequest,
        may_raise_limits: bool,
    ) -> Result<Installation, PlinthError> {
        check_id("installation", &request.id)?;
        let version = self.registry.component(tenant, &request.component).await?;
        let extension = self.extension(&version.hash).await?;
        let grants_text = request
            .grants
            .as_ref()
            .map(GrantList::text)
            .unwrap_or_default();
        let invocation = Invocation {
            scope: Scope::new(tenant, &request.id)?,
            grants: Self::grants(&grants_text)?,
            limits: self.limits(&request.limits, may_raise_limits)?,
        };
        self.sandbox.check_grants(&extension, &invocation)?;
        let config = request.config.unwrap_or_else(|| json!({}));
        self.validate_config(&version, &config)?;
        let now = now_ms();
        let installation = Installation {
            tenant: tenant.to_owned(),
            id: request.id,
            component: version.hash.clone(),
            config,
            grants: grants_text,
            limits: invocation.limits,
            tick_interval_ms: self.tick_interval(&version, request.tick_interval_ms)?,
            enabled: true,
            parked: None,
            created_ms: now,
            updated_ms: now,
        };
        self.registry.create_installation(&installation).await?;
        self.changed(tenant, &installation.id);
        Ok(installation)
    }

    /// Upgrades an installation to another version; refused with `GRANTS_REQUIRED` when
    /// the new version imports capabilities the grants do not cover.
    pub async fn upgrade(
        &self,
        tenant: &str,
        id: &str,
        request: UpgradeRequest,
    ) -> Result<(PermissionDiff, Installation), PlinthError> {
        let mut installation = self.registry.installation(tenant, id).await?;
        let old = self.extension(&installation.component).await?;
        let version = self.registry.component(tenant, &request.component).await?;
        let new = self.extension(&version.hash).await?;
        let names = |caps: Vec<plinth_host::Capability>| -> Vec<String> {
            caps.iter().map(|c| c.to_string()).collect()
        };
        let grants_text = request
            .grants
            .as_ref()
            .map(GrantList::text)
            .unwrap_or_else(|| installation.grants.clone());
        let mut diff = PermissionDiff {
            from: installation.component.clone(),
            to: version.hash.clone(),
            added_capabilities: names(new.capabilities_added_since(&old)),
            removed_capabilities: names(old.capabilities_added_since(&new)),
            grants: grants_text.clone(),
            applied: false,
        };
        let invocation = Invocation {
            scope: Scope::new(tenant, id)?,
            grants: Self::grants(&grants_text)?,
            limits: installation.limits.clone(),
        };
        let config = request.config.unwrap_or(installation.config.clone());
        self.validate_config(&version, &config)?;
        if request.dry_run {
            return Ok((diff, installation));
        }
        if let Err(refused) = self.sandbox.check_grants(&new, &invocation) {
            return Err(PlinthError::new(
                ErrorCode::GrantsRequired,
                format!(
                    "upgrading {id} to {}@{} adds [{}]; grant them in `grants` ({})",
                    version.extension,
                    version.version,
                    diff.added_capabilities.join(", "),
                    refused.message
                ),
            ));
        }
        installation.component = version.hash.clone();
        installation.grants = grants_text;
        installation.config = config;
        installation.updated_ms = now_ms();
        if installation.tick_interval_ms.is_some() || version.world != "event-handler" {
            installation.tick_interval_ms =
                self.tick_interval(&version, Some(installation.tick_interval_ms.unwrap_or(0)))?;
        }
        self.registry.update_installation(&installation).await?;
        self.changed(tenant, id);
        diff.applied = true;
        Ok((diff, installation))
    }

    /// Enables or disables an installation; enabling also unparks it.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        id: &str,
        enabled: bool,
    ) -> Result<Installation, PlinthError> {
        let mut installation = self.registry.installation(tenant, id).await?;
        installation.enabled = enabled;
        if enabled {
            installation.parked = None;
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(tenant.to_owned(), id.to_owned()));
        }
        installation.updated_ms = now_ms();
        self.registry.update_installation(&installation).await?;
        self.changed(tenant, id);
        Ok(installation)
    }

    /// Deletes a tenant and everything it has: metadata (tokens first, so they stop
    /// working on this node at once), its database, cache keys and topics, its sockets
    /// on this node, and what this node remembers of it. Its schedules stop at the
    /// scheduler's next reload, which this wakes.
    pub async fn delete_tenant(
        &self,
        tenant: &str,
    ) -> Result<crate::registry::TenantRemoval, PlinthError> {
        let removed = self.registry.delete_tenant(tenant).await?;
        let own = |key: &(String, String)| key.0 != tenant;
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| own(key));
        self.receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| own(key));
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| own(key));
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| own(key));
        self.schedule_changed.notify_one();
        self.sandbox.tenant_quotas().set(tenant, None);
        self.drop_tenant_data(tenant, "is deleted").await?;
        Ok(removed)
    }

    /// Creates a tenant. Whatever a tenant of the same id left behind is dropped first:
    /// a call still running when that tenant was deleted, or a node that had not yet
    /// heard of the deletion, may have written to its database or cache again, and none
    /// of it may reach the new tenant. A deletion that could not reach a backend is
    /// finished here too.
    pub async fn create_tenant(&self, id: &str, name: &str) -> Result<Tenant, PlinthError> {
        // Before any backend sees the id: it names a file and a schema.
        check_id("tenant", id)?;
        match self.registry.tenant(id).await {
            Ok(_) => {
                return Err(PlinthError::new(
                    ErrorCode::Conflict,
                    format!("tenant {id} exists"),
                ));
            }
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        self.drop_tenant_data(
            id,
            "cannot be created: what an earlier tenant of this id left",
        )
        .await?;
        self.registry.create_tenant(id, name).await
    }

    /// Drops a tenant's data in every backend: topics and sockets, log lines, cache keys,
    /// database.
    async fn drop_tenant_data(&self, tenant: &str, state: &str) -> Result<(), PlinthError> {
        self.hub.drop_tenant(tenant);
        let backends = self.backends();
        backends.broadcast.drop_tenant(tenant);
        backends.log.drop_tenant(tenant);
        let unavailable = |what: &str, e: plinth_host::capability::BackendError| {
            PlinthError::new(
                ErrorCode::Unavailable,
                format!("tenant {tenant} {state} but its {what} could not be dropped: {e}"),
            )
        };
        backends
            .cache
            .drop_tenant(tenant)
            .await
            .map_err(|e| unavailable("cache keys", e))?;
        match &self.tenant_databases {
            TenantDatabases::Sqlite(db) => db.drop_tenant(tenant),
            TenantDatabases::Postgres(db) => db.drop_tenant(tenant).await,
        }
        .map_err(|e| unavailable("database", e))
    }

    pub async fn uninstall(&self, tenant: &str, id: &str) -> Result<(), PlinthError> {
        self.registry.delete_installation(tenant, id).await?;
        let key = (tenant.to_owned(), id.to_owned());
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.changed(tenant, id);
        Ok(())
    }

    /// Runs one call of an installation: checks it may run, calls it, keeps the
    /// receipt, counts it and feeds the circuit breaker.
    pub async fn call(
        &self,
        installation: &Installation,
        call: Call,
    ) -> Result<CallReport, PlinthError> {
        if let Some(reason) = &installation.parked {
            return Err(PlinthError::new(
                ErrorCode::InstallationParked,
                format!(
                    "installation {} of tenant {} is parked: {reason}; enable it again after fixing it",
                    installation.id, installation.tenant
                ),
            ));
        }
        if !installation.enabled {
            return Err(PlinthError::new(
                ErrorCode::InstallationDisabled,
                format!(
                    "installation {} of tenant {} is disabled",
                    installation.id, installation.tenant
                ),
            ));
        }
        let extension = self.extension(&installation.component).await?;
        let invocation = Invocation {
            scope: Scope::new(&installation.tenant, &installation.id)?,
            grants: Self::grants(&installation.grants)?,
            limits: installation.limits.clone(),
        };
        let span = tracing::info_span!(
            "call",
            tenant = %installation.tenant,
            installation = %installation.id,
            call = call.name(),
            outcome = tracing::field::Empty,
            fuel = tracing::field::Empty,
            wall_us = tracing::field::Empty,
        );
        let report = self
            .sandbox
            .call(&extension, &invocation, call)
            .instrument(span.clone())
            .await;
        let receipt = &report.receipt;
        span.record("outcome", tracing::field::display(&receipt.outcome));
        span.record("fuel", receipt.fuel_used.unwrap_or(0));
        span.record("wall_us", receipt.wall_time_us);
        self.metrics
            .record_call(receipt, &self.metrics_label(&extension));
        let key = (installation.tenant.clone(), installation.id.clone());
        push_recent(&self.receipts, key.clone(), receipt.clone());
        match &report.outcome {
            Ok(_) => {
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
            Err(error) => {
                tracing::info!(parent: &span, code = %error.code, message = %error.message, "call failed");
                push_recent(
                    &self.errors,
                    key.clone(),
                    ErrorRecord {
                        at_ms: now_ms(),
                        call: receipt.call,
                        code: error.code,
                        message: error.message.clone(),
                    },
                );
                if error.code.is_guest_fault() {
                    self.count_fault(installation, error).await;
                }
            }
        }
        Ok(report)
    }

    /// `name@version` of a loaded extension, as metrics label it; made once per version.
    fn metrics_label(&self, extension: &Extension) -> Arc<str> {
        let mut labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = labels.get(&extension.hash) {
            return found.clone();
        }
        let label = extension.label();
        let name: Arc<str> = Arc::from(label.split(" (").next().unwrap_or(&label));
        // Before its first `describe` a component has no name yet: not remembered.
        if !label.starts_with("component ") {
            labels.insert(extension.hash.clone(), name.clone());
        }
        name
    }

    async fn count_fault(&self, installation: &Installation, error: &PlinthError) {
        let key = (installation.tenant.clone(), installation.id.clone());
        let failures = {
            let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = all.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        if failures < self.config.scheduler.breaker_failures {
            return;
        }
        let reason = format!("{failures} failures in a row, the last {}", error.code);
        match self
            .registry
            .park(&installation.tenant, &installation.id, &reason)
            .await
        {
            Ok(true) => {
                tracing::warn!(tenant = %installation.tenant, installation = %installation.id, %reason, "installation parked");
                self.metrics
                    .installations_parked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.changed(&installation.tenant, &installation.id);
                let _ = self
                    .backends()
                    .broadcast
                    .publish(
                        &installation.tenant,
                        &format!("installation/{}", installation.id),
                        json!({"type": "parked", "installation": installation.id, "reason": reason}),
                    )
                    .await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not park installation"),
        }
    }

    /// Renders a widget; the views as JSON.
    pub async fn render(
        &self,
        installation: &Installation,
        params: Vec<(String, String)>,
    ) -> Result<CallReport, PlinthError> {
        self.call(
            installation,
            Call::Render {
                config: installation.config.clone(),
                params,
            },
        )
        .await
    }

    pub fn recent_receipts(&self, tenant: &str, id: &str) -> Vec<Receipt> {
        recent(&self.receipts, tenant, id)
    }

    pub fn recent_errors(&self, tenant: &str, id: &str) -> Vec<ErrorRecord> {
        recent(&self.errors, tenant, id)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Places for request bodies being received: a number on the node and a number per
/// owner (a tenant, a token).
struct Slots {
    what: &'static str,
    node: Arc<Semaphore>,
    node_cap: usize,
    owner_cap: usize,
    by_owner: Arc<Mutex<HashMap<String, usize>>>,
}

impl Slots {
    fn new(what: &'static str, node_cap: usize, owner_cap: usize) -> Slots {
        Slots {
            what,
            node: Arc::new(Semaphore::new(node_cap)),
            node_cap,
            owner_cap,
            by_owner: Arc::default(),
        }
    }

    /// One place for `owner` (a `kind`: tenant, token), or `RATE_LIMITED`.
    fn take(&self, kind: &str, owner: &str) -> Result<Slot, PlinthError> {
        let busy = |what: String| {
            PlinthError::new(ErrorCode::RateLimited, format!("{what}; try again shortly"))
        };
        let mut by_owner = self.by_owner.lock().unwrap_or_else(|p| p.into_inner());
        let receiving = by_owner.get(owner).copied().unwrap_or(0);
        if receiving >= self.owner_cap {
            return Err(busy(format!(
                "{receiving} {} of {kind} {owner} are being received already",
                self.what
            )));
        }
        let node = self.node.clone().try_acquire_owned().map_err(|_| {
            busy(format!(
                "{} {} are being received already",
                self.node_cap, self.what
            ))
        })?;
        by_owner.insert(owner.to_owned(), receiving + 1);
        Ok(Slot {
            _node: node,
            owner: owner.to_owned(),
            by_owner: self.by_owner.clone(),
        })
    }
}

/// A body's place, from [`App::upload_slot`] or [`App::body_slot`]; given back when
/// dropped.
pub struct Slot {
    _node: OwnedSemaphorePermit,
    owner: String,
    by_owner: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_owner = self.by_owner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiving) = by_owner.get_mut(&self.owner) {
            *receiving -= 1;
            if *receiving == 0 {
                by_owner.remove(&self.owner);
            }
        }
    }
}

struct CompileGauge<'a>(&'a App);

impl Drop for CompileGauge<'_> {
    fn drop(&mut self) {
        self.0
            .metrics
            .compiles_running
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn push_recent<T>(
    map: &Mutex<HashMap<(String, String), VecDeque<T>>>,
    key: (String, String),
    item: T,
) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let ring = map.entry(key).or_default();
    if ring.len() == RECENT {
        ring.pop_front();
    }
    ring.push_back(item);
}

fn recent<T: Clone>(
    map: &Mutex<HashMap<(String, String), VecDeque<T>>>,
    tenant: &str,
    id: &str,
) -> Vec<T> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(tenant.to_owned(), id.to_owned()))
        .map(|ring| ring.iter().cloned().collect())
        .unwrap_or_default()
}
