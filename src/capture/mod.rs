//! Capture: what the kernel allows (facts), the backends table, loading
//! and attaching the BPF object, the session that runs it, and decoding
//! what it sends.

pub mod backends;
pub mod event;
pub mod facts;
pub mod kretprobe;
pub mod load;
pub mod privileges;
pub mod session;
pub mod teardown;
