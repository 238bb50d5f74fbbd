//! `nwtrace top`: a live terminal view of every send and receive, per
//! process, conversation, endpoint and port, with latency, errors and
//! flags, fed by the capture session (or by a recording, `--replay`).
//! This folder is the view and its state: the pure app state ([`app`]),
//! the frames the aggregator publishes ([`feed`], [`view`]), the tables
//! ([`columns`]), the screen ([`ui`]) and the JSON lines ([`json`]); the
//! command, its threads and its loop are in `cmd::top`.

pub mod app;
pub mod columns;
pub mod feed;
pub mod json;
pub mod ui;
pub mod view;

#[cfg(test)]
mod tests;
