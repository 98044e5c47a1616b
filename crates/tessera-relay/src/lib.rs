#![doc = include_str!("../README.md")]

mod config;
mod error;
mod identity;
mod server;

pub use config::{Config, FileConfig};
pub use error::RelayError;
pub use identity::RelayIdentity;
pub use server::{BoundRelay, bind};
