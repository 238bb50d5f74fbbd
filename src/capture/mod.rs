//! Capture: what the kernel allows, the backends, loading and attaching
//! the BPF object, and decoding what it sends.

pub mod event;
pub mod kretprobe;
pub mod loader;
pub mod probe;
