//! The event queue's backend trait and what crosses it: accepted events with the
//! installations they are routed to, deliveries taken to run, and what became of each.
//! Two backends implement it: [`super::sqlite`] (WAL, in the data directory) and
//! [`super::redis`] (Redis Streams with consumer groups).

use async_trait::async_trait;
use plinth_host::{BackendError, PlinthError, Receipt};
use serde::{Deserialize, Serialize};

/// Which deliveries of a tenant run first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// 0 for high, 2 for low: sorts high first.
    pub fn rank(self) -> i64 {
        self as i64
    }
}

/// An event as the queue keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    /// The publisher's idempotency key.
    pub id: String,
    pub name: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    /// Deliveries with the same key (to the same installation) run one at a time, in
    /// the order they were accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When it was accepted, milliseconds since the Unix epoch.
    pub accepted_ms: i64,
}

/// An event and the installations it is delivered to.
pub struct Routed {
    pub event: StoredEvent,
    pub installations: Vec<String>,
}

/// Which ids of a batch were new and which were seen before (within the retention).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Acceptance {
    pub accepted: Vec<String>,
    pub duplicates: Vec<String>,
}

/// One event for one installation, taken to run.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub tenant: String,
    pub installation: String,
    pub event: StoredEvent,
    /// 1 for the first run, 2 for the next, …; a run cut short by a crash counts.
    pub attempt: u32,
    /// The backend's handle on it (a row, a stream entry).
    pub(crate) handle: Handle,
}

#[derive(Debug, Clone)]
pub(crate) enum Handle {
    Row(i64),
    Entry {
        stream: String,
        id: String,
        /// Its place in its key's order, when it has a key.
        ticket: Option<u64>,
    },
}

/// What became of a delivery.
#[derive(Debug, Clone)]
pub enum Fate {
    /// The handler succeeded.
    Done,
    /// Run again at `due_ms` (an attempt was used).
    Retry { due_ms: i64 },
    /// Not run (installation parked or disabled, an earlier delivery of its key still
    /// open): run at `due_ms`, the attempt not used.
    Wait { due_ms: i64 },
    /// Given up: kept as a dead letter.
    Dead {
        error: PlinthError,
        receipt: Option<Box<Receipt>>,
    },
    /// The installation no longer exists.
    Void,
}

/// A delivery given up on, kept until replayed or purged.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: String,
    pub installation: String,
    pub event: StoredEvent,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: PlinthError,
    /// The last attempt's receipt, when it ran (as the receipts API shows them).
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
    pub dead_ms: i64,
}

/// Which dead letters an operation is about.
#[derive(Debug, Clone)]
pub enum Selection {
    One(String),
    Installation(String),
    All,
}

/// Deliveries of a tenant not yet settled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Backlog {
    /// Deliveries waiting, running or to be retried.
    pub waiting: u64,
    /// Acceptance time of the oldest of them, milliseconds since the Unix epoch.
    pub oldest_ms: Option<i64>,
    /// Dead letters kept.
    pub dead_letters: u64,
}

#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Which backend, for logs and the API (`sqlite`, `redis`).
    fn kind(&self) -> &'static str;

    /// Stores the events and their deliveries durably, one transaction for the batch.
    /// An id seen within `retention_ms` is a duplicate and gets no deliveries. When the
    /// tenant's open deliveries and dead letters with the batch's would pass `max_open`,
    /// nothing is stored: `QuotaExceeded`.
    async fn accept(
        &self,
        tenant: &str,
        events: Vec<Routed>,
        retention_ms: i64,
        max_open: u64,
    ) -> Result<Acceptance, BackendError>;

    /// Tenants that may have deliveries due.
    async fn tenants(&self) -> Result<Vec<String>, BackendError>;

    /// Housekeeping, once a second: what expires and is not expired by the store itself.
    async fn sweep(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Up to `max` deliveries of `tenant` due now, high priority first, in acceptance
    /// order within a priority, none whose key has an earlier delivery open. A taken
    /// delivery not settled within `lease_ms` (its node died) is taken again, with a
    /// higher attempt.
    async fn take(
        &self,
        tenant: &str,
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, BackendError>;

    /// Records what became of a taken delivery.
    async fn settle(&self, delivery: &Delivery, fate: Fate) -> Result<(), BackendError>;

    /// Says a taken delivery is still running here, so no other node takes it over
    /// while its handler runs longer than the lease. Nothing to do for one node.
    async fn touch(&self, _delivery: &Delivery) -> Result<(), BackendError> {
        Ok(())
    }

    /// One dead letter.
    async fn dead_letter(&self, tenant: &str, id: &str)
    -> Result<Option<DeadLetter>, BackendError>;

    async fn dead_letters(
        &self,
        tenant: &str,
        installation: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError>;

    /// Puts dead letters back as deliveries (attempts start over at 1); how many.
    async fn replay(&self, tenant: &str, which: &Selection) -> Result<u64, BackendError>;

    /// Deletes dead letters; how many.
    async fn purge(&self, tenant: &str, which: &Selection) -> Result<u64, BackendError>;

    async fn backlog(&self, tenant: &str) -> Result<Backlog, BackendError>;

    /// Drops everything of a deleted tenant.
    async fn forget_tenant(&self, tenant: &str) -> Result<(), BackendError>;
}

/// The refusal of a batch over the backlog cap.
pub(crate) fn over_backlog(open: u64, adding: u64, max_open: u64) -> BackendError {
    BackendError::QuotaExceeded(format!(
        "{open} deliveries waiting or dead-lettered, {adding} more in this batch; at most \
         {max_open} together (events.max_backlog): try again later, or replay or purge dead letters"
    ))
}

/// A fresh id for a dead letter.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 8];
    // The OS's random source failing is beyond recovery here; time keeps ids unique
    // enough for a key that is only ever looked up within one tenant.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (crate::registry::now_ms() as u64).to_le_bytes();
    }
    hex::encode(bytes)
}
