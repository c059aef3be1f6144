//! Watchgrid's domain core: what the server does, without HTTP. The server's HTTP handlers,
//! its operator subcommands and its background workers are adapters over this crate.
//!
//! Architecture invariant: nothing here depends on axum, hyper or tower (Cargo enforces it:
//! they are not dependencies), so every flow can be entered without a request.

#![forbid(unsafe_code)]

pub mod audit;
pub mod clock;
pub mod runtime;
pub mod validate;
