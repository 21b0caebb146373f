//! Tenants: creating one (after dropping anything an earlier tenant of the same id
//! left), deleting one with everything it has in every backend and in what this node
//! remembers, and its quota, kept in the registry and applied to the sandbox in one
//! place.

use std::sync::Arc;
use std::time::Duration;

use plinth_host::capability::db::SqliteDb;
use plinth_host::capability::db::postgres::PostgresDb;
use plinth_host::{BackendError, ErrorCode, PlinthError, Sandbox, TenantQuota};

use crate::calls::Calls;
use crate::events::Events;
use crate::installations::Installations;
use crate::registry::{Registry, Tenant, TenantRemoval, check_id};
use crate::ws::Hub;

/// The tenants' databases, by kind: what deleting a tenant has to drop.
pub enum TenantDatabases {
    Sqlite(Arc<SqliteDb>),
    Postgres(Arc<PostgresDb>),
}

/// How often a node reads every tenant's quota again, so a quota set through another
/// node sharing the metadata database applies here too.
pub const QUOTA_REFRESH: Duration = Duration::from_secs(2);

pub struct Tenants {
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    installations: Arc<Installations>,
    calls: Arc<Calls>,
    hub: Arc<Hub>,
    events: Arc<Events>,
    databases: TenantDatabases,
    /// Held from reading quotas to applying them, and from writing one to applying it:
    /// a refresh that read the registry just before a quota was set cannot put the old
    /// quota back after it.
    applying: tokio::sync::Mutex<()>,
}

impl Tenants {
    pub fn new(
        sandbox: Arc<Sandbox>,
        registry: Arc<Registry>,
        installations: Arc<Installations>,
        calls: Arc<Calls>,
        hub: Arc<Hub>,
        events: Arc<Events>,
        databases: TenantDatabases,
    ) -> Self {
        Tenants {
            sandbox,
            registry,
            installations,
            calls,
            hub,
            events,
            databases,
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// Applies every tenant's own quota (or the default, for a tenant without one) to
    /// the sandbox; at start, then every [`QUOTA_REFRESH`].
    pub async fn load_quotas(&self) -> Result<(), PlinthError> {
        let _applying = self.applying.lock().await;
        let tenants = self.registry.tenants().await?;
        let quotas = self.sandbox.tenant_quotas();
        // A tenant deleted through another node goes back to the default here (a tenant
        // created again with its id must not find its old quota).
        quotas.keep_own_quotas_of(tenants.iter().map(|t| t.id.as_str()));
        for tenant in tenants {
            quotas.set(&tenant.id, tenant.quota);
        }
        Ok(())
    }

    /// Sets a tenant's own quota (`None`: the server's default), in the registry and in
    /// the sandbox; what now applies.
    pub async fn set_quota(
        &self,
        tenant: &str,
        quota: Option<TenantQuota>,
    ) -> Result<TenantQuota, PlinthError> {
        if let Some(quota) = &quota {
            quota.validate()?;
        }
        let _applying = self.applying.lock().await;
        self.registry.set_quota(tenant, quota.as_ref()).await?;
        let quotas = self.sandbox.tenant_quotas();
        quotas.set(tenant, quota);
        Ok(quotas.quota_of(tenant))
    }

    /// Creates a tenant. Whatever a tenant of the same id left behind is dropped first:
    /// a call still running when that tenant was deleted, or a node that had not yet
    /// heard of the deletion, may have written to its database or cache again, and none
    /// of it may reach the new tenant. A deletion that could not reach a backend is
    /// finished here too.
    pub async fn create(&self, id: &str, name: &str) -> Result<Tenant, PlinthError> {
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
        self.drop_data(
            id,
            "cannot be created: what an earlier tenant of this id left",
        )
        .await?;
        self.registry.create_tenant(id, name).await
    }

    /// Deletes a tenant and everything it has: metadata (tokens first, so they stop
    /// working on this node at once), its event queue, database, cache keys and topics, its sockets
    /// on this node, and what this node remembers of it. Its schedules stop at the
    /// scheduler's next reload, which this wakes.
    pub async fn delete(&self, tenant: &str) -> Result<TenantRemoval, PlinthError> {
        let removed = {
            // A refresh that read the tenant's quota before it was deleted cannot put it
            // back afterwards.
            let _applying = self.applying.lock().await;
            let removed = self.registry.delete_tenant(tenant).await?;
            self.sandbox.tenant_quotas().set(tenant, None);
            removed
        };
        self.installations.forget_tenant(tenant);
        self.calls.forget_tenant(tenant);
        self.drop_data(tenant, "is deleted").await?;
        Ok(removed)
    }

    /// Drops a tenant's data in every backend: topics and sockets, log lines, cache keys,
    /// database.
    async fn drop_data(&self, tenant: &str, state: &str) -> Result<(), PlinthError> {
        self.hub.drop_tenant(tenant);
        self.events.forget_tenant(tenant).await.map_err(|e| {
            PlinthError::new(
                ErrorCode::Unavailable,
                format!("tenant {tenant} {state} but its event queue could not be dropped: {e}"),
            )
        })?;
        let backends = self.sandbox.backends();
        backends.broadcast.drop_tenant(tenant);
        backends.log.drop_tenant(tenant);
        let unavailable = |what: &str, e: BackendError| {
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
        match &self.databases {
            TenantDatabases::Sqlite(db) => db.drop_tenant(tenant),
            TenantDatabases::Postgres(db) => db.drop_tenant(tenant).await,
        }
        .map_err(|e| unavailable("database", e))
    }
}
