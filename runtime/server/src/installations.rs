//! Installations as calls see them: read from the registry and remembered for a moment,
//! so a render does not wait on the metadata database, and forgotten the moment this
//! node changes one. The scheduler waits on [`Installations::changed`] to reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plinth_host::PlinthError;
use plinth_host::lock::Recover;
use tokio::sync::Notify;

use crate::registry::{Installation, Registry};

/// How long a node trusts its copy of an installation. Changes made on this node are
/// seen at once; changes made on another node within this time.
const INSTALLATION_MEMORY: Duration = Duration::from_secs(1);

/// Copies remembered at most; past this the memory starts over.
const REMEMBERED: usize = 100_000;

type Key = (String, String);

pub struct Installations {
    registry: Arc<Registry>,
    memory: Mutex<HashMap<Key, (Instant, Installation)>>,
    changed: Notify,
    /// Counts changes made on this node, so memories built from installations (the
    /// event routes) know when to start over.
    generation: AtomicU64,
}

impl Installations {
    pub fn new(registry: Arc<Registry>) -> Self {
        Installations {
            registry,
            memory: Mutex::default(),
            changed: Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// An installation: from memory when read within [`INSTALLATION_MEMORY`], else from
    /// the registry.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Installation, PlinthError> {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some((at, found)) = self.memory.lock().recover().get(&key)
            && at.elapsed() < INSTALLATION_MEMORY
        {
            return Ok(found.clone());
        }
        let found = self.registry.installation(tenant, id).await?;
        let mut memory = self.memory.lock().recover();
        if memory.len() >= REMEMBERED {
            memory.clear();
        }
        memory.insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Forgets the remembered copy of an installation this node changed, and wakes the
    /// scheduler.
    pub fn changed(&self, tenant: &str, id: &str) {
        self.memory
            .lock()
            .recover()
            .remove(&(tenant.to_owned(), id.to_owned()));
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Forgets every installation of a deleted tenant, and wakes the scheduler.
    pub fn forget_tenant(&self, tenant: &str) {
        self.memory
            .lock()
            .recover()
            .retain(|key, _| key.0 != tenant);
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Changes made on this node so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Resolves at the next change made on this node (or one made before and not yet
    /// waited for).
    pub async fn next_change(&self) {
        self.changed.notified().await
    }
}
