//! Entity Feed: a widget and handler showing what happens to the tenant's records, live.
//!
//! # Events
//!
//! - `entity.created`, `entity.updated`, `entity.deleted`:
//!   `{"entity": "customer", "entity_id": "c-42", "fields": {"email": "…"}}`. `entity`
//!   (1..=100 bytes) and `entity_id` (1..=200 bytes) are strings; `fields`, optional, is
//!   an object (or null) whose keys are the changed fields. Recorded in the table
//!   `entity_changes` once per event id (a redelivery adds nothing), keeping the newest
//!   1000, and published on topic `entities` as `{"type": "entity", "event_id", "entity",
//!   "entity_id", "action": "created" | "updated" | "deleted", "fields": [names], "at_ms"}`.
//!   Only field names are kept and sent, never values: a feed has no business copying
//!   the records themselves.
//! - `bulk.started` `{"operation_id": "import-7", "total": 5000}`,
//!   `bulk.progress` `{"operation_id": "import-7", "done": 1200}`,
//!   `bulk.completed` `{"operation_id": "import-7"}`. `operation_id` is 1..=128 bytes of
//!   `[A-Za-z0-9._:-]` (it becomes part of a cache key); `total` and `done` are integers
//!   ≥ 0, `done` a running count, not a delta. Kept in the cache for 24 hours and
//!   published on topic `entities` as `{"type": "bulk", "operation_id", "total" (null when
//!   unknown), "done", "status": "running" | "completed"}`. Events may arrive out of order
//!   or twice: `done` never goes back, a progress before its start is kept with an
//!   unknown total, and a completed operation stays completed.
//!
//! A missing or mistyped field is `invalid-input` (the host dead-letters it at once); an
//! event name outside these is `rejected`.
//!
//! # Render
//!
//! A progress bar for every running bulk operation and for the most recent completed
//! one, then a table of the 20 most recent entity changes (with the number kept as
//! `total-rows`).

use plinth_sdk::prelude::*;
use serde::{Deserialize, Serialize};

const TOPIC: &str = "entities";
const RECENT_ROWS: i64 = 20;
/// How many changes the table keeps; older ones are deleted as new ones arrive.
const KEEP_CHANGES: i64 = 1000;
/// How many field names of one change are kept.
const MAX_FIELD_NAMES: usize = 20;

const BULK_KEY_PREFIX: &str = "entity-feed:bulk:";
/// The cache cannot list keys, so the operations are also named here, newest first.
const BULK_INDEX_KEY: &str = "entity-feed:bulk-index";
const MAX_BULK_OPERATIONS: usize = 10;
/// An operation whose events stop (a crashed import) disappears after a day.
const BULK_TTL_MS: u64 = 24 * 3_600_000;

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS entity_changes (event_id TEXT PRIMARY KEY, \
     entity TEXT NOT NULL, entity_id TEXT NOT NULL, action TEXT NOT NULL, \
     fields TEXT NOT NULL, at_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entity_changes_at ON entity_changes (at_ms)",
];
const PROBE: &str = "SELECT event_id, entity, entity_id, action, fields, at_ms \
                     FROM entity_changes LIMIT 1";

#[derive(Deserialize)]
struct EntityChange {
    entity: String,
    entity_id: String,
    #[serde(default)]
    fields: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct BulkStarted {
    operation_id: String,
    total: u64,
}

#[derive(Deserialize)]
struct BulkProgress {
    operation_id: String,
    done: u64,
}

#[derive(Deserialize)]
struct BulkCompleted {
    operation_id: String,
}

/// A bulk operation as cached and as published.
#[derive(Serialize, Deserialize)]
struct BulkOperation {
    operation_id: String,
    total: Option<u64>,
    done: u64,
    completed: bool,
}

impl BulkOperation {
    fn message(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "bulk",
            "operation_id": self.operation_id,
            "total": self.total,
            "done": self.done,
            "status": if self.completed { "completed" } else { "running" },
        })
    }

    fn view(&self) -> View {
        let max = self.total.unwrap_or(0).max(self.done).max(1);
        let value = if self.completed { max } else { self.done };
        let label = match (self.total, self.completed) {
            (Some(total), true) => format!("{} of {total} · completed", self.done),
            (Some(total), false) => format!("{} of {total}", self.done),
            (None, true) => format!("{} · completed", self.done),
            (None, false) => format!("{} done · total unknown", self.done),
        };
        ProgressBar::new(self.operation_id.clone(), value as f64, max as f64)
            .label(label)
            .into()
    }
}

fn parse<T: for<'de> Deserialize<'de>>(event: &Event, shape: &str) -> Result<T, Error> {
    serde_json::from_str(&event.payload)
        .map_err(|e| Error::invalid(format!("{} needs {shape}: {e}", event.name)))
}

fn check_length(name: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() || value.len() > max {
        return Err(Error::invalid(format!("{name} must be 1 to {max} bytes")));
    }
    Ok(())
}

/// Operation ids become cache keys, which the host restricts to `[A-Za-z0-9._:-]`.
fn check_operation_id(id: &str) -> Result<(), Error> {
    check_length("operation_id", id, 128)?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b))
    {
        return Err(Error::invalid(
            "operation_id may hold letters, digits and . _ : - only",
        ));
    }
    Ok(())
}

/// Creates the table and its indexes when missing; a failed `CREATE` is fine when the
/// table is there anyway (two first calls racing on PostgreSQL, or an installation
/// without `db:write`).
fn ensure_schema() -> Result<(), Error> {
    // They are created together, so a table that answers has its indexes: one read per
    // call rather than the DDL, which on PostgreSQL locks the table against inserts.
    if db::query(PROBE, &[]).is_ok() {
        return Ok(());
    }
    for ddl in SCHEMA {
        if let Err(error) = db::execute(ddl, &[])
            && db::query(PROBE, &[]).is_err()
        {
            log::error("entity_changes is missing and cannot be created");
            return Err(error);
        }
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days: the proleptic Gregorian date of a day number.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let seconds = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

fn handle_entity(event: &Event, action: &str) -> Result<(), Error> {
    let change: EntityChange = parse(
        event,
        "{\"entity\": string, \"entity_id\": string, \"fields\"?: object}",
    )?;
    check_length("entity", &change.entity, 100)?;
    check_length("entity_id", &change.entity_id, 200)?;
    let fields: Vec<&str> = change
        .fields
        .iter()
        .flat_map(|fields| fields.keys())
        .take(MAX_FIELD_NAMES)
        .map(String::as_str)
        .collect();
    let at_ms = i64::try_from(event.occurred_at_ms)
        .map_err(|_| Error::invalid("occurred_at_ms is out of range"))?;

    ensure_schema()?;
    // Keyed by the event id: a redelivered event is recorded once.
    db::execute(
        "INSERT INTO entity_changes (event_id, entity, entity_id, action, fields, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        &[
            event.id.as_str().into(),
            change.entity.as_str().into(),
            change.entity_id.as_str().into(),
            action.into(),
            fields.join(", ").into(),
            Value::Integer(at_ms),
        ],
    )?;
    // Bounded in rows deleted per call too: one insert per call, so the table stays at
    // about KEEP_CHANGES rows.
    db::execute(
        "DELETE FROM entity_changes WHERE event_id IN (SELECT event_id FROM entity_changes \
         ORDER BY at_ms DESC, event_id DESC LIMIT $1 OFFSET $2)",
        &[Value::Integer(KEEP_CHANGES), Value::Integer(KEEP_CHANGES)],
    )?;
    broadcast::publish_json(
        TOPIC,
        &serde_json::json!({
            "type": "entity",
            "event_id": event.id,
            "entity": change.entity,
            "entity_id": change.entity_id,
            "action": action,
            "fields": fields,
            "at_ms": at_ms,
        }),
    )
}

/// The cached value under `key`: a cache that fails is an error (retried), a value that
/// does not parse (an older format) counts as missing.
fn cached<T: for<'de> Deserialize<'de>>(key: &str) -> Result<Option<T>, Error> {
    Ok(cache::get(key)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

fn bulk_key(operation_id: &str) -> String {
    format!("{BULK_KEY_PREFIX}{operation_id}")
}

/// Applies `update` to the cached operation (a new one when unknown), stores it, puts it
/// first in the index and publishes it. Concurrent events of one operation can lose an
/// update to each other (the cache has no compare-and-set); `done` only grows, so the
/// next progress event repairs it.
fn update_bulk(operation_id: String, update: impl FnOnce(&mut BulkOperation)) -> Result<(), Error> {
    check_operation_id(&operation_id)?;
    let key = bulk_key(&operation_id);
    let mut operation = cached::<BulkOperation>(&key)?.unwrap_or(BulkOperation {
        operation_id: operation_id.clone(),
        total: None,
        done: 0,
        completed: false,
    });
    update(&mut operation);
    cache::set_json(&key, &operation, Some(BULK_TTL_MS))?;

    let mut index: Vec<String> = cached(BULK_INDEX_KEY)?.unwrap_or_default();
    index.retain(|id| *id != operation_id);
    index.insert(0, operation_id);
    index.truncate(MAX_BULK_OPERATIONS);
    cache::set_json(BULK_INDEX_KEY, &index, Some(BULK_TTL_MS))?;

    broadcast::publish_json(TOPIC, &operation.message())
}

fn handle_bulk(event: &Event, stage: &str) -> Result<(), Error> {
    match stage {
        "started" => {
            let started: BulkStarted =
                parse(event, "{\"operation_id\": string, \"total\": int ≥ 0}")?;
            update_bulk(started.operation_id, |operation| {
                operation.total = Some(started.total);
            })
        }
        "progress" => {
            let progress: BulkProgress =
                parse(event, "{\"operation_id\": string, \"done\": int ≥ 0}")?;
            update_bulk(progress.operation_id, |operation| {
                operation.done = operation.done.max(progress.done);
            })
        }
        "completed" => {
            let completed: BulkCompleted = parse(event, "{\"operation_id\": string}")?;
            update_bulk(completed.operation_id, |operation| {
                operation.completed = true;
                if let Some(total) = operation.total {
                    operation.done = operation.done.max(total);
                }
            })
        }
        _ => Err(unknown(event)),
    }
}

fn unknown(event: &Event) -> Error {
    Error::reject(format!(
        "entity-feed handles entity.created|updated|deleted and \
         bulk.started|progress|completed, not {:?}",
        event.name
    ))
}

struct EntityFeed;

impl Extension for EntityFeed {
    fn describe() -> Descriptor {
        Descriptor::new("entity-feed", "Entity Feed")
            .version("1.0.0")
            .description("Recent changes to records and the progress of bulk operations, live.")
            .category("activity")
            .icon("activity")
            .size(6, 6)
            .config_schema(&serde_json::json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false
            }))
            .uses("cache")
            .uses("db")
            .uses("db:write")
            .uses("broadcast")
            .uses("log")
            .handles("entity.*")
            .handles("bulk.*")
    }
}

impl Widget for EntityFeed {
    fn render(_request: RenderRequest) -> Result<Vec<View>, Error> {
        let mut views = Vec::new();
        let index: Vec<String> = cached(BULK_INDEX_KEY)?.unwrap_or_default();
        let mut shown_completed = false;
        for id in index {
            let Some(operation) = cached::<BulkOperation>(&bulk_key(&id))? else {
                continue;
            };
            // Every running operation, and the newest finished one.
            if !operation.completed || !shown_completed {
                shown_completed |= operation.completed;
                views.push(operation.view());
            }
        }

        ensure_schema()?;
        let total = db::query("SELECT COUNT(*) FROM entity_changes", &[])?
            .rows
            .first()
            .and_then(|row| row.first())
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let rows = db::query(
            "SELECT at_ms, entity, entity_id, action, fields FROM entity_changes \
             ORDER BY at_ms DESC, event_id DESC LIMIT $1",
            &[Value::Integer(RECENT_ROWS)],
        )?;
        let table = Table::new(
            "Recent changes",
            [
                ("at", "When (UTC)"),
                ("entity", "Entity"),
                ("entity_id", "ID"),
                ("action", "Change"),
                ("fields", "Fields"),
            ],
        )
        .total_rows(total.max(0) as u64);
        let table = rows.rows.into_iter().fold(table, |table, mut row| {
            if let Some(at) = row.first().and_then(Value::as_i64) {
                row[0] = utc(at).into();
            }
            table.row(row)
        });
        views.push(table.into());
        Ok(views)
    }
}

impl EventHandler for EntityFeed {
    fn handle(event: Event) -> Result<(), Error> {
        match event.name.split_once('.') {
            Some(("entity", action @ ("created" | "updated" | "deleted"))) => {
                handle_entity(&event, action)
            }
            Some(("bulk", stage)) => handle_bulk(&event, stage),
            _ => Err(unknown(&event)),
        }
    }
}

plinth_sdk::export_extension!(EntityFeed);
