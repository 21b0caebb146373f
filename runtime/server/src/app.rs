//! The server's units, built once and wired together; nothing here does work of its
//! own. Each unit owns its state:
//!
//! | unit | owns |
//! |---|---|
//! | [`Registry`] | the metadata database; remembered token lookups |
//! | [`Sandbox`] | the engine, loaded extensions, tenants' live quota usage |
//! | [`Components`] | compile slots; uploads |
//! | [`Installations`] | remembered installations; the change signal the scheduler waits on |
//! | [`Installer`] | nothing: checks and writes installations |
//! | [`Calls`] | recent receipts and errors, the circuit breaker's counts |
//! | [`Tenants`] | the tenants' databases (to drop them); quotas, through the registry and sandbox |
//! | [`Hub`] | WebSocket sockets and topic relays of this node |
//! | [`Events`] | the event queue (a backend); routes, rate buckets, delivery counts of this node |
//! | [`Metrics`] | counters and histograms |
//! | [`BodySlots`] | request bodies being received |

use std::sync::Arc;
use std::time::{Duration, Instant};

use plinth_host::{Backends, ErrorCode, PlinthError, Sandbox, SandboxConfig};

use crate::calls::Calls;
use crate::components::{CompileBounds, Components};
use crate::config::{EventQueueConfig, MetadataConfig, ServerConfig};
use crate::events::Events;
use crate::events::queue::EventQueue;
use crate::events::redis::RedisQueue;
use crate::events::sqlite::SqliteQueue;
use crate::installations::Installations;
use crate::installer::Installer;
use crate::metrics::Metrics;
use crate::pushes::Pushes;
use crate::registry::Registry;
use crate::slots::Slots;
use crate::store::{MetaStore, PostgresStore, SqliteStore};
use crate::tenants::{TenantDatabases, Tenants};
use crate::ws::Hub;
use plinth_host::capability::db::SqliteDb;
use plinth_host::capability::db::postgres::PostgresDb;

/// Request bodies being received: uploads (per tenant) and JSON bodies (per token).
pub struct BodySlots {
    pub uploads: Slots,
    pub json: Slots,
}

pub struct App {
    pub config: ServerConfig,
    pub node_id: String,
    pub registry: Arc<Registry>,
    pub sandbox: Arc<Sandbox>,
    pub metrics: Arc<Metrics>,
    pub components: Arc<Components>,
    pub installations: Arc<Installations>,
    pub installer: Installer,
    pub calls: Arc<Calls>,
    pub tenants: Tenants,
    pub hub: Arc<Hub>,
    pub events: Arc<Events>,
    /// Views pushed to `widget/<id>` after ticks and handled events.
    pub pushes: Arc<Pushes>,
    pub bodies: BodySlots,
    started: Instant,
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
        let registry = Arc::new(Registry::open(store).await?);
        let mut backends = Backends::from_config(&config.backends, &config.data_dir)?;
        // The tenants' databases as their own type as well, so a deleted tenant's file or
        // schema can be dropped; the sandbox gets the same instance.
        let databases = match &config.backends.db {
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
        let sandbox = Arc::new(Sandbox::new(
            SandboxConfig {
                cache_dir: Some(config.data_dir.join("compiled")),
                pool_instances: config.pool_instances,
                pool_warm_slots: config.pool_warm_slots,
                tenant_quota: config.tenant_quota.clone(),
                ..SandboxConfig::default()
            },
            backends,
        )?);
        let node_id = if config.node_id.is_empty() {
            let mut id = [0u8; 4];
            getrandom::fill(&mut id)
                .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string()))?;
            format!("node-{}", hex::encode(id))
        } else {
            config.node_id.clone()
        };
        let metrics = Arc::new(Metrics::default());
        metrics.watch_component_loads(sandbox.load_counts());
        let components = Arc::new(Components::new(
            sandbox.clone(),
            registry.clone(),
            metrics.clone(),
            CompileBounds {
                slots: config.http.compile_slots,
                timeout: config.http.compile_timeout,
            },
            config.default_limits.clone(),
        ));
        let installations = Arc::new(Installations::new(registry.clone()));
        let calls = Arc::new(Calls::new(
            sandbox.clone(),
            components.clone(),
            installations.clone(),
            registry.clone(),
            metrics.clone(),
            config.scheduler.breaker_failures,
        ));
        let installer = Installer::new(
            sandbox.clone(),
            registry.clone(),
            components.clone(),
            installations.clone(),
            calls.clone(),
            config.default_limits.clone(),
            config.scheduler.min_interval,
        );
        let hub = Arc::new(Hub::new(
            config.websocket.clone(),
            registry.clone(),
            sandbox.backends().broadcast.clone(),
            metrics.clone(),
        ));
        let queue: Arc<dyn EventQueue> = match &config.events.queue {
            EventQueueConfig::Sqlite => Arc::new(
                SqliteQueue::open(&config.data_dir.join("events.sqlite3"))
                    .map_err(|e| PlinthError::new(ErrorCode::Unavailable, e.to_string()))?,
            ),
            EventQueueConfig::Redis { url, prefix } => Arc::new(
                RedisQueue::open(url, prefix, &node_id)
                    .map_err(|e| PlinthError::new(ErrorCode::InvalidRequest, e.to_string()))?,
            ),
        };
        let pushes = Arc::new(Pushes::new(
            calls.clone(),
            registry.clone(),
            installations.clone(),
            sandbox.backends().broadcast.clone(),
        ));
        let events = Arc::new(Events::new(
            queue,
            config.events.clone(),
            registry.clone(),
            installations.clone(),
            calls.clone(),
            pushes.clone(),
            metrics.clone(),
        ));
        let tenants = Tenants::new(
            sandbox.clone(),
            registry.clone(),
            installations.clone(),
            calls.clone(),
            hub.clone(),
            events.clone(),
            databases,
        );
        tenants.load_quotas().await?;
        let http = &config.http;
        let bodies = BodySlots {
            uploads: Slots::new("uploads", http.upload_slots, http.upload_slots_per_tenant),
            json: Slots::new("request bodies", http.body_slots, http.body_slots_per_token),
        };
        Ok(Arc::new(App {
            config,
            node_id,
            registry,
            sandbox,
            metrics,
            components,
            installations,
            installer,
            calls,
            tenants,
            hub,
            events,
            pushes,
            bodies,
            started: Instant::now(),
        }))
    }

    pub fn backends(&self) -> &Backends {
        self.sandbox.backends()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
