//! Attribution against a real cgroup v2 hierarchy, as root: a process moved
//! into a cgroup named the way docker names its scopes is resolved, from
//! the cgroup's id, to the path the kernel itself reports for it, and to
//! that container id.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;
use nwtrace::attribution::cgroup::{CgroupResolver, cgroup2_root};
use nwtrace::attribution::container::container_id;

#[test]
fn a_docker_named_cgroup_resolves_to_its_path_and_container() {
    if skip_without_root("a_docker_named_cgroup_resolves_to_its_path_and_container") {
        return;
    }
    let root = cgroup2_root().expect("a cgroup2 mount (cgroup v2 or hybrid)");
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let parent = root.join(format!("nwtrace-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&scope).expect("making a cgroup");

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(scope.join("cgroup.procs"), child.id().to_string()).expect("moving into it");
    // The kernel's own view: "0::/<path>" in /proc/PID/cgroup.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let kernel_path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::/"))
        .expect("a cgroup v2 line")
        .to_string();

    let mut resolver = CgroupResolver::new(root.clone());
    let cgroup_id = std::fs::metadata(&scope).unwrap().ino();
    let resolved = resolver.resolve(cgroup_id);

    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir(&scope).unwrap();
    std::fs::remove_dir(&parent).unwrap();

    assert_eq!(resolved, kernel_path);
    assert_eq!(container_id(&resolved), Some(id));
}
