//! Shared test support: guests built once per test run, sandboxes on embedded backends.
