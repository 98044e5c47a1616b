#![doc = include_str!("../README.md")]

pub mod call;
pub mod codec;
pub mod frame;
pub mod media;
pub mod picture;
pub mod session;
