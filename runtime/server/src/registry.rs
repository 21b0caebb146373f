//! The registry: tenants, API tokens (stored as SHA-256 hashes), components
//! (content-addressed, with the versions their manifests declare), installations and
//! dashboards, over a [`MetaStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use plinth_host::lock::Recover;
use plinth_host::{Descriptor, ErrorCode, Grants, Limits, PlinthError, TenantQuota, World};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{MetaStore, Row, Sql};

/// How long a token lookup is remembered by a node. A token revoked (or a tenant
/// deleted) on this node stops working at once; on another node sharing the metadata
/// database, within this time.
pub const TOKEN_MEMORY: Duration = Duration::from_secs(5);

/// Hex digits of a token's SHA-256 that name it in the API (`GET …/tokens`, `DELETE
/// …/tokens/{id}`). A prefix of the hash, so tokens made before ids existed have one
/// too; it reveals nothing about the secret.
pub const TOKEN_ID_LEN: usize = 16;

/// Token lookups a node remembers at most; past this the stale ones go, then all.
pub const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Failed lookups (unknown tokens) a node remembers at most. Kept apart from the tokens
/// that work, so a client sending made-up tokens evicts only its own made-up ones.
pub const UNKNOWN_TOKEN_ENTRIES: usize = 10_000;

/// Prefix of every API token, so a leaked one is easy to recognise in logs and scanners.
pub const TOKEN_PREFIX: &str = "plt_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the server: creates tenants, sets quotas, sees every tenant.
    Operator,
    /// Manages one tenant: uploads, installs, dashboards, tokens.
    TenantAdmin,
    /// Watches one tenant's dashboards: render, subscribe, read.
    Viewer,
    /// Posts events to one tenant and does nothing else: the token the tenant's own
    /// application holds.
    Publisher,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant-admin",
            Role::Viewer => "viewer",
            Role::Publisher => "publisher",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "operator" => Some(Role::Operator),
            "tenant-admin" => Some(Role::TenantAdmin),
            "viewer" => Some(Role::Viewer),
            "publisher" => Some(Role::Publisher),
            _ => None,
        }
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub role: Role,
    /// The tenant of a tenant-admin or viewer token; none for an operator.
    pub tenant: Option<String>,
    pub label: String,
    /// The token's public id ([`TOKEN_ID_LEN`] hex digits of its hash).
    pub token_id: String,
    /// When the token stops working (ms since the Unix epoch); never when absent.
    pub expires_ms: Option<i64>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub label: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    /// When a node last looked the token up in the metadata database. A node remembers
    /// a lookup for [`TOKEN_MEMORY`] and writes this at most once per TOKEN_MEMORY, so
    /// it is exact to within twice that.
    pub last_used_ms: Option<i64>,
}

/// What deleting a tenant removed from the metadata database.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TenantRemoval {
    pub tokens: u64,
    pub installations: u64,
    pub components: u64,
    pub dashboards: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// The tenant's own quota; the server's default when absent.
    pub quota: Option<TenantQuota>,
    pub created_ms: i64,
}

/// One uploaded component version of a tenant.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComponentVersion {
    /// SHA-256 of the component's bytes.
    pub hash: String,
    /// The extension's id, from its descriptor.
    pub extension: String,
    pub version: String,
    pub world: World,
    pub descriptor: Descriptor,
    pub size: i64,
    pub uploaded_ms: i64,
}

/// A component version installed for a tenant, with its config, grants and limits.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Installation {
    pub tenant: String,
    pub id: String,
    pub component: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// What the installation may use: `cache,db:write,broadcast,log`.
    #[serde(serialize_with = "grants_text")]
    #[schema(value_type = String, example = "cache,db,log")]
    pub grants: Grants,
    pub limits: Limits,
    pub tick_interval_ms: Option<u64>,
    pub enabled: bool,
    /// Why the circuit breaker parked it; enabling it again clears this.
    pub parked: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One widget on a dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub installation: String,
    #[serde(default)]
    pub x: u32,
    #[serde(default)]
    pub y: u32,
    #[serde(default = "one")]
    pub w: u32,
    #[serde(default = "one")]
    pub h: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub name: String,
    pub tiles: Vec<Tile>,
    pub updated_ms: i64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn internal(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::Internal, message)
}

fn not_found(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::NotFound, message)
}

/// Checks an identifier a user chose (tenant, installation, dashboard).
pub fn check_id(what: &str, id: &str) -> Result<(), PlinthError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(PlinthError::new(
            ErrorCode::InvalidRequest,
            format!("{what} {id:?} must be 1 to 63 of [a-z0-9-], not starting with '-'"),
        ))
    }
}

/// The SHA-256 of a token's secret, in hex: what the metadata database keeps.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn unknown_token() -> PlinthError {
    PlinthError::new(ErrorCode::Unauthenticated, "unknown token")
}

fn text(row: &Row, i: usize) -> String {
    row[i].text().unwrap_or_default().to_owned()
}

fn int(row: &Row, i: usize) -> i64 {
    row[i].int().unwrap_or_default()
}

/// A quota as stored: the fields added since the first two are left out at their
/// defaults, so a node of an earlier version sharing the database (which refuses fields
/// it does not know) still reads every quota that does not use them.
fn stored_quota(quota: &TenantQuota) -> Result<String, PlinthError> {
    let json = |q: &TenantQuota| serde_json::to_value(q).map_err(|e| internal(e.to_string()));
    let (mut stored, defaults) = (json(quota)?, json(&TenantQuota::default())?);
    if let Some(fields) = stored.as_object_mut() {
        for added in ["fuel_metering", "installations"] {
            if fields.get(added) == defaults.get(added) {
                fields.remove(added);
            }
        }
    }
    Ok(stored.to_string())
}

pub fn grants_text<S: serde::Serializer>(
    grants: &Grants,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(grants)
}

/// A typed column kept as JSON text; a row that does not read back is an internal
/// error naming it, not a default.
fn typed<T: serde::de::DeserializeOwned>(
    row: &Row,
    i: usize,
    what: &str,
) -> Result<T, PlinthError> {
    serde_json::from_str(row[i].text().unwrap_or("null"))
        .map_err(|e| internal(format!("stored {what} does not read back: {e}")))
}

fn json(row: &Row, i: usize) -> Value {
    serde_json::from_str(row[i].text().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Adds a column unless the table has it already (neither dialect's `ADD COLUMN` has
/// `IF NOT EXISTS` in the subset both speak, and their errors differ): a statement that
/// reads the column tells. Nodes upgrading together may both add it; the one that loses
/// finds it there.
async fn add_column(
    store: &dyn MetaStore,
    table: &str,
    column: &str,
    sql_type: &str,
) -> Result<(), PlinthError> {
    let probe = format!("SELECT {column} FROM {table} WHERE 1 = 0");
    if store.query(&probe, vec![]).await.is_ok() {
        return Ok(());
    }
    match store
        .execute(
            &format!("ALTER TABLE {table} ADD COLUMN {column} {sql_type}"),
            vec![],
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match store.query(&probe, vec![]).await {
            Ok(_) => Ok(()),
            Err(_) => Err(e),
        },
    }
}

pub struct Registry {
    store: Arc<dyn MetaStore>,
    /// Tokens that worked, by hash, with when they were looked up.
    tokens: Mutex<HashMap<String, (Instant, Principal)>>,
    /// Hashes no token had, with when they were looked up: so a repeated made-up token
    /// costs the metadata database nothing for [`TOKEN_MEMORY`].
    unknown: Mutex<HashMap<String, Instant>>,
}

/// Makes room in a lookup memory of at most `cap` entries: the stale ones go, then, if
/// that is not enough, all of them.
fn make_room<V>(memory: &mut HashMap<String, V>, cap: usize, at: impl Fn(&V) -> Instant) {
    if memory.len() >= cap {
        memory.retain(|_, v| at(v).elapsed() < TOKEN_MEMORY);
    }
    if memory.len() >= cap {
        memory.clear();
    }
}

const INSTALLATION_COLUMNS: &str = "tenant, id, component, config, grants, limits, tick_ms, \
     enabled, parked, created_ms, updated_ms";

impl Registry {
    pub async fn open(store: Arc<dyn MetaStore>) -> Result<Self, PlinthError> {
        let blob = store.blob_type();
        store
            .migrate(&format!(
                "CREATE TABLE IF NOT EXISTS tenants (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, quota TEXT,
                    created_ms BIGINT NOT NULL);
                 CREATE TABLE IF NOT EXISTS tokens (
                    hash TEXT PRIMARY KEY, tenant TEXT, role TEXT NOT NULL,
                    label TEXT NOT NULL, created_ms BIGINT NOT NULL,
                    expires_ms BIGINT, last_used_ms BIGINT);
                 CREATE TABLE IF NOT EXISTS blobs (
                    hash TEXT PRIMARY KEY, bytes {blob} NOT NULL);
                 CREATE TABLE IF NOT EXISTS components (
                    tenant TEXT NOT NULL, hash TEXT NOT NULL, extension TEXT NOT NULL,
                    version TEXT NOT NULL, world TEXT NOT NULL, descriptor TEXT NOT NULL,
                    size BIGINT NOT NULL, uploaded_ms BIGINT NOT NULL,
                    PRIMARY KEY (tenant, hash));
                 CREATE TABLE IF NOT EXISTS installations (
                    tenant TEXT NOT NULL, id TEXT NOT NULL, component TEXT NOT NULL,
                    config TEXT NOT NULL, grants TEXT NOT NULL, limits TEXT NOT NULL,
                    tick_ms BIGINT, enabled BIGINT NOT NULL, parked TEXT,
                    created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
                    tick_claim_ms BIGINT NOT NULL DEFAULT 0, tick_node TEXT,
                    PRIMARY KEY (tenant, id));
                 CREATE TABLE IF NOT EXISTS dashboards (
                    tenant TEXT NOT NULL, name TEXT NOT NULL, tiles TEXT NOT NULL,
                    updated_ms BIGINT NOT NULL, PRIMARY KEY (tenant, name))"
            ))
            .await?;
        // Registries made before token expiry existed lack these columns.
        for column in ["expires_ms", "last_used_ms"] {
            add_column(store.as_ref(), "tokens", column, "BIGINT").await?;
        }
        Ok(Registry {
            store,
            tokens: Mutex::default(),
            unknown: Mutex::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    // ---- tenants -------------------------------------------------------------------

    pub async fn create_tenant(&self, id: &str, name: &str) -> Result<Tenant, PlinthError> {
        check_id("tenant", id)?;
        let created = now_ms();
        let inserted = self
            .store
            .execute(
                "INSERT INTO tenants (id, name, created_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                vec![id.into(), name.into(), created.into()],
            )
            .await?;
        if inserted == 0 {
            return Err(PlinthError::new(
                ErrorCode::Conflict,
                format!("tenant {id} already exists"),
            ));
        }
        Ok(Tenant {
            id: id.to_owned(),
            name: name.to_owned(),
            quota: None,
            created_ms: created,
        })
    }

    fn tenant_of(row: &Row) -> Tenant {
        let id = text(row, 0);
        let quota = row[2].text().and_then(|q| {
            serde_json::from_str(q)
                .inspect_err(|error| {
                    // Written by a newer version sharing this database, or edited by hand.
                    tracing::warn!(tenant = %id, %error, "a stored quota does not read; the default applies");
                })
                .ok()
        });
        Tenant {
            id,
            name: text(row, 1),
            quota,
            created_ms: int(row, 3),
        }
    }

    pub async fn tenant(&self, id: &str) -> Result<Tenant, PlinthError> {
        self.store
            .query(
                "SELECT id, name, quota, created_ms FROM tenants WHERE id = $1",
                vec![id.into()],
            )
            .await?
            .first()
            .map(Self::tenant_of)
            .ok_or_else(|| not_found(format!("no tenant {id}")))
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, PlinthError> {
        Ok(self
            .store
            .query(
                "SELECT id, name, quota, created_ms FROM tenants ORDER BY id",
                vec![],
            )
            .await?
            .iter()
            .map(Self::tenant_of)
            .collect())
    }

    pub async fn set_quota(
        &self,
        tenant: &str,
        quota: Option<&TenantQuota>,
    ) -> Result<(), PlinthError> {
        let quota = quota.map(stored_quota).transpose()?;
        let changed = self
            .store
            .execute(
                "UPDATE tenants SET quota = $2 WHERE id = $1",
                vec![tenant.into(), quota.into()],
            )
            .await?;
        if changed == 0 {
            return Err(not_found(format!("no tenant {tenant}")));
        }
        Ok(())
    }

    /// Deletes a tenant with its tokens, installations, component versions and
    /// dashboards; component bytes no other tenant uses go too. Tokens go first, so a
    /// request racing the deletion finds them gone rather than half a tenant.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<TenantRemoval, PlinthError> {
        self.tenant(tenant).await?;
        let hashes: Vec<String> = self
            .components(tenant)
            .await?
            .into_iter()
            .map(|c| c.hash)
            .collect();
        let mut removed = TenantRemoval::default();
        for (table, count) in [
            ("tokens", &mut removed.tokens),
            ("installations", &mut removed.installations),
            ("dashboards", &mut removed.dashboards),
            ("components", &mut removed.components),
        ] {
            *count = self
                .store
                .execute(
                    &format!("DELETE FROM {table} WHERE tenant = $1"),
                    vec![tenant.into()],
                )
                .await?;
        }
        self.forget_tokens(|p| p.tenant.as_deref() == Some(tenant));
        // Bytes are shared by hash between tenants: only those nobody else uploaded go.
        for hash in hashes {
            self.store
                .execute(
                    "DELETE FROM blobs WHERE hash = $1
                     AND NOT EXISTS (SELECT 1 FROM components WHERE hash = $1)",
                    vec![hash.into()],
                )
                .await?;
        }
        let deleted = self
            .store
            .execute("DELETE FROM tenants WHERE id = $1", vec![tenant.into()])
            .await?;
        if deleted == 0 {
            return Err(not_found(format!("no tenant {tenant}")));
        }
        Ok(removed)
    }

    // ---- tokens --------------------------------------------------------------------

    /// Creates a token that does not expire; the secret is returned once and only its
    /// hash is kept.
    pub async fn create_token(
        &self,
        tenant: Option<&str>,
        role: Role,
        label: &str,
    ) -> Result<String, PlinthError> {
        Ok(self.create_token_until(tenant, role, label, None).await?.0)
    }

    /// Creates a token that stops working at `expires_ms` (never when `None`): the
    /// secret, shown once, and the token as listed.
    pub async fn create_token_until(
        &self,
        tenant: Option<&str>,
        role: Role,
        label: &str,
        expires_ms: Option<i64>,
    ) -> Result<(String, TokenInfo), PlinthError> {
        if (role == Role::Operator) != tenant.is_none() {
            return Err(PlinthError::new(
                ErrorCode::InvalidRequest,
                "an operator token has no tenant; every other token has one",
            ));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| internal(format!("random: {e}")))?;
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let hash = token_hash(&secret);
        let created_ms = now_ms();
        self.store
            .execute(
                "INSERT INTO tokens (hash, tenant, role, label, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    hash.clone().into(),
                    tenant.into(),
                    role.as_str().into(),
                    label.into(),
                    created_ms.into(),
                    expires_ms.into(),
                ],
            )
            .await?;
        let info = TokenInfo {
            id: hash[..TOKEN_ID_LEN].to_owned(),
            role,
            tenant: tenant.map(str::to_owned),
            label: label.to_owned(),
            created_ms,
            expires_ms,
            last_used_ms: None,
        };
        Ok((secret, info))
    }

    /// The principal a token stands for, or none for an unknown, revoked or expired
    /// token.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, PlinthError> {
        match self.principal(secret).await {
            Ok(principal) => Ok(Some(principal)),
            Err(e) if e.code == ErrorCode::Unauthenticated => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The principal a token stands for; `UNAUTHENTICATED` saying why when it stands
    /// for none (unknown or revoked, or expired).
    pub async fn principal(&self, secret: &str) -> Result<Principal, PlinthError> {
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 100 {
            return Err(unknown_token());
        }
        self.principal_of_hash(&token_hash(secret), TOKEN_MEMORY)
            .await
    }

    /// The principal of the token with this hash ([`token_hash`]), using a lookup this
    /// node made less than `memory` ago (at most [`TOKEN_MEMORY`]) if there is one. Open
    /// WebSockets hold the hash rather than the secret and re-check through here.
    pub async fn principal_of_hash(
        &self,
        hash: &str,
        memory: Duration,
    ) -> Result<Principal, PlinthError> {
        let memory = memory.min(TOKEN_MEMORY);
        let remembered = self
            .tokens
            .lock()
            .recover()
            .get(hash)
            .filter(|(at, _)| at.elapsed() < memory)
            .map(|(_, principal)| principal.clone());
        let principal = match remembered {
            Some(principal) => principal,
            None => {
                let known_unknown = self
                    .unknown
                    .lock()
                    .recover()
                    .get(hash)
                    .is_some_and(|at| at.elapsed() < memory);
                if known_unknown {
                    return Err(unknown_token());
                }
                self.look_up(hash).await?.ok_or_else(unknown_token)?
            }
        };
        // Checked at every use, not only when looked up: a remembered token expires on time.
        if let Some(expires_ms) = principal.expires_ms
            && now_ms() >= expires_ms
        {
            return Err(PlinthError::new(
                ErrorCode::Unauthenticated,
                format!("token expired at {expires_ms} ms since the Unix epoch; make a new one"),
            ));
        }
        Ok(principal)
    }

    /// Reads a token from the metadata database and remembers the answer. A read, so
    /// made-up tokens cost no writes; only a token that exists has its `last_used_ms`
    /// written, and only when that is older than [`TOKEN_MEMORY`] (so at most once per
    /// token per node per TOKEN_MEMORY, whatever the traffic).
    async fn look_up(&self, hash: &str) -> Result<Option<Principal>, PlinthError> {
        let row = self
            .store
            .query(
                "SELECT tenant, role, label, expires_ms, last_used_ms FROM tokens WHERE hash = $1",
                vec![hash.into()],
            )
            .await?
            .into_iter()
            .next();
        let found = row.as_ref().and_then(|row| {
            Some((
                Principal {
                    tenant: row[0].text().map(str::to_owned),
                    role: Role::parse(row[1].text()?)?,
                    label: text(row, 2),
                    token_id: hash.get(..TOKEN_ID_LEN)?.to_owned(),
                    expires_ms: row[3].int(),
                },
                row[4].int(),
            ))
        });
        let Some((principal, last_used_ms)) = found else {
            let mut unknown = self.unknown.lock().recover();
            make_room(&mut unknown, UNKNOWN_TOKEN_ENTRIES, |at| *at);
            unknown.insert(hash.to_owned(), Instant::now());
            return Ok(None);
        };
        let now = now_ms();
        let stale_before = now - TOKEN_MEMORY.as_millis() as i64;
        if last_used_ms.is_none_or(|at| at <= stale_before) {
            // The condition again in the statement: of nodes racing, one writes. A
            // failure here is bookkeeping lost, not a reason to refuse the token.
            if let Err(e) = self
                .store
                .execute(
                    "UPDATE tokens SET last_used_ms = $2 WHERE hash = $1
                     AND (last_used_ms IS NULL OR last_used_ms <= $3)",
                    vec![hash.into(), now.into(), stale_before.into()],
                )
                .await
            {
                tracing::warn!("noting a token's last use: {}", e.message);
            }
        }
        let mut tokens = self.tokens.lock().recover();
        make_room(&mut tokens, TOKEN_CACHE_ENTRIES, |(at, _)| *at);
        tokens.insert(hash.to_owned(), (Instant::now(), principal.clone()));
        Ok(Some(principal))
    }

    fn token_of(row: &Row) -> Option<TokenInfo> {
        Some(TokenInfo {
            id: row[0].text()?.get(..TOKEN_ID_LEN)?.to_owned(),
            tenant: row[1].text().map(str::to_owned),
            role: Role::parse(row[2].text()?)?,
            label: text(row, 3),
            created_ms: int(row, 4),
            expires_ms: row[5].int(),
            last_used_ms: row[6].int(),
        })
    }

    /// A tenant's tokens, or the operator tokens when `tenant` is `None`; never secrets.
    pub async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenInfo>, PlinthError> {
        let rows = match tenant {
            Some(tenant) => {
                self.store
                    .query(
                        "SELECT hash, tenant, role, label, created_ms, expires_ms, last_used_ms
                         FROM tokens WHERE tenant = $1 ORDER BY created_ms, hash",
                        vec![tenant.into()],
                    )
                    .await?
            }
            None => {
                self.store
                    .query(
                        "SELECT hash, tenant, role, label, created_ms, expires_ms, last_used_ms
                         FROM tokens WHERE tenant IS NULL ORDER BY created_ms, hash",
                        vec![],
                    )
                    .await?
            }
        };
        Ok(rows.iter().filter_map(Self::token_of).collect())
    }

    /// Revokes a token of `tenant` (an operator token when `None`) by its id. It stops
    /// working on this node at once, on other nodes within [`TOKEN_MEMORY`].
    pub async fn revoke_token(&self, tenant: Option<&str>, id: &str) -> Result<(), PlinthError> {
        let valid = id.len() == TOKEN_ID_LEN
            && id
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !valid {
            return Err(not_found(format!("no token {id}")));
        }
        let deleted = match tenant {
            Some(tenant) => {
                self.store
                    .execute(
                        "DELETE FROM tokens WHERE substr(hash, 1, 16) = $1 AND tenant = $2",
                        vec![id.into(), tenant.into()],
                    )
                    .await?
            }
            None => {
                self.store
                    .execute(
                        "DELETE FROM tokens WHERE substr(hash, 1, 16) = $1 AND tenant IS NULL",
                        vec![id.into()],
                    )
                    .await?
            }
        };
        if deleted == 0 {
            return Err(not_found(format!("no token {id}")));
        }
        self.forget_tokens(|p| p.token_id == id);
        Ok(())
    }

    /// Drops remembered lookups of the tokens `which` matches, so they are looked up
    /// again (and found gone) at their next use on this node.
    fn forget_tokens(&self, which: impl Fn(&Principal) -> bool) {
        self.tokens
            .lock()
            .recover()
            .retain(|_, (_, principal)| !which(principal));
    }

    // ---- components ----------------------------------------------------------------

    /// Stores a component's bytes (once per hash) and records the version for `tenant`.
    pub async fn put_component(
        &self,
        tenant: &str,
        version: &ComponentVersion,
        bytes: Vec<u8>,
    ) -> Result<(), PlinthError> {
        self.store
            .execute(
                "INSERT INTO blobs (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                vec![version.hash.clone().into(), Sql::Blob(bytes)],
            )
            .await?;
        self.store
            .execute(
                "INSERT INTO components
                 (tenant, hash, extension, version, world, descriptor, size, uploaded_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, hash) DO NOTHING",
                vec![
                    tenant.into(),
                    version.hash.clone().into(),
                    version.extension.clone().into(),
                    version.version.clone().into(),
                    version.world.as_str().into(),
                    serde_json::to_string(&version.descriptor)
                        .map_err(|e| internal(e.to_string()))?
                        .into(),
                    version.size.into(),
                    version.uploaded_ms.into(),
                ],
            )
            .await?;
        Ok(())
    }

    fn component_of(row: &Row) -> Result<ComponentVersion, PlinthError> {
        Ok(ComponentVersion {
            hash: text(row, 0),
            extension: text(row, 1),
            version: text(row, 2),
            world: serde_json::from_value(Value::String(text(row, 3)))
                .map_err(|e| internal(format!("stored world does not read back: {e}")))?,
            descriptor: typed(row, 4, "descriptor")?,
            size: int(row, 5),
            uploaded_ms: int(row, 6),
        })
    }

    pub async fn component(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<ComponentVersion, PlinthError> {
        self.store
            .query(
                "SELECT hash, extension, version, world, descriptor, size, uploaded_ms
                 FROM components WHERE tenant = $1 AND hash = $2",
                vec![tenant.into(), hash.into()],
            )
            .await?
            .first()
            .map(Self::component_of)
            .ok_or_else(|| not_found(format!("tenant {tenant} has no component sha256:{hash}")))?
    }

    pub async fn components(&self, tenant: &str) -> Result<Vec<ComponentVersion>, PlinthError> {
        self.store
            .query(
                "SELECT hash, extension, version, world, descriptor, size, uploaded_ms
                 FROM components WHERE tenant = $1 ORDER BY extension, uploaded_ms",
                vec![tenant.into()],
            )
            .await?
            .iter()
            .map(Self::component_of)
            .collect()
    }

    pub async fn blob(&self, hash: &str) -> Result<Vec<u8>, PlinthError> {
        match self
            .store
            .query("SELECT bytes FROM blobs WHERE hash = $1", vec![hash.into()])
            .await?
            .pop()
            .and_then(|mut row| row.pop())
        {
            Some(Sql::Blob(bytes)) => Ok(bytes),
            _ => Err(not_found(format!("no component sha256:{hash}"))),
        }
    }

    // ---- installations -------------------------------------------------------------

    fn installation_of(row: &Row) -> Installation {
        Installation {
            tenant: text(row, 0),
            id: text(row, 1),
            component: text(row, 2),
            config: json(row, 3),
            // Stored grants that no longer parse grant nothing: deny by default.
            grants: text(row, 4).parse().unwrap_or_default(),
            limits: serde_json::from_str(row[5].text().unwrap_or("{}")).unwrap_or_default(),
            tick_interval_ms: row[6].int().map(|v| v as u64),
            enabled: int(row, 7) != 0,
            parked: row[8].text().map(str::to_owned),
            created_ms: int(row, 9),
            updated_ms: int(row, 10),
        }
    }

    pub async fn create_installation(&self, i: &Installation) -> Result<(), PlinthError> {
        let inserted = self
            .store
            .execute(
                &format!(
                    "INSERT INTO installations ({INSTALLATION_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (tenant, id) DO NOTHING"
                ),
                Self::installation_params(i)?,
            )
            .await?;
        if inserted == 0 {
            return Err(PlinthError::new(
                ErrorCode::Conflict,
                format!("tenant {} already has an installation {}", i.tenant, i.id),
            ));
        }
        Ok(())
    }

    fn installation_params(i: &Installation) -> Result<Vec<Sql>, PlinthError> {
        Ok(vec![
            i.tenant.clone().into(),
            i.id.clone().into(),
            i.component.clone().into(),
            i.config.to_string().into(),
            i.grants.to_string().into(),
            serde_json::to_string(&i.limits)
                .map_err(|e| internal(e.to_string()))?
                .into(),
            i.tick_interval_ms.map(|v| v as i64).into(),
            i64::from(i.enabled).into(),
            i.parked.clone().into(),
            i.created_ms.into(),
            i.updated_ms.into(),
        ])
    }

    /// How many installations `tenant` has.
    pub async fn installation_count(&self, tenant: &str) -> Result<u64, PlinthError> {
        let rows = self
            .store
            .query(
                "SELECT count(*) FROM installations WHERE tenant = $1",
                vec![tenant.into()],
            )
            .await?;
        Ok(rows.first().map_or(0, |row| int(row, 0)).max(0) as u64)
    }

    /// Writes every field of an existing installation.
    pub async fn update_installation(&self, i: &Installation) -> Result<(), PlinthError> {
        let changed = self
            .store
            .execute(
                "UPDATE installations SET component = $3, config = $4, grants = $5, limits = $6,
                 tick_ms = $7, enabled = $8, parked = $9, created_ms = $10, updated_ms = $11
                 WHERE tenant = $1 AND id = $2",
                Self::installation_params(i)?,
            )
            .await?;
        if changed == 0 {
            return Err(not_found(format!(
                "tenant {} has no installation {}",
                i.tenant, i.id
            )));
        }
        Ok(())
    }

    /// Parks an installation unless it is parked already; whether this call parked it.
    pub async fn park(&self, tenant: &str, id: &str, reason: &str) -> Result<bool, PlinthError> {
        Ok(self
            .store
            .execute(
                "UPDATE installations SET parked = $3, updated_ms = $4
                 WHERE tenant = $1 AND id = $2 AND parked IS NULL",
                vec![tenant.into(), id.into(), reason.into(), now_ms().into()],
            )
            .await?
            == 1)
    }

    pub async fn installation(&self, tenant: &str, id: &str) -> Result<Installation, PlinthError> {
        self.store
            .query(
                &format!(
                    "SELECT {INSTALLATION_COLUMNS} FROM installations WHERE tenant = $1 AND id = $2"
                ),
                vec![tenant.into(), id.into()],
            )
            .await?
            .first()
            .map(Self::installation_of)
            .ok_or_else(|| not_found(format!("tenant {tenant} has no installation {id}")))
    }

    pub async fn installations(&self, tenant: &str) -> Result<Vec<Installation>, PlinthError> {
        Ok(self
            .store
            .query(
                &format!(
                    "SELECT {INSTALLATION_COLUMNS} FROM installations WHERE tenant = $1 ORDER BY id"
                ),
                vec![tenant.into()],
            )
            .await?
            .iter()
            .map(Self::installation_of)
            .collect())
    }

    /// Every installation that ticks: enabled, not parked, with an interval.
    pub async fn ticking(&self) -> Result<Vec<Installation>, PlinthError> {
        Ok(self
            .store
            .query(
                &format!(
                    "SELECT {INSTALLATION_COLUMNS} FROM installations
                     WHERE enabled = 1 AND parked IS NULL AND tick_ms IS NOT NULL"
                ),
                vec![],
            )
            .await?
            .iter()
            .map(Self::installation_of)
            .collect())
    }

    pub async fn delete_installation(&self, tenant: &str, id: &str) -> Result<(), PlinthError> {
        let deleted = self
            .store
            .execute(
                "DELETE FROM installations WHERE tenant = $1 AND id = $2",
                vec![tenant.into(), id.into()],
            )
            .await?;
        if deleted == 0 {
            return Err(not_found(format!(
                "tenant {tenant} has no installation {id}"
            )));
        }
        Ok(())
    }

    /// Claims the tick of an installation due at `due_ms` for this node: true for exactly
    /// one node of those sharing the store, however many try.
    pub async fn claim_tick(
        &self,
        tenant: &str,
        id: &str,
        due_ms: i64,
        node: &str,
    ) -> Result<bool, PlinthError> {
        Ok(self
            .store
            .execute(
                "UPDATE installations SET tick_claim_ms = $3, tick_node = $4
                 WHERE tenant = $1 AND id = $2 AND tick_claim_ms < $3
                   AND enabled = 1 AND parked IS NULL",
                vec![tenant.into(), id.into(), due_ms.into(), node.into()],
            )
            .await?
            == 1)
    }

    // ---- dashboards ----------------------------------------------------------------

    pub async fn put_dashboard(
        &self,
        tenant: &str,
        name: &str,
        tiles: &[Tile],
    ) -> Result<Dashboard, PlinthError> {
        check_id("dashboard", name)?;
        let updated = now_ms();
        self.store
            .execute(
                "INSERT INTO dashboards (tenant, name, tiles, updated_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, name) DO UPDATE SET tiles = $3, updated_ms = $4",
                vec![
                    tenant.into(),
                    name.into(),
                    serde_json::to_string(tiles)
                        .map_err(|e| internal(e.to_string()))?
                        .into(),
                    updated.into(),
                ],
            )
            .await?;
        Ok(Dashboard {
            name: name.to_owned(),
            tiles: tiles.to_vec(),
            updated_ms: updated,
        })
    }

    fn dashboard_of(row: &Row) -> Dashboard {
        Dashboard {
            name: text(row, 0),
            tiles: serde_json::from_str(row[1].text().unwrap_or("[]")).unwrap_or_default(),
            updated_ms: int(row, 2),
        }
    }

    pub async fn dashboard(&self, tenant: &str, name: &str) -> Result<Dashboard, PlinthError> {
        self.store
            .query(
                "SELECT name, tiles, updated_ms FROM dashboards WHERE tenant = $1 AND name = $2",
                vec![tenant.into(), name.into()],
            )
            .await?
            .first()
            .map(Self::dashboard_of)
            .ok_or_else(|| not_found(format!("tenant {tenant} has no dashboard {name}")))
    }

    pub async fn dashboards(&self, tenant: &str) -> Result<Vec<Dashboard>, PlinthError> {
        Ok(self
            .store
            .query(
                "SELECT name, tiles, updated_ms FROM dashboards WHERE tenant = $1 ORDER BY name",
                vec![tenant.into()],
            )
            .await?
            .iter()
            .map(Self::dashboard_of)
            .collect())
    }

    pub async fn delete_dashboard(&self, tenant: &str, name: &str) -> Result<(), PlinthError> {
        let deleted = self
            .store
            .execute(
                "DELETE FROM dashboards WHERE tenant = $1 AND name = $2",
                vec![tenant.into(), name.into()],
            )
            .await?;
        if deleted == 0 {
            return Err(not_found(format!(
                "tenant {tenant} has no dashboard {name}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_quota_leaves_out_the_newer_fields_at_their_defaults() {
        let first_two = TenantQuota {
            concurrent_calls: 4,
            fuel_per_minute: None,
            ..TenantQuota::default()
        };
        let stored = stored_quota(&first_two).unwrap();
        assert_eq!(stored, r#"{"concurrent_calls":4,"fuel_per_minute":null}"#);
        let newer = TenantQuota {
            fuel_metering: false,
            installations: 10,
            ..first_two
        };
        let stored = stored_quota(&newer).unwrap();
        assert_eq!(
            serde_json::from_str::<TenantQuota>(&stored).unwrap(),
            newer,
            "{stored}"
        );
    }
}
