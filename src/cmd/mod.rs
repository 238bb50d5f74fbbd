//! The subcommands: each one its arguments' checks plus wiring.

pub mod config;
pub mod doctor;
pub mod generate;
pub mod record;
pub mod report;
pub mod signals;
pub mod summarize;
pub mod top;
pub mod watch;
