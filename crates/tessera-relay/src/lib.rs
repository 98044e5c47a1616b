#![doc = include_str!("../README.md")]

mod blobs;
mod config;
mod error;
mod identity;
mod metrics;
mod server;
mod session;
mod store;
mod turn;

pub use blobs::BlobSettings;
pub use config::{Config, FileConfig, Flags, Limits, MailboxSettings};
pub use error::RelayError;
pub use identity::RelayIdentity;
pub use metrics::Metrics;
pub use server::{BoundRelay, bind};
pub use store::{Durability, SCHEMA_VERSION};
pub use turn::{CREDENTIAL_TTL, TurnService};
