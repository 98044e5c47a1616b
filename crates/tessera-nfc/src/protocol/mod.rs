//! The NTAG 424 DNA protocol, sans-IO: bytes in, bytes out; randomness is passed in.

pub mod apdu;
pub mod auth;
pub mod crypto;
pub mod originality;
pub mod sdm;
pub mod session;
