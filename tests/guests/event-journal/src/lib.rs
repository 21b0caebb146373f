//! The event journal (`event-journal` 1.0.0), a test guest of the server's event tests:
//! a widget and handler that records every delivery and then does what the event asks.
//!
//! Handles `test.*`. For every delivery it first inserts `(seq, event.id, event.attempt,
//! event.name)` into `journal (seq INTEGER, event_id TEXT, attempt INTEGER, name TEXT)`
//! (created if missing; `seq` counts deliveries in the order they ran), redeliveries
//! included, then reads the payload (any JSON):
//!
//! - `{"fail": "unavailable" | "timeout" | "internal" | "rejected" | "invalid-input" |
//!   "not-found" | "denied" | "quota-exceeded"}`: returns that error (an unknown kind is
//!   `invalid-input`); the journal row stays, the database is not transactional with the call;
//! - `{"spin_ms": n}`: holds the handler for n ms of wall time first;
//! - `{"trap": true}`: panics (the guest traps). `event-journal-fixed` (1.0.1) handles it
//!   normally instead; that is the only difference between the two;
//! - anything else: publishes `{"event": id, "attempt": n}` on topic `journal`.
//!
//! Render (param `page`, default 0, 500 rows a page) returns one `custom` view:
//! `{"deliveries": rows in the journal, "events": distinct event ids, "rows":
//! [[event_id, attempt], …]}`, the page's rows in the order they ran.

/// 1.0.0 traps on `{"trap": true}`; see `journal.rs`.
const FIXED: bool = false;

include!("journal.rs");
