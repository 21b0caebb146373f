//! Capabilities: what a guest may ask of the host. Each capability is one unit: a small
//! async backend trait, an embedded backend, a real one, and the host side of its WIT
//! interface, implemented on a per-capability [`view::CapView`] of the call's state and
//! linked by the capability's own `add_to_linker`.

pub mod broadcast;
pub mod cache;
pub mod db;
pub mod log;
mod redis_link;
pub mod view;
