//! Locks that outlive a panic. A thread that panicked while holding one of the host's
//! locks left plain maps and counters behind, never a half-made invariant, so the next
//! holder takes the data as it is rather than poisoning every later call.

use std::sync::PoisonError;

/// `lock().recover()`: the guard, poisoned or not.
pub trait Recover<G> {
    fn recover(self) -> G;
}

impl<G> Recover<G> for Result<G, PoisonError<G>> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}
