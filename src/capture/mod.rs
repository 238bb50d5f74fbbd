//! Capture: what the kernel allows (facts), the backends table, loading
//! and attaching the BPF object, the session that runs it, decoding what it
//! sends, and the consumer seam it feeds.

pub mod backends;
pub mod consumer;
pub mod event;
pub mod facts;
pub mod kretprobe;
pub mod load;
pub mod privileges;
pub mod sampling;
pub mod session;
pub mod startup_memory;
pub mod teardown;
