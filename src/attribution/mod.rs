//! Attribution beyond pid and comm: which cgroup, and which container, an
//! operation came from. (The BPF side that emits the cgroup id comes with
//! the optional columns; these are the userspace halves, pure and tested.)

pub mod cgroup;
pub mod columns;
pub mod container;
