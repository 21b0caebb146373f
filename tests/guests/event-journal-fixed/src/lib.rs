//! The event journal 1.0.1 (`event-journal-fixed`), a test guest of the server's event
//! tests: the same extension id and code as `event-journal` 1.0.0, with the trap fixed,
//! so a test can upgrade an installation from the trapping version to this one.
//!
//! Handles `test.*`: records `(seq, event.id, event.attempt, event.name)` in `journal` for
//! every delivery, returns the error named by `{"fail": kind}` (see `event-journal`),
//! handles `{"trap": true}` like any other event, and publishes `{"event": id,
//! "attempt": n}` on topic `journal`. Render (param `page`, 500 rows a page) returns the
//! custom view `{"deliveries": n, "events": n, "rows": [[event_id, attempt], …]}`.

/// 1.0.1 handles `{"trap": true}` normally; the rest is event-journal's own source.
const FIXED: bool = true;

include!("../../event-journal/src/journal.rs");
