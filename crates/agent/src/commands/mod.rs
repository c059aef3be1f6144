//! The subcommands: `enroll`, `run`, `status` and `down`, one module each.

pub mod down;
pub mod enroll;
pub mod run;
pub mod status;
