//! The subcommands: each one its arguments' checks plus wiring.

pub mod doctor;
pub mod record;
pub mod report;
pub mod signals;
pub mod watch;
