//! End-to-end tests, one module per area; `cargo test -p tessera-e2e AREA` runs one area.

// Test code: a failed step should stop the test loudly, helpers included.
#![allow(clippy::unwrap_used)]

mod attachments;
mod backup;
mod call;
mod card;
mod chat;
mod delivery;
mod duress;
mod exchange;
mod keys;
mod leaving;
mod loadgen;
mod migration;
mod relay;
mod relay_protocol;
mod session;
mod tor;
mod ui;
mod update;
