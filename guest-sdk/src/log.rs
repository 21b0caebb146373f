//! The installation's log, visible in `plinth run` output and the installation's API.
//!
//! ```no_run
//! plinth_sdk::log::info("rendered 3 panels");
//! ```

use crate::bindings::plinth::extension::log as wit;

pub use wit::Level;

/// Appends one line.
pub fn write(level: Level, message: &str) {
    wit::write(level, message)
}

pub fn debug(message: &str) {
    write(Level::Debug, message)
}

pub fn info(message: &str) {
    write(Level::Info, message)
}

pub fn warn(message: &str) {
    write(Level::Warn, message)
}

pub fn error(message: &str) {
    write(Level::Error, message)
}
