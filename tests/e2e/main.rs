//! End-to-end tests, one module per area; `cargo test -p tessera-e2e AREA` runs one area.

mod relay;
mod ui;
