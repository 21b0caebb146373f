// The event journal, shared by `event-journal` (1.0.0) and `event-journal-fixed` (1.0.1):
// each crate's lib.rs defines `const FIXED: bool` and `include!`s this file, so the two
// versions differ in that constant only. No inner attributes or `//!` docs here: an
// `include!`d file cannot carry them; the crates' lib.rs document the behaviour.

use plinth_sdk::prelude::*;

/// 1.0.1 is the upgrade that fixes the trap of 1.0.0; both are `event-journal`, so the
/// server can upgrade an installation of one to the other.
const VERSION: &str = if FIXED { "1.0.1" } else { "1.0.0" };

/// No key: the journal records every delivery, a redelivery of an event included, in
/// the order they ran (`seq`), which the tests of priorities and keys read.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS journal (seq INTEGER NOT NULL, \
                      event_id TEXT NOT NULL, attempt INTEGER NOT NULL, name TEXT NOT NULL)";

const PAGE_ROWS: i64 = 500;

/// Creates the journal if missing. If the DDL itself fails (two first deliveries racing
/// on PostgreSQL, where concurrent `CREATE TABLE IF NOT EXISTS` can collide) but the
/// table is there, that is success.
fn ensure_journal() -> Result<(), Error> {
    match db::execute(SCHEMA, &[]) {
        Ok(_) => Ok(()),
        Err(error) => match db::query("SELECT 1 FROM journal LIMIT 1", &[]) {
            Ok(_) => Ok(()),
            Err(_) => Err(error),
        },
    }
}

/// The error a `{"fail": kind}` payload asks for, named as the contract's error cases.
fn failure(kind: &str) -> Result<Error, Error> {
    let message = format!("failing on purpose: {kind}");
    Ok(match kind {
        "unavailable" => Error::Unavailable(message),
        "timeout" => Error::Timeout(message),
        "internal" => Error::Internal(message),
        "rejected" => Error::Rejected(message),
        "invalid-input" => Error::InvalidInput(message),
        "not-found" => Error::NotFound(message),
        "denied" => Error::Denied(message),
        "quota-exceeded" => Error::QuotaExceeded(message),
        other => return Err(Error::invalid(format!("unknown \"fail\" kind {other:?}"))),
    })
}

struct Journal;

impl Extension for Journal {
    fn describe() -> Descriptor {
        Descriptor::new("event-journal", "Event Journal")
            .version(VERSION)
            .description("Journals every event delivery; fails or traps when the payload asks.")
            .category("testing")
            .icon("list")
            .size(4, 3)
            .uses("db")
            .uses("db:write")
            .uses("broadcast")
            .uses("log")
            .handles("test.*")
    }
}

impl Widget for Journal {
    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let page: i64 = match request.param("page") {
            None => 0,
            Some(text) => text.parse().ok().filter(|page| *page >= 0).ok_or_else(|| {
                Error::invalid(format!("page must be a whole number ≥ 0, not {text:?}"))
            })?,
        };
        let offset = page
            .checked_mul(PAGE_ROWS)
            .ok_or_else(|| Error::invalid("page is too large"))?;
        ensure_journal()?;
        let counts = db::query(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM journal",
            &[],
        )?;
        let count = |i: usize| {
            counts
                .rows
                .first()
                .and_then(|row| row.get(i))
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        let rows = db::query(
            "SELECT event_id, attempt FROM journal ORDER BY seq, event_id, attempt LIMIT $1 OFFSET $2",
            &[Value::Integer(PAGE_ROWS), Value::Integer(offset)],
        )?;
        let rows: Vec<serde_json::Value> = rows
            .rows
            .iter()
            .map(|row| {
                serde_json::json!([
                    row.first().and_then(Value::as_str),
                    row.get(1).and_then(Value::as_i64)
                ])
            })
            .collect();
        Ok(vec![View::custom(&serde_json::json!({
            "deliveries": count(0),
            "events": count(1),
            "rows": rows,
        }))])
    }
}

impl EventHandler for Journal {
    fn handle(event: Event) -> Result<(), Error> {
        // Recorded before anything can fail: the database is not transactional with the
        // call, so a failed or trapped delivery stays in the journal, which is what the
        // server's tests count.
        ensure_journal()?;
        // Two statements, not INSERT … SELECT: PostgreSQL cannot type parameters in a
        // select list. Deliveries running at once may share a `seq`; the tests that read
        // the order run one at a time.
        let last = db::query("SELECT COALESCE(MAX(seq), 0) FROM journal", &[])?;
        let seq = last
            .rows
            .first()
            .and_then(|row| row.first())
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        db::execute(
            "INSERT INTO journal (seq, event_id, attempt, name) VALUES ($1, $2, $3, $4)",
            &[
                Value::Integer(seq),
                Value::Text(event.id.clone()),
                Value::Integer(i64::from(event.attempt)),
                Value::Text(event.name.clone()),
            ],
        )?;
        log::info(&format!(
            "{} delivery {} of {} ({})",
            VERSION, event.attempt, event.id, event.name
        ));
        // Any payload is accepted; only an object's `fail` and `trap` mean something.
        let payload: serde_json::Value = event.payload_json()?;
        if let Some(kind) = payload.get("fail") {
            let kind = kind
                .as_str()
                .ok_or_else(|| Error::invalid("\"fail\" must be a string"))?;
            return Err(failure(kind)?);
        }
        // `{"spin_ms": n}` holds the handler for n ms of wall time (a handler a node can
        // be killed in the middle of).
        if let Some(ms) = payload.get("spin_ms").and_then(serde_json::Value::as_u64) {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if payload.get("trap") == Some(&serde_json::Value::Bool(true)) && !FIXED {
            panic!("event-journal {VERSION} traps on {} as asked", event.id);
        }
        broadcast::publish_json(
            "journal",
            &serde_json::json!({"event": event.id, "attempt": event.attempt}),
        )
    }
}

plinth_sdk::export_extension!(Journal);
