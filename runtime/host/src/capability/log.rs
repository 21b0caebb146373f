//! The log capability: a bounded ring buffer of lines per installation, and the host
//! side of `plinth:extension/log`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::capability::view::{CapView, LogLine};
use crate::contract::log as wit;
use crate::grant::Capability;
use crate::lock::Recover;
use crate::scope::Scope;
use wasmtime::component::{HasData, Linker};

/// A store's data as the `log` capability sees it; the linker's getter.
pub trait LogView: Send {
    fn log(&mut self) -> CapView<'_, LogRing>;
}

/// Marks the data the `log` host functions get ([`HasData`]).
struct LogData;

impl HasData for LogData {
    type Data<'a> = CapView<'a, LogRing>;
}

/// Links `plinth:extension/log` into `linker`, its host functions given the view
/// [`LogView`] takes of the store's data.
pub fn add_to_linker<T: LogView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, LogData>(linker, T::log)
}

/// Lines kept per installation; older lines are dropped first.
pub const RING_LINES: usize = 1_000;
/// Longest line kept, in bytes; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 4_096;

/// A line as the ring keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLine {
    pub at_ms: u64,
    pub level: &'static str,
    pub message: String,
}

/// The recent log of every installation.
#[derive(Default)]
pub struct LogRing {
    lines: Mutex<HashMap<Scope, VecDeque<StoredLine>>>,
}

impl LogRing {
    pub fn append(&self, scope: &Scope, lines: &[LogLine]) {
        if lines.is_empty() {
            return;
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut all = self.lines.lock().recover();
        let ring = all.entry(scope.clone()).or_default();
        for line in lines {
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(StoredLine {
                at_ms,
                level: line.level,
                message: line.message.clone(),
            });
        }
    }

    /// Forgets every line of a tenant's installations: offboarding.
    pub fn drop_tenant(&self, tenant: &str) {
        self.lines
            .lock()
            .recover()
            .retain(|scope, _| scope.tenant != tenant);
    }

    /// The most recent lines of an installation, oldest first.
    pub fn recent(&self, scope: &Scope, limit: usize) -> Vec<StoredLine> {
        let all = self.lines.lock().recover();
        all.get(scope)
            .map(|ring| {
                ring.iter()
                    .skip(ring.len().saturating_sub(limit))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn level_name(level: wit::Level) -> &'static str {
    match level {
        wit::Level::Trace => "trace",
        wit::Level::Debug => "debug",
        wit::Level::Info => "info",
        wit::Level::Warn => "warn",
        wit::Level::Error => "error",
    }
}

impl wit::Host for CapView<'_, LogRing> {
    async fn write(&mut self, level: wit::Level, mut message: String) -> wasmtime::Result<()> {
        self.enter(Capability::Log)?;
        if self.record.logs.len() >= self.limits.log_lines {
            self.record.dropped_logs += 1;
            return Ok(());
        }
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            // A new string, not `truncate`: the guest's line may be megabytes, and a cut
            // string keeps its whole allocation for as long as the line is kept.
            message = format!("{}…", &message[..cut]);
        }
        self.record.logs.push(LogLine {
            level: level_name(level),
            message,
        });
        Ok(())
    }
}
