//! The exit statuses both binaries share. Each binary may add its own above these (the agent's
//! 3 for a changed server key).

/// The exit status of a successful run.
pub const EXIT_OK: u8 = 0;
/// The exit status of a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// The exit status of a bad invocation (clap uses the same).
pub const EXIT_USAGE: u8 = 2;
