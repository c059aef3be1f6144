//! The subcommands: `enroll`, `run` and `status`, one module each.

pub mod enroll;
pub mod run;
pub mod status;
