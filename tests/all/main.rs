//! End-to-end tests of the sandbox, in one binary.

mod api_contract;
mod broadcast;
mod cache;
mod calls;
mod compile_cache;
mod conformance;
mod console;
mod db;
mod events;
mod hardening_http;
mod hardening_ws_tokens;
mod hostile;
mod isolation;
mod quota;
mod server;
mod sql_hardening;
