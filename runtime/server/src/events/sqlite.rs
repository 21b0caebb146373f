//! The embedded event queue: a SQLite database in WAL mode in the data directory
//! (`events.sqlite3`), written by one thread that commits whatever requests have
//! gathered in one transaction (group commit), so a busy intake pays one fsync per
//! batch of requests, not per event. One node owns it: leases left by a process that
//! died are released when the file is opened again.

use std::path::Path;
use std::sync::mpsc;

use async_trait::async_trait;
use plinth_host::BackendError;
use rusqlite::{Connection, Transaction, params};
use tokio::sync::oneshot;

use super::queue::{
    Acceptance, Backlog, DeadLetter, Delivery, EventQueue, Fate, Handle, Routed, Selection, new_id,
    over_backlog,
};
use crate::registry::now_ms;

/// Requests one transaction takes at most.
const GROUP: usize = 256;

/// A request: runs in the writer's transaction and returns how to answer once the
/// transaction has committed (`true`) or failed (`false`).
type Work = Box<dyn FnOnce(&Transaction) -> Answer + Send>;
type Answer = Box<dyn FnOnce(bool) + Send>;

pub struct SqliteQueue {
    work: mpsc::SyncSender<Work>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS seen (
        tenant TEXT NOT NULL, id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_ms);
    CREATE TABLE IF NOT EXISTS deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        installation TEXT NOT NULL,
        priority INTEGER NOT NULL,
        key TEXT,
        event TEXT NOT NULL,
        accepted_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_ms INTEGER NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (tenant, leased, priority, seq);
    CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (tenant, installation, key, seq)
        WHERE key IS NOT NULL;
    CREATE TABLE IF NOT EXISTS dead_letters (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        installation TEXT NOT NULL,
        event TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        receipt TEXT,
        dead_ms INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS dead_letters_of ON dead_letters (tenant, installation, dead_ms);
    CREATE INDEX IF NOT EXISTS deliveries_age ON deliveries (tenant, accepted_ms);
    CREATE TABLE IF NOT EXISTS backlogs (
        tenant TEXT PRIMARY KEY,
        waiting INTEGER NOT NULL DEFAULT 0,
        dead INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
";

/// The per-tenant counts, made again from the tables when the file is opened: kept by
/// every change after that, so the intake's cap and the gauges never count rows.
const RECOUNT: &str = "
    DELETE FROM backlogs;
    INSERT INTO backlogs (tenant, waiting, dead)
        SELECT tenant, count(*), 0 FROM deliveries WHERE true GROUP BY tenant;
    INSERT INTO backlogs (tenant, waiting, dead)
        SELECT tenant, 0, count(*) FROM dead_letters WHERE true GROUP BY tenant
        ON CONFLICT (tenant) DO UPDATE SET dead = excluded.dead;
";

/// Adds to a tenant's counts of open deliveries and dead letters.
fn count(tx: &Transaction, tenant: &str, waiting: i64, dead: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO backlogs (tenant, waiting, dead) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET waiting = waiting + ?2, dead = dead + ?3",
    )?
    .execute(params![tenant, waiting, dead])?;
    Ok(())
}

/// A tenant's open deliveries and dead letters.
fn counts(tx: &Transaction, tenant: &str) -> rusqlite::Result<(i64, i64)> {
    let mut statement =
        tx.prepare_cached("SELECT waiting, dead FROM backlogs WHERE tenant = ?1")?;
    let mut rows = statement.query_map(params![tenant], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.next().transpose()?.unwrap_or((0, 0)))
}

fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("event queue (SQLite): {e}"))
}

impl SqliteQueue {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        // SQLite's allocator carries the tenant statements' budgets and can be set only
        // before the process's first connection: a node whose metadata is on PostgreSQL
        // may open this one first.
        plinth_host::capability::db::statement_budget::install().map_err(failed)?;
        let connection = Connection::open(path).map_err(failed)?;
        // WAL: readers never wait on the writer. FULL: a commit is on disk (the WAL is
        // synced) before the 202 goes out, so an accepted event survives a power loss
        // as well as a crash.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        connection.execute_batch(SCHEMA).map_err(failed)?;
        // Whatever was taken when the last process stopped was not settled: it is due
        // again, its attempt already counted.
        connection
            .execute("UPDATE deliveries SET leased = 0 WHERE leased = 1", [])
            .map_err(failed)?;
        connection.execute_batch(RECOUNT).map_err(failed)?;
        let (work, queue) = mpsc::sync_channel::<Work>(4 * GROUP);
        std::thread::Builder::new()
            .name("plinth-events-sqlite".into())
            .spawn(move || writer(connection, queue))
            .map_err(failed)?;
        Ok(SqliteQueue { work })
    }

    /// Runs `f` in the writer's next transaction; answers once it has committed.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let (tx, rx) = oneshot::channel::<Result<T, BackendError>>();
        let work: Work = Box::new(move |transaction| {
            // Each request in its own savepoint: one failing leaves the others' work.
            let result = (|| {
                transaction.execute_batch("SAVEPOINT request")?;
                match f(transaction) {
                    Ok(value) => {
                        transaction.execute_batch("RELEASE request")?;
                        Ok(value)
                    }
                    Err(e) => {
                        transaction.execute_batch("ROLLBACK TO request; RELEASE request")?;
                        Err(e)
                    }
                }
            })();
            Box::new(move |committed| {
                let _ = tx.send(match (committed, result) {
                    (true, result) => result.map_err(failed),
                    (false, _) => Err(failed("the transaction did not commit")),
                });
            })
        });
        let sender = self.work.clone();
        // The channel is bounded: a full one means the writer is behind, and waiting for
        // room is the backpressure the intake wants; off the async workers.
        tokio::task::spawn_blocking(move || sender.send(work))
            .await
            .map_err(failed)?
            .map_err(|_| failed("the writer thread stopped"))?;
        rx.await.map_err(|_| failed("the writer thread stopped"))?
    }
}

/// The writer: takes what has gathered, runs it in one transaction, commits, and only
/// then answers: a caller told "done" can rely on it.
fn writer(mut connection: Connection, queue: mpsc::Receiver<Work>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let transaction = match connection.transaction() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "event queue: cannot begin a transaction");
                // Dropping the work drops its answer: each caller sees a failure.
                continue;
            }
        };
        let answers: Vec<Answer> = batch.into_iter().map(|work| work(&transaction)).collect();
        let committed = match transaction.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "event queue: commit failed");
                false
            }
        };
        for answer in answers {
            answer(committed);
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn dead_letter_of(row: &rusqlite::Row) -> rusqlite::Result<DeadLetter> {
    let event: String = row.get(2)?;
    let error: String = row.get(4)?;
    let receipt: Option<String> = row.get(5)?;
    Ok(DeadLetter {
        id: row.get(0)?,
        installation: row.get(1)?,
        event: from_json(2, &event)?,
        attempts: row.get(3)?,
        error: from_json(4, &error)?,
        receipt: receipt.map(|r| from_json(5, &r)).transpose()?,
        dead_ms: row.get(6)?,
    })
}

/// The `WHERE` clause and parameters that pick dead letters of a tenant (`?1`).
fn selection(which: &Selection) -> (&'static str, Option<String>) {
    match which {
        Selection::One(id) => ("tenant = ?1 AND id = ?2", Some(id.clone())),
        Selection::Installation(id) => ("tenant = ?1 AND installation = ?2", Some(id.clone())),
        Selection::All => ("tenant = ?1 AND ?2 IS NULL", None),
    }
}

#[async_trait]
impl EventQueue for SqliteQueue {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn accept(
        &self,
        tenant: &str,
        events: Vec<Routed>,
        retention_ms: i64,
        max_open: u64,
    ) -> Result<Acceptance, BackendError> {
        let tenant = tenant.to_owned();
        let adding: u64 = events.iter().map(|r| r.installations.len() as u64).sum();
        let stored = self.run(move |tx| {
            let (waiting, dead) = counts(tx, &tenant)?;
            let open = (waiting + dead) as u64;
            if adding > 0 && open + adding > max_open {
                return Ok(Err(open));
            }
            let now = now_ms();
            let mut acceptance = Acceptance::default();
            let mut delivered = 0i64;
            let mut seen = tx.prepare_cached(
                "INSERT INTO seen (tenant, id, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, id) DO UPDATE SET expires_ms = excluded.expires_ms
                 WHERE seen.expires_ms < ?4",
            )?;
            let mut deliver = tx.prepare_cached(
                "INSERT INTO deliveries (tenant, installation, priority, key, event, accepted_ms, due_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?;
            for Routed {
                event,
                installations,
            } in events
            {
                // A row changed: new, or seen so long ago that the retention is over.
                if seen.execute(params![tenant, event.id, now + retention_ms, now])? == 0 {
                    acceptance.duplicates.push(event.id);
                    continue;
                }
                let json = to_json(&event)?;
                for installation in &installations {
                    deliver.execute(params![
                        tenant,
                        installation,
                        event.priority.rank(),
                        event.key,
                        json,
                        event.accepted_ms,
                    ])?;
                    delivered += 1;
                }
                acceptance.accepted.push(event.id);
            }
            drop((seen, deliver));
            count(tx, &tenant, delivered, 0)?;
            Ok(Ok(acceptance))
        })
        .await?;
        stored.map_err(|open| over_backlog(open, adding, max_open))
    }

    async fn tenants(&self) -> Result<Vec<String>, BackendError> {
        self.run(|tx| {
            let mut statement =
                tx.prepare_cached("SELECT tenant FROM backlogs WHERE waiting > 0")?;
            statement.query_map([], |row| row.get(0))?.collect()
        })
        .await
    }

    async fn sweep(&self) -> Result<(), BackendError> {
        // Idempotency keys past their retention.
        self.run(|tx| {
            tx.execute("DELETE FROM seen WHERE expires_ms < ?1", params![now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn take(
        &self,
        tenant: &str,
        max: usize,
        _lease_ms: i64,
    ) -> Result<Vec<Delivery>, BackendError> {
        let tenant = tenant.to_owned();
        self.run(move |tx| {
            let mut statement = tx.prepare_cached(
                "UPDATE deliveries SET leased = 1, attempts = attempts + 1
                 WHERE seq IN (
                     SELECT seq FROM deliveries d
                     WHERE tenant = ?1 AND leased = 0 AND due_ms <= ?2
                       AND (key IS NULL OR NOT EXISTS (
                           SELECT 1 FROM deliveries e
                           WHERE e.tenant = d.tenant AND e.installation = d.installation
                             AND e.key = d.key AND e.seq < d.seq))
                     ORDER BY priority, seq LIMIT ?3)
                 RETURNING seq, installation, event, attempts, priority",
            )?;
            let mut taken = statement
                .query_map(params![tenant, now_ms(), max as i64], |row| {
                    let event: String = row.get(2)?;
                    let seq = row.get::<_, i64>(0)?;
                    Ok((
                        (row.get::<_, i64>(4)?, seq),
                        Delivery {
                            tenant: tenant.clone(),
                            installation: row.get(1)?,
                            event: from_json(2, &event)?,
                            attempt: row.get(3)?,
                            handle: Handle::Row(seq),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // RETURNING gives rows in no particular order.
            taken.sort_by_key(|(order, _)| *order);
            Ok(taken.into_iter().map(|(_, d)| d).collect())
        })
        .await
    }

    async fn settle(&self, delivery: &Delivery, fate: Fate) -> Result<(), BackendError> {
        let Handle::Row(seq) = delivery.handle else {
            return Err(BackendError::InvalidInput(
                "a delivery of another queue".into(),
            ));
        };
        let delivery = delivery.clone();
        self.run(move |tx| {
            match fate {
                Fate::Done | Fate::Void => {
                    if tx.execute("DELETE FROM deliveries WHERE seq = ?1", params![seq])? == 1 {
                        count(tx, &delivery.tenant, -1, 0)?;
                    }
                }
                Fate::Retry { due_ms } => {
                    tx.execute(
                        "UPDATE deliveries SET leased = 0, due_ms = ?2 WHERE seq = ?1",
                        params![seq, due_ms],
                    )?;
                }
                Fate::Wait { due_ms } => {
                    tx.execute(
                        "UPDATE deliveries SET leased = 0, due_ms = ?2, attempts = attempts - 1
                         WHERE seq = ?1",
                        params![seq, due_ms],
                    )?;
                }
                Fate::Dead { error, receipt } => {
                    tx.execute(
                        "INSERT INTO dead_letters
                         (id, tenant, installation, event, attempts, error, receipt, dead_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            new_id(),
                            delivery.tenant,
                            delivery.installation,
                            to_json(&delivery.event)?,
                            delivery.attempt,
                            to_json(&error)?,
                            receipt.map(|r| to_json(&r)).transpose()?,
                            now_ms(),
                        ],
                    )?;
                    if tx.execute("DELETE FROM deliveries WHERE seq = ?1", params![seq])? == 1 {
                        count(tx, &delivery.tenant, -1, 1)?;
                    } else {
                        count(tx, &delivery.tenant, 0, 1)?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn dead_letters(
        &self,
        tenant: &str,
        installation: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        let (tenant, installation) = (tenant.to_owned(), installation.map(str::to_owned));
        self.run(move |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT id, installation, event, attempts, error, receipt, dead_ms
                 FROM dead_letters WHERE tenant = ?1 AND (?2 IS NULL OR installation = ?2)
                 ORDER BY dead_ms DESC, id LIMIT ?3",
            )?;
            statement
                .query_map(params![tenant, installation, limit as i64], dead_letter_of)?
                .collect()
        })
        .await
    }

    async fn dead_letter(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<DeadLetter>, BackendError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.run(move |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT id, installation, event, attempts, error, receipt, dead_ms
                 FROM dead_letters WHERE tenant = ?1 AND id = ?2",
            )?;
            let mut rows = statement.query_map(params![tenant, id], dead_letter_of)?;
            rows.next().transpose()
        })
        .await
    }

    async fn replay(&self, tenant: &str, which: &Selection) -> Result<u64, BackendError> {
        let tenant = tenant.to_owned();
        let (filter, value) = selection(which);
        self.run(move |tx| {
            let now = now_ms();
            let letters = {
                let mut statement = tx.prepare(&format!(
                    "SELECT id, installation, event, attempts, error, receipt, dead_ms
                     FROM dead_letters WHERE {filter}"
                ))?;
                statement
                    .query_map(params![tenant, value], dead_letter_of)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            for letter in &letters {
                tx.execute(
                    "INSERT INTO deliveries (tenant, installation, priority, key, event, accepted_ms, due_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        tenant,
                        letter.installation,
                        letter.event.priority.rank(),
                        letter.event.key,
                        to_json(&letter.event)?,
                        letter.event.accepted_ms,
                        now,
                    ],
                )?;
                tx.execute("DELETE FROM dead_letters WHERE id = ?1", params![letter.id])?;
            }
            let n = letters.len() as i64;
            count(tx, &tenant, n, -n)?;
            Ok(n as u64)
        })
        .await
    }

    async fn purge(&self, tenant: &str, which: &Selection) -> Result<u64, BackendError> {
        let tenant = tenant.to_owned();
        let (filter, value) = selection(which);
        self.run(move |tx| {
            let n = tx.execute(
                &format!("DELETE FROM dead_letters WHERE {filter}"),
                params![tenant, value],
            )?;
            count(tx, &tenant, 0, -(n as i64))?;
            Ok(n as u64)
        })
        .await
    }

    async fn backlog(&self, tenant: &str) -> Result<Backlog, BackendError> {
        let tenant = tenant.to_owned();
        self.run(move |tx| {
            let (waiting, dead_letters) = counts(tx, &tenant)?;
            let oldest_ms = tx.query_row(
                "SELECT min(accepted_ms) FROM deliveries WHERE tenant = ?1",
                params![tenant],
                |row| row.get::<_, Option<i64>>(0),
            )?;
            Ok(Backlog {
                waiting: waiting as u64,
                oldest_ms,
                dead_letters: dead_letters as u64,
            })
        })
        .await
    }

    async fn forget_tenant(&self, tenant: &str) -> Result<(), BackendError> {
        let tenant = tenant.to_owned();
        self.run(move |tx| {
            for table in ["seen", "deliveries", "dead_letters", "backlogs"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE tenant = ?1"),
                    params![tenant],
                )?;
            }
            Ok(())
        })
        .await
    }
}
