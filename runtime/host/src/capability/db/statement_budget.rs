//! A budget of time and memory for the tenant statement running on this thread, kept by
//! SQLite's own allocator.
//!
//! Some of SQLite's work calls back into nothing Plinth can hook: before a statement is
//! resolved, SQLite copies every view and CTE it references into one tree, and nested
//! views or CTEs make that tree exponential (30 CTEs of a few bytes each: seconds, then
//! gigabytes). Neither the progress handler nor the authorizer runs then, and
//! `sqlite3_interrupt` is not checked. Every copy allocates, though: Plinth wraps SQLite's
//! allocator, and while a tenant statement runs on a thread, an allocation on that
//! thread fails once the statement's deadline has passed or its net allocations exceed
//! its memory budget. SQLite turns the failure into `SQLITE_NOMEM` for that statement
//! only; the connection, the other tenants and the process go on.
//!
//! The wrapper must be installed before SQLite is first initialized in the process
//! (before any connection is opened): [`install`] is called by
//! [`super::SqliteDb::open`] and by the server before it opens its own SQLite registry,
//! and fails loudly if it comes too late.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use std::time::Instant;

use rusqlite::ffi;

/// Net bytes one tenant statement may have allocated in SQLite at any moment, its
/// connection's page cache (1 MiB) and temporary b-trees included. Widget statements
/// need a few MiB; a runaway one is stopped here, and what it built is freed quickly.
pub const STATEMENT_HEAP: i64 = 64 << 20;

/// The clock is read once per this many allocations.
const CLOCK_EVERY: u32 = 64;

#[derive(Clone, Copy)]
struct Budget {
    /// `None` when no tenant statement runs on this thread.
    deadline: Option<Instant>,
    bytes: i64,
    allocations: u32,
    /// Why the budget refused, once it has.
    spent: Option<Spent>,
}

/// What ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Time,
    Memory,
}

/// No tenant statement on this thread.
const IDLE: Budget = Budget {
    deadline: None,
    bytes: 0,
    allocations: 0,
    spent: None,
};

thread_local! {
    // Const-initialized and without a destructor: safe to use inside an allocator.
    static BUDGET: Cell<Budget> = const { Cell::new(IDLE) };
}

// SAFETY: the methods are plain function pointers SQLite made to be called from any
// thread; `pAppData` is not dereferenced by Plinth.
struct Methods(ffi::sqlite3_mem_methods);
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

/// SQLite's own allocator, which the wrapper forwards to.
static DEFAULT: OnceLock<Methods> = OnceLock::new();
static WRAPPED: OnceLock<Methods> = OnceLock::new();
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

fn default() -> &'static ffi::sqlite3_mem_methods {
    &DEFAULT.get().expect("installed before SQLite allocates").0
}

/// Charges `bytes` to this thread's statement; false if the statement may not have them.
fn charge(bytes: i64) -> bool {
    BUDGET.with(|cell| {
        let mut budget = cell.get();
        let Some(deadline) = budget.deadline else {
            return true;
        };
        if budget.spent.is_some() {
            return false;
        }
        budget.allocations = budget.allocations.wrapping_add(1);
        if budget.bytes + bytes > STATEMENT_HEAP {
            budget.spent = Some(Spent::Memory);
        } else if budget.allocations % CLOCK_EVERY == 0 && Instant::now() > deadline {
            budget.spent = Some(Spent::Time);
        } else {
            budget.bytes += bytes;
        }
        cell.set(budget);
        budget.spent.is_none()
    })
}

fn credit(bytes: i64) {
    BUDGET.with(|cell| {
        let mut budget = cell.get();
        if budget.deadline.is_some() {
            // Memory allocated before the statement (or on another thread) may be freed
            // here too: never below zero.
            budget.bytes = (budget.bytes - bytes).max(0);
            cell.set(budget);
        }
    });
}

unsafe extern "C" fn budget_malloc(size: c_int) -> *mut c_void {
    if !charge(i64::from(size)) {
        return std::ptr::null_mut();
    }
    // SAFETY: forwarding SQLite's call to SQLite's allocator.
    unsafe { (default().xMalloc.expect("xMalloc"))(size) }
}

unsafe extern "C" fn budget_free(pointer: *mut c_void) {
    if !pointer.is_null() {
        // SAFETY: `pointer` came from this allocator.
        credit(i64::from(unsafe {
            (default().xSize.expect("xSize"))(pointer)
        }));
    }
    // SAFETY: as above.
    unsafe { (default().xFree.expect("xFree"))(pointer) }
}

unsafe extern "C" fn budget_realloc(pointer: *mut c_void, size: c_int) -> *mut c_void {
    // SAFETY: `pointer` came from this allocator (SQLite never reallocs null here).
    let old = i64::from(unsafe { (default().xSize.expect("xSize"))(pointer) });
    let grows = i64::from(size) - old;
    if grows > 0 && !charge(grows) {
        return std::ptr::null_mut();
    }
    // SAFETY: forwarding.
    let moved = unsafe { (default().xRealloc.expect("xRealloc"))(pointer, size) };
    if !moved.is_null() && grows < 0 {
        credit(-grows);
    }
    moved
}

unsafe extern "C" fn budget_size(pointer: *mut c_void) -> c_int {
    // SAFETY: forwarding.
    unsafe { (default().xSize.expect("xSize"))(pointer) }
}

unsafe extern "C" fn budget_roundup(size: c_int) -> c_int {
    // SAFETY: forwarding.
    unsafe { (default().xRoundup.expect("xRoundup"))(size) }
}

unsafe extern "C" fn budget_init(data: *mut c_void) -> c_int {
    // SAFETY: forwarding; SQLite passes the pAppData we copied from its methods.
    unsafe { (default().xInit.expect("xInit"))(data) }
}

unsafe extern "C" fn budget_shutdown(data: *mut c_void) {
    // SAFETY: forwarding.
    unsafe { (default().xShutdown.expect("xShutdown"))(data) }
}

/// Wraps SQLite's allocator, once per process. Fails if SQLite was initialized first.
pub fn install() -> Result<(), String> {
    INSTALLED
        .get_or_init(|| {
            // SAFETY: SQLITE_CONFIG_GETMALLOC fills the struct; SQLITE_CONFIG_MALLOC
            // copies the struct we pass (kept in a static anyway). Both are allowed only
            // before sqlite3_initialize, which SQLite checks (SQLITE_MISUSE otherwise).
            unsafe {
                let mut methods: ffi::sqlite3_mem_methods = std::mem::zeroed();
                let got = ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_GETMALLOC,
                    &mut methods as *mut ffi::sqlite3_mem_methods,
                );
                if got != ffi::SQLITE_OK {
                    return Err(format!("reading SQLite's allocator failed ({got})"));
                }
                let app_data = methods.pAppData;
                let _ = DEFAULT.set(Methods(methods));
                let wrapped = WRAPPED.get_or_init(|| {
                    Methods(ffi::sqlite3_mem_methods {
                        xMalloc: Some(budget_malloc),
                        xFree: Some(budget_free),
                        xRealloc: Some(budget_realloc),
                        xSize: Some(budget_size),
                        xRoundup: Some(budget_roundup),
                        xInit: Some(budget_init),
                        xShutdown: Some(budget_shutdown),
                        pAppData: app_data,
                    })
                });
                let set = ffi::sqlite3_config(
                    ffi::SQLITE_CONFIG_MALLOC,
                    &wrapped.0 as *const ffi::sqlite3_mem_methods,
                );
                if set != ffi::SQLITE_OK {
                    return Err(format!(
                        "SQLite was initialized before Plinth could bound tenant statements \
                         ({set}); open no SQLite connection before the tenant databases"
                    ));
                }
            }
            Ok(())
        })
        .clone()
}

/// The budget of the tenant statement running on this thread; ended when dropped, even
/// if the statement's work panics, so that a pooled thread never carries a stale budget
/// into other work.
pub struct StatementBudget(());

impl StatementBudget {
    /// Starts the budget of a tenant statement on this thread.
    pub fn begin(deadline: Instant) -> StatementBudget {
        BUDGET.with(|cell| {
            cell.set(Budget {
                deadline: Some(deadline),
                ..IDLE
            })
        });
        StatementBudget(())
    }

    /// Ends the budget; says what ran out, if anything did.
    pub fn finish(self) -> Option<Spent> {
        BUDGET.with(|cell| cell.get().spent)
    }
}

impl Drop for StatementBudget {
    fn drop(&mut self) {
        BUDGET.with(|cell| cell.set(IDLE));
    }
}
