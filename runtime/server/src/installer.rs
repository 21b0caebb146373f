//! Installing, upgrading, enabling, disabling and uninstalling: each checked (grants
//! against the component's imports, config against its schema, limits against the
//! server's, tick interval against the scheduler's) before the registry is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use plinth_host::{ErrorCode, Grants, Invocation, Limits, PlinthError, Sandbox, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type,
};
use utoipa::openapi::{RefOr, Schema};

use crate::calls::Calls;
use crate::components::Components;
use crate::config::MAX_INTERVAL_MS;
use crate::installations::Installations;
use crate::registry::{ComponentVersion, Installation, Registry, check_id, grants_text, now_ms};

/// The grants the API takes, by name.
const GRANT_NAMES: [&str; 7] = [
    "cache",
    "db",
    "db:read",
    "db:write",
    "broadcast",
    "log",
    "none",
];

/// Grants in a request: a comma-separated text of grant names, or a list of them.
fn grant_list_schema() -> impl Into<RefOr<Schema>> {
    let name = "(cache|db|db:read|db:write|broadcast|log|none)";
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^( *{name} *(, *{name} *)*)?$")))
                .description(Some("`cache,db:write,log`; empty or `none` grants nothing")),
        )
        .item(
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(GRANT_NAMES)),
            ),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
}

/// Limits an installation lowers (operators may raise them), by name: counts as integers
/// or digits, sizes as bytes or `64MiB`, `timeout` in ms or `500ms`/`2s`, `fuel` also
/// `"off"`. A value past what the engine allows is `INVALID_VALUE`; above the server's,
/// for a tenant, `FORBIDDEN`.
fn limit_changes_schema() -> impl Into<RefOr<Schema>> {
    let text = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
    };
    let integer = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            // Whole numbers a JSON parser keeps exact, even sent as floats.
            .maximum(Some(999_999_999_999_999u64))
    };
    let count = || {
        AnyOfBuilder::new()
            .item(integer())
            .item(text("^[0-9]{1,15}$"))
    };
    let size = || {
        AnyOfBuilder::new()
            .item(integer())
            .item(text("^[0-9]{1,9} ?(B|KiB|MiB|GiB)?$"))
    };
    let duration = || {
        AnyOfBuilder::new()
            .item(integer())
            .item(text("^[0-9]{1,9}(ms|s)?$"))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "fuel",
            count().item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["off"])),
            ),
        )
        .property("memory", size())
        .property("table-elements", count())
        .property("instances", count())
        .property("timeout", duration())
        .property("host-calls", count())
        .property("capability-calls", count())
        .property("output", size())
        .property("log-lines", count())
        .property("db-rows", count())
        .property("db-bytes", size())
        .property("broadcast-messages", count())
        .property("broadcast-bytes", size())
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Limits to lower; a tenant may not raise them above the server's (FORBIDDEN)",
        ))
}

/// The body of an install request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub id: String,
    /// SHA-256 of an uploaded component.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub component: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Capabilities granted: `"cache,db,broadcast"` or a list. None is granted by default.
    #[serde(default)]
    #[schema(schema_with = grant_list_schema)]
    pub grants: Option<GrantList>,
    /// Limits to lower (`{"fuel": "100000000", "timeout": "500ms"}`).
    #[serde(default)]
    #[schema(schema_with = limit_changes_schema)]
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
    /// The grants named; an unknown one is `INVALID_REQUEST`.
    fn grants(&self) -> Result<Grants, PlinthError> {
        let text = match self {
            GrantList::Text(t) => t.clone(),
            GrantList::List(l) => l.join(","),
        };
        text.parse()
            .map_err(|e: PlinthError| PlinthError::new(ErrorCode::InvalidRequest, e.message))
    }
}

/// The body of an upgrade request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// SHA-256 of an uploaded component.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub component: String,
    /// The grants after the upgrade; the current ones when absent.
    #[serde(default)]
    #[schema(schema_with = grant_list_schema)]
    pub grants: Option<GrantList>,
    /// A new config; the current one when absent.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Only report the permission diff.
    #[serde(default)]
    pub dry_run: bool,
}

/// What an upgrade changes in permissions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PermissionDiff {
    pub from: String,
    pub to: String,
    pub added_capabilities: Vec<String>,
    pub removed_capabilities: Vec<String>,
    #[serde(serialize_with = "grants_text")]
    #[schema(value_type = String)]
    pub grants: Grants,
    pub applied: bool,
}

/// A value the schema allows and a rule of this server refuses (`INVALID_VALUE`).
fn unacceptable(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::InvalidValue, message)
}

fn invalid(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::InvalidRequest, message)
}

pub struct Installer {
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    components: Arc<Components>,
    installations: Arc<Installations>,
    calls: Arc<Calls>,
    /// The server's limits: an installation's defaults and a tenant's ceiling.
    default_limits: Limits,
    /// The scheduler's shortest tick interval.
    min_tick_interval: Duration,
    /// Held from counting a tenant's installations to writing a new one, so installs
    /// racing on this node cannot pass the tenant's quota together.
    counting: tokio::sync::Mutex<()>,
}

impl Installer {
    pub fn new(
        sandbox: Arc<Sandbox>,
        registry: Arc<Registry>,
        components: Arc<Components>,
        installations: Arc<Installations>,
        calls: Arc<Calls>,
        default_limits: Limits,
        min_tick_interval: Duration,
    ) -> Self {
        Installer {
            sandbox,
            registry,
            components,
            installations,
            calls,
            default_limits,
            min_tick_interval,
            counting: tokio::sync::Mutex::new(()),
        }
    }

    /// Limits from the server's defaults with the installation's changes; a tenant may
    /// only lower them (`may_raise` for operators).
    fn limits(
        &self,
        changes: &HashMap<String, Value>,
        may_raise: bool,
    ) -> Result<Limits, PlinthError> {
        let ceiling = &self.default_limits;
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
        let schema = &version.descriptor.config_schema;
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            PlinthError::new(ErrorCode::InvalidComponent, format!("config schema: {e}"))
        })?;
        let fields = crate::schema::field_problems(&validator, config, 20);
        if fields.is_empty() {
            return Ok(());
        }
        let problems = crate::schema::problems(&validator, config, 5);
        Err(PlinthError::new(
            ErrorCode::InvalidConfig,
            format!(
                "config does not match the schema of {}@{}: {}",
                version.extension,
                version.version,
                problems.join("; ")
            ),
        )
        .with_fields(fields))
    }

    fn tick_interval(
        &self,
        version: &ComponentVersion,
        asked: Option<u64>,
    ) -> Result<Option<u64>, PlinthError> {
        let interval = match asked {
            Some(0) => None,
            Some(ms) => Some(ms),
            None => version.descriptor.refresh_interval_ms.map(u64::from),
        };
        if let Some(ms) = interval {
            if !version.world.has_widget() {
                return Err(unacceptable(format!(
                    "{} is an event handler; only widgets tick",
                    version.extension
                )));
            }
            let min = self.min_tick_interval.as_millis() as u64;
            let max = MAX_INTERVAL_MS;
            if ms < min || ms > max {
                return Err(unacceptable(format!(
                    "tick interval {ms} ms is outside the server's {min}..={max} ms"
                )));
            }
        }
        Ok(interval)
    }

    /// The component a request names: one the tenant never uploaded is a value refused
    /// (`INVALID_VALUE`), not a missing resource: the request's own path exists.
    async fn named_component(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<ComponentVersion, PlinthError> {
        self.registry
            .component(tenant, hash)
            .await
            .map_err(|e| match e.code {
                ErrorCode::NotFound => unacceptable(e.message),
                _ => e,
            })
    }

    /// Installs a component for a tenant after checking grants, config and limits.
    pub async fn install(
        &self,
        tenant: &str,
        request: InstallRequest,
        may_raise_limits: bool,
    ) -> Result<Installation, PlinthError> {
        check_id("installation", &request.id)?;
        let version = self.named_component(tenant, &request.component).await?;
        let extension = self.components.extension(&version.hash, tenant).await?;
        let grants = match &request.grants {
            Some(list) => list.grants()?,
            None => Grants::none(),
        };
        let invocation = Invocation {
            scope: Scope::new(tenant, &request.id)?,
            grants,
            limits: self.limits(&request.limits, may_raise_limits)?,
        };
        self.sandbox.check_grants(&extension, &invocation)?;
        let config = request.config.unwrap_or_else(|| json!({}));
        self.validate_config(&version, &config)?;
        let now = now_ms();
        let tick_interval_ms = self.tick_interval(&version, request.tick_interval_ms)?;
        let _counting = self.counting.lock().await;
        let quota = self.sandbox.tenant_quotas().quota_of(tenant).installations;
        if self.registry.installation_count(tenant).await? >= u64::from(quota) {
            return Err(PlinthError::new(
                ErrorCode::Conflict,
                format!(
                    "tenant {tenant} has {quota} installations, its quota; uninstall one first"
                ),
            ));
        }
        let installation = Installation {
            tenant: tenant.to_owned(),
            id: request.id,
            component: version.hash.clone(),
            config,
            grants: invocation.grants,
            limits: invocation.limits,
            tick_interval_ms,
            enabled: true,
            parked: None,
            created_ms: now,
            updated_ms: now,
        };
        self.registry.create_installation(&installation).await?;
        self.installations.changed(tenant, &installation.id);
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
        let old = self
            .components
            .extension(&installation.component, tenant)
            .await?;
        let version = self.named_component(tenant, &request.component).await?;
        let new = self.components.extension(&version.hash, tenant).await?;
        let names = |caps: Vec<plinth_host::Capability>| -> Vec<String> {
            caps.iter().map(|c| c.to_string()).collect()
        };
        let grants = match &request.grants {
            Some(list) => list.grants()?,
            None => installation.grants.clone(),
        };
        let mut diff = PermissionDiff {
            from: installation.component.clone(),
            to: version.hash.clone(),
            added_capabilities: names(new.capabilities_added_since(&old)),
            removed_capabilities: names(old.capabilities_added_since(&new)),
            grants: grants.clone(),
            applied: false,
        };
        let invocation = Invocation {
            scope: Scope::new(tenant, id)?,
            grants,
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
        installation.grants = invocation.grants;
        installation.config = config;
        installation.updated_ms = now_ms();
        if installation.tick_interval_ms.is_some() || version.world.has_widget() {
            installation.tick_interval_ms =
                self.tick_interval(&version, Some(installation.tick_interval_ms.unwrap_or(0)))?;
        }
        self.registry.update_installation(&installation).await?;
        self.installations.changed(tenant, id);
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
            self.calls.reset_breaker(tenant, id);
        }
        installation.updated_ms = now_ms();
        self.registry.update_installation(&installation).await?;
        self.installations.changed(tenant, id);
        Ok(installation)
    }

    pub async fn uninstall(&self, tenant: &str, id: &str) -> Result<(), PlinthError> {
        self.registry.delete_installation(tenant, id).await?;
        self.calls.forget(tenant, id);
        self.installations.changed(tenant, id);
        Ok(())
    }
}
