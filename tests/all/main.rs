//! End-to-end tests of the sandbox, in one binary.

mod broadcast;
mod cache;
mod calls;
mod compile_cache;
mod conformance;
mod db;
mod hostile;
mod isolation;
mod quota;
mod server;
mod sql_hardening;
