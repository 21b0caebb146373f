//! The server's configuration: embedded defaults, a TOML file, then environment
//! variables, each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plinth_host::{
    BackendsConfig, BroadcastConfig, CacheConfig, DbConfig, ErrorCode, Limits, PlinthError,
    TenantQuota,
};
use serde::Deserialize;

/// Everything `plinth serve` needs. Every field has an embedded default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP and WebSocket server listens on.
    pub listen: SocketAddr,
    /// Where embedded backends, compiled code and the SQLite metadata live.
    pub data_dir: PathBuf,
    /// Where tenants, tokens, components, installations and dashboards are kept.
    pub metadata: MetadataConfig,
    /// The capability backends (`[backends.cache] type = "redis"` …).
    pub backends: BackendsConfig,
    /// The origins browsers reach this server at (`https://console.example.com`): the
    /// console's own origin for the WebSocket `Origin` check and the Content-Security-
    /// Policy. Empty: `http://127.0.0.1:PORT` and `http://localhost:PORT` of `listen`.
    /// Never the request's `Host` header, which any page's request can set.
    pub public_origins: Vec<String>,
    /// More origins a browser may open the WebSocket from (`Origin` header), besides
    /// `public_origins`. Clients that send no `Origin` (not browsers) pass.
    pub allowed_origins: Vec<String>,
    /// Where `/metrics` is served without a token (`127.0.0.1:9090`), and then not on
    /// `listen`. None: on `listen`, to operator tokens only (metrics name every tenant
    /// and extension).
    pub metrics_listen: Option<SocketAddr>,
    /// Create the demo tenant with the example extensions at startup.
    pub demo: bool,
    /// Limits an installation gets when it names none.
    pub default_limits: Limits,
    /// Per-tenant quotas, unless an operator sets a tenant's own.
    pub tenant_quota: TenantQuota,
    pub http: HttpConfig,
    pub websocket: WebSocketConfig,
    pub scheduler: SchedulerConfig,
    pub events: EventsConfig,
    /// Identifies this node in tick claims and logs; a random id when empty.
    pub node_id: String,
    /// Concurrent guest instances the engine's pool holds slots for.
    pub pool_instances: u32,
    /// Unused pool slots kept warm for the version that last used them (see
    /// `SandboxConfig::pool_warm_slots`).
    pub pool_warm_slots: u32,
    /// Serve the console's files from this directory instead of the ones built into
    /// the binary (for working on the console without rebuilding the server).
    pub console_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./plinth-data"),
            metadata: MetadataConfig::Sqlite,
            backends: BackendsConfig::default(),
            public_origins: Vec::new(),
            allowed_origins: Vec::new(),
            metrics_listen: None,
            demo: true,
            default_limits: Limits::default(),
            tenant_quota: TenantQuota::default(),
            http: HttpConfig::default(),
            websocket: WebSocketConfig::default(),
            scheduler: SchedulerConfig::default(),
            events: EventsConfig::default(),
            node_id: String::new(),
            pool_instances: 256,
            pool_warm_slots: 100,
            console_dir: None,
        }
    }
}

/// Where the registry's metadata lives.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MetadataConfig {
    /// `data_dir/metadata.sqlite3`: one node.
    #[default]
    Sqlite,
    /// PostgreSQL, shared by every node; tables in their own schema.
    Postgres {
        url: String,
        #[serde(default = "default_schema")]
        schema: String,
    },
}

fn default_schema() -> String {
    "plinth".to_owned()
}

/// Request limits of the REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest component upload, in bytes; larger is `PAYLOAD_TOO_LARGE` (413).
    pub max_upload_bytes: usize,
    /// Largest JSON body of any other request.
    pub max_body_bytes: usize,
    /// Components compiled at once; one more upload is `RATE_LIMITED` (429).
    pub compile_slots: usize,
    /// Longest a compilation may take; longer is `COMPILE_TIMEOUT` (503).
    #[serde(with = "duration_ms")]
    pub compile_timeout: Duration,
    /// Uploads received at once on this node; each may hold `max_upload_bytes` in
    /// memory, so this bounds what uploads can take. One more is `RATE_LIMITED` (429).
    pub upload_slots: usize,
    /// Uploads of one tenant received at once, so one tenant cannot take every slot.
    pub upload_slots_per_tenant: usize,
    /// JSON request bodies (up to `max_body_bytes` each) received at once on this node;
    /// one more is `RATE_LIMITED` (429).
    pub body_slots: usize,
    /// JSON request bodies received at once for one token.
    pub body_slots_per_token: usize,
    /// Time a client has to send a request's headers, counted from when the connection
    /// opens or its previous response ends: a slow or silent client (slowloris) and an
    /// idle keep-alive connection are both closed after it.
    #[serde(with = "duration_ms")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body once its headers are in and it
    /// is authorized; past it, `408 REQUEST_TIMEOUT` and the connection is closed, so a
    /// trickling upload cannot hold its upload slot (or a graceful stop) forever.
    #[serde(with = "duration_ms")]
    pub body_read_timeout: Duration,
    /// Connections open at once (WebSockets included); more are answered `503
    /// UNAVAILABLE` and closed at once, before reading anything.
    pub max_connections: usize,
    /// Connections open at once from one client address, so that one client cannot take
    /// every place under `max_connections`; more are refused the same way.
    pub max_connections_per_address: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_upload_bytes: 32 << 20,
            max_body_bytes: 1 << 20,
            compile_slots: 2,
            compile_timeout: Duration::from_secs(120),
            upload_slots: 4,
            upload_slots_per_tenant: 2,
            body_slots: 256,
            body_slots_per_token: 16,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            max_connections_per_address: 256,
        }
    }
}

/// The WebSocket hub's bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Messages queued for one connection. When a message finds the queue full, the
    /// connection is told (`slow_consumer`) and closed: a slow browser never makes the
    /// server hold more than this per connection.
    pub queue_messages: usize,
    /// Largest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Messages a client may send per second (burst: twice as many).
    pub messages_per_second: u32,
    /// Topics one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Interval of the server's pings; a connection silent for three is closed.
    #[serde(with = "duration_ms")]
    pub heartbeat: Duration,
    /// Sockets one token may hold open on this node; one more is refused (429
    /// `QUOTA_EXCEEDED`) before the upgrade.
    pub max_sockets_per_token: usize,
    /// Sockets the tokens of one tenant may hold open on this node.
    pub max_sockets_per_tenant: usize,
    /// Distinct topics of one tenant this node relays at once: each costs a relay and a
    /// channel however many sockets share it, so this bounds what a tenant's
    /// subscriptions can pin (a subscription to one more is refused).
    pub max_topics_per_tenant: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            queue_messages: 256,
            max_message_bytes: 16 << 10,
            messages_per_second: 20,
            max_subscriptions: 64,
            heartbeat: Duration::from_secs(20),
            max_sockets_per_token: 16,
            max_sockets_per_tenant: 1_024,
            max_topics_per_tenant: 256,
        }
    }
}

/// Longest tick interval an installation may have (the install API refuses longer);
/// keeps every due-time computation far from overflow.
pub const MAX_INTERVAL_MS: u64 = 24 * 60 * 60 * 1000;

/// The tick scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    pub enabled: bool,
    /// Shortest tick interval an installation may ask for.
    #[serde(with = "duration_ms")]
    pub min_interval: Duration,
    /// Each tick is moved by up to this fraction of its interval, so installations
    /// created together do not tick together.
    pub jitter: f64,
    /// Ticks running at once on this node, over all tenants.
    pub max_running: usize,
    /// Ticks of one tenant running at once on this node.
    pub max_running_per_tenant: usize,
    /// Guest faults in a row (trap, timeout, fuel, memory) that park an installation.
    pub breaker_failures: u32,
    /// Claim each tick in the metadata database so that one node of several runs it.
    /// `None`: claim when the metadata is shared (PostgreSQL).
    pub claim_ticks: Option<bool>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            min_interval: Duration::from_millis(1_000),
            jitter: 0.1,
            max_running: 64,
            max_running_per_tenant: 4,
            breaker_failures: 5,
            claim_ticks: None,
        }
    }
}

/// Where accepted events wait for their handlers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EventQueueConfig {
    /// `data_dir/events.sqlite3` (WAL): one node.
    #[default]
    Sqlite,
    /// Redis Streams, shared by every node.
    Redis {
        url: String,
        /// Prefix of every key; deployments sharing one Redis need their own.
        #[serde(default = "default_events_prefix")]
        prefix: String,
    },
}

fn default_events_prefix() -> String {
    "plinth:events:".to_owned()
}

impl EventQueueConfig {
    /// Redis at `url` with the default prefix.
    pub fn redis(url: &str) -> Self {
        EventQueueConfig::Redis {
            url: url.to_owned(),
            prefix: default_events_prefix(),
        }
    }
}

/// Event intake and delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    pub queue: EventQueueConfig,
    /// Run handlers on this node (an intake-only node sets false).
    pub enabled: bool,
    /// Largest payload of one event, in bytes; larger is `PAYLOAD_TOO_LARGE` (413).
    pub max_payload_bytes: usize,
    /// Events in one request at most.
    pub max_batch: usize,
    /// Events a tenant may post per second on this node; more is `RATE_LIMITED` (429).
    pub rate_per_second: u32,
    /// Events a tenant may post at once above the rate.
    pub burst: u32,
    /// Deliveries a tenant may have waiting; a batch that would pass it is
    /// `RATE_LIMITED` (429) until handlers catch up.
    pub max_backlog: u64,
    /// How long an event id is remembered: a repeat within it is a duplicate.
    #[serde(with = "duration_ms")]
    pub retention: Duration,
    /// Attempts of a delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles per attempt, with jitter.
    #[serde(with = "duration_ms")]
    pub backoff_base: Duration,
    #[serde(with = "duration_ms")]
    pub backoff_max: Duration,
    /// Deliveries running at once on this node.
    pub max_running: usize,
    /// Deliveries of one tenant running at once on this node.
    pub max_running_per_tenant: usize,
    /// How long a delivery taken by a node that died stays its own before another
    /// node takes it over (Redis). A node running a delivery renews its claim every
    /// third of this, so a handler may run longer.
    #[serde(with = "duration_ms")]
    pub lease: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue: EventQueueConfig::Sqlite,
            enabled: true,
            max_payload_bytes: 64 << 10,
            max_batch: 1_000,
            rate_per_second: 10_000,
            burst: 20_000,
            max_backlog: 100_000,
            retention: Duration::from_secs(24 * 3600),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_running: 32,
            max_running_per_tenant: 8,
            lease: Duration::from_secs(30),
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

/// Environment variables `plinth serve` reads, with what they set.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("PLINTH_LISTEN", "address to listen on (127.0.0.1:8080)"),
    ("PLINTH_DATA_DIR", "data directory (./plinth-data)"),
    (
        "PLINTH_REDIS_URL",
        "use Redis for the cache, broadcast and event queue (redis://127.0.0.1:6379)",
    ),
    (
        "PLINTH_POSTGRES_URL",
        "use PostgreSQL for metadata and tenant databases (postgres://user@host/db)",
    ),
    (
        "PLINTH_PUBLIC_ORIGINS",
        "comma-separated origins browsers reach this server at",
    ),
    (
        "PLINTH_ALLOWED_ORIGINS",
        "comma-separated origins allowed to open the WebSocket",
    ),
    (
        "PLINTH_METRICS_LISTEN",
        "serve /metrics without a token on this address only (127.0.0.1:9090)",
    ),
    ("PLINTH_DEMO", "create the demo tenant: true or false"),
    ("PLINTH_NODE_ID", "this node's name in tick claims and logs"),
    (
        "PLINTH_CONSOLE_DIR",
        "serve the console's files from this directory (runtime/server/console)",
    ),
];

impl ServerConfig {
    /// The embedded defaults, then `file` if given, then the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PlinthError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(format!("cannot read config file {}: {e}", path.display()))
                })?;
                toml::from_str::<ServerConfig>(&text)
                    .map_err(|e| invalid(format!("config file {}: {e}", path.display())))?
            }
            None => ServerConfig::default(),
        };
        if let Some(listen) = env("PLINTH_LISTEN") {
            config.listen = listen
                .parse()
                .map_err(|e| invalid(format!("PLINTH_LISTEN={listen}: {e}")))?;
        }
        if let Some(dir) = env("PLINTH_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        if let Some(url) = env("PLINTH_REDIS_URL") {
            config.events.queue = EventQueueConfig::redis(&url);
            config.backends.cache = CacheConfig::Redis { url: url.clone() };
            config.backends.broadcast = BroadcastConfig::Redis { url };
        }
        if let Some(url) = env("PLINTH_POSTGRES_URL") {
            config.backends.db = DbConfig::Postgres { url: url.clone() };
            config.metadata = MetadataConfig::Postgres {
                url,
                schema: default_schema(),
            };
        }
        if let Some(origins) = env("PLINTH_PUBLIC_ORIGINS") {
            config.public_origins = origin_list(&origins);
        }
        if let Some(origins) = env("PLINTH_ALLOWED_ORIGINS") {
            config.allowed_origins = origin_list(&origins);
        }
        if let Some(listen) = env("PLINTH_METRICS_LISTEN") {
            config.metrics_listen = Some(
                listen
                    .parse()
                    .map_err(|e| invalid(format!("PLINTH_METRICS_LISTEN={listen}: {e}")))?,
            );
        }
        if let Some(demo) = env("PLINTH_DEMO") {
            config.demo = match demo.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => return Err(invalid(format!("PLINTH_DEMO={other}: true or false"))),
            };
        }
        if let Some(node) = env("PLINTH_NODE_ID") {
            config.node_id = node;
        }
        if let Some(dir) = env("PLINTH_CONSOLE_DIR") {
            config.console_dir = Some(PathBuf::from(dir));
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PlinthError> {
        self.default_limits.validate()?;
        self.tenant_quota
            .validate()
            .map_err(|e| invalid(format!("tenant_quota: {}", e.message)))?;
        if self.http.compile_slots == 0
            || self.http.upload_slots == 0
            || self.http.upload_slots_per_tenant == 0
            || self.http.body_slots == 0
            || self.http.body_slots_per_token == 0
            || self.http.max_connections == 0
            || self.http.max_connections_per_address == 0
            || self.scheduler.max_running == 0
            || self.scheduler.max_running_per_tenant == 0
        {
            return Err(invalid(
                "http.compile_slots, upload_slots, upload_slots_per_tenant, body_slots, \
                 body_slots_per_token, max_connections, \
                 max_connections_per_address, \
                 scheduler.max_running and max_running_per_tenant must be at least 1"
                    .into(),
            ));
        }
        let events = &self.events;
        if events.max_running == 0
            || events.max_running_per_tenant == 0
            || events.max_attempts == 0
            || events.max_batch == 0
            || events.max_payload_bytes == 0
            || events.rate_per_second == 0
        {
            return Err(invalid(
                "events.max_running, max_running_per_tenant, max_attempts, max_batch, \
                 max_payload_bytes and rate_per_second must be at least 1"
                    .into(),
            ));
        }
        if (events.burst as usize) < events.max_batch {
            return Err(invalid(format!(
                "events.burst ({}) must be at least events.max_batch ({}), or a full batch is \
                 never admitted",
                events.burst, events.max_batch
            )));
        }
        if events.retention < Duration::from_secs(1)
            || events.lease < Duration::from_secs(1)
            || events.backoff_base.is_zero()
            || events.backoff_max < events.backoff_base
        {
            return Err(invalid(
                "events.retention and lease must be at least 1000 ms, backoff_base more than \
                 0 ms and backoff_max at least backoff_base"
                    .into(),
            ));
        }
        if self.websocket.heartbeat.is_zero()
            || self.scheduler.min_interval.is_zero()
            || self.http.header_read_timeout.is_zero()
            || self.http.body_read_timeout.is_zero()
        {
            return Err(invalid(
                "websocket.heartbeat, scheduler.min_interval, http.header_read_timeout and \
                 http.body_read_timeout must be more than 0 ms"
                    .into(),
            ));
        }
        if let Some(bad) = self
            .public_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
        {
            return Err(invalid(format!(
                "public_origins: {bad:?} is not an origin (scheme://host[:port], no path)"
            )));
        }
        if !(0.0..=0.5).contains(&self.scheduler.jitter) {
            return Err(invalid("scheduler.jitter must be within 0.0..=0.5".into()));
        }
        if self.websocket.queue_messages == 0 || self.websocket.messages_per_second == 0 {
            return Err(invalid(
                "websocket.queue_messages and messages_per_second must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The origins browsers reach this server at: `public_origins`, or when empty the
    /// loopback origins of `listen` (its port; a wildcard address is reached on loopback
    /// too). [`crate::start`] puts the bound port in `listen` first.
    pub fn public_origins(&self) -> Vec<String> {
        if !self.public_origins.is_empty() {
            return self.public_origins.clone();
        }
        let port = self.listen.port();
        let ip = self.listen.ip();
        let mut origins = vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ];
        if !ip.is_unspecified() && !ip.is_loopback() {
            origins.push(format!("http://{}", self.listen));
        }
        if ip.is_ipv6() {
            origins.push(format!("http://[::1]:{port}"));
        }
        origins
    }

    /// Whether this node claims ticks in the metadata database.
    pub fn claims_ticks(&self) -> bool {
        self.scheduler
            .claim_ticks
            .unwrap_or(matches!(self.metadata, MetadataConfig::Postgres { .. }))
    }
}

fn origin_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

fn invalid(message: String) -> PlinthError {
    PlinthError::new(ErrorCode::InvalidRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("plinth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plinth.toml");
        std::fs::write(
            &file,
            r#"
listen = "0.0.0.0:9000"
demo = false
pool_warm_slots = 256
[backends.cache]
type = "redis"
url = "redis://10.0.0.1:6379"
[websocket]
queue_messages = 8
"#,
        )
        .unwrap();
        let config = ServerConfig::load(Some(&file), |name| {
            (name == "PLINTH_POSTGRES_URL").then(|| "postgres://root@127.0.0.1/test".to_owned())
        })
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert!(!config.demo);
        assert_eq!(config.websocket.queue_messages, 8);
        assert_eq!((config.pool_instances, config.pool_warm_slots), (256, 256));
        assert!(matches!(config.backends.cache, CacheConfig::Redis { .. }));
        assert!(matches!(config.metadata, MetadataConfig::Postgres { .. }));
        assert!(config.claims_ticks());

        std::fs::write(&file, "lisen = \"x\"").unwrap();
        let error = ServerConfig::load(Some(&file), |_| None).unwrap_err();
        assert!(error.message.contains("lisen"), "{}", error.message);
        let error = ServerConfig::load(None, |name| {
            (name == "PLINTH_LISTEN").then(|| "nowhere".to_owned())
        })
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn the_default_tenant_quota_is_checked() {
        let dir = std::env::temp_dir().join(format!("plinth-quota-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plinth.toml");
        let quota = "[tenant_quota]\nconcurrent_calls = 8\nfuel_metering = false\n";
        std::fs::write(&file, quota).unwrap();
        let config = ServerConfig::load(Some(&file), |_| None).unwrap();
        let expected = (8, None, false, 1_000);
        let q = &config.tenant_quota;
        assert_eq!(
            (
                q.concurrent_calls,
                q.fuel_per_minute,
                q.fuel_metering,
                q.installations
            ),
            expected
        );
        std::fs::write(&file, format!("{quota}fuel_per_minute = 1000\n")).unwrap();
        let error = ServerConfig::load(Some(&file), |_| None).unwrap_err();
        assert!(error.message.contains("tenant_quota"), "{}", error.message);
        assert!(error.message.contains("fuel_metering"), "{}", error.message);
    }
}
