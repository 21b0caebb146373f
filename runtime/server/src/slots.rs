//! Places for request bodies being received: the node holds at most so many bodies at
//! once, and each owner (a tenant for uploads, a token for JSON bodies) at most so many
//! of them, so authorized clients cannot make the node hold bodies without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use plinth_host::lock::Recover;
use plinth_host::{ErrorCode, PlinthError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Places for request bodies being received: a number on the node and a number per
/// owner (a tenant, a token).
pub struct Slots {
    what: &'static str,
    node: Arc<Semaphore>,
    node_cap: usize,
    owner_cap: usize,
    by_owner: Arc<Mutex<HashMap<String, usize>>>,
}

impl Slots {
    pub fn new(what: &'static str, node_cap: usize, owner_cap: usize) -> Slots {
        Slots {
            what,
            node: Arc::new(Semaphore::new(node_cap)),
            node_cap,
            owner_cap,
            by_owner: Arc::default(),
        }
    }

    /// One place for `owner` (a `kind`: tenant, token), or `RATE_LIMITED`.
    pub fn take(&self, kind: &str, owner: &str) -> Result<Slot, PlinthError> {
        let busy = |what: String| {
            PlinthError::new(ErrorCode::RateLimited, format!("{what}; try again shortly"))
        };
        let mut by_owner = self.by_owner.lock().recover();
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

/// A body's place, from [`Slots::take`]; given back when dropped.
pub struct Slot {
    _node: OwnedSemaphorePermit,
    owner: String,
    by_owner: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_owner = self.by_owner.lock().recover();
        if let Some(receiving) = by_owner.get_mut(&self.owner) {
            *receiving -= 1;
            if *receiving == 0 {
                by_owner.remove(&self.owner);
            }
        }
    }
}
