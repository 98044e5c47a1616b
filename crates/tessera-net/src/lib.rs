#![doc = include_str!("../README.md")]

mod client;
mod connect;
mod error;
mod pin;
pub mod preview;
pub mod socks;
pub mod tor;

pub use client::{ClientError, FetchedBundle, Pushed, Pushes, RelayClient, TurnCredentials};
pub use connect::{
    Carrier, RelayStream, RelayWebSocket, Transport, connect_tls, connect_websocket,
};
pub use error::{ErrorKind, NetError};
pub use pin::{PinnedVerifier, client_config, spki_pin_of_certificate};
pub use socks::SocksBridge;
pub use tor::{Tor, TorOptions, TorProgress, read_config_file};
