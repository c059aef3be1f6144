//! What the operator CLI (`watchgrid`) and the device agent (`watchgrid-agent`) share as
//! clients of the server: the server URL ([`server_url`]), the HTTP client and the server's
//! error answers ([`http`]), booleans in the usual spellings ([`boolean`]), failures in a few words on one line ([`text`]), private files
//! written atomically ([`files`]) and the exit statuses ([`exit`]).
//!
//! Each binary keeps its own error type and its own phrasing of a refused request; this crate
//! gives them the parts that are the same. It knows reqwest and the wire types, never the
//! server or the store, and it reads no environment variable itself.

#![forbid(unsafe_code)]

pub mod boolean;
pub mod exit;
pub mod files;
pub mod http;
pub mod server_url;
pub mod text;

#[cfg(feature = "test-util")]
pub mod testing;
