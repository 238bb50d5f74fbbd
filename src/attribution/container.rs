//! The container a cgroup path belongs to, from the names container
//! runtimes give their cgroups (the patterns Falco's `cri.cpp` and
//! Inspektor Gadget match):
//!
//! | Runtime | systemd cgroup driver | cgroupfs driver |
//! |---|---|---|
//! | docker | `system.slice/docker-<id>.scope` | `/docker/<id>` |
//! | containerd (also Kubernetes) | `kubepods-…-pod<uid>.slice/cri-containerd-<id>.scope` | `/kubepods/…/pod<uid>/<id>` |
//! | CRI-O | `kubepods-…-pod<uid>.slice/crio-<id>.scope` | `/kubepods/…/pod<uid>/crio-<id>` |
//! | podman (also rootless) | `machine.slice/libpod-<id>.scope`, `user@1000.service/…/libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//!
//! `<id>` is 64 lowercase hex digits. The runtimes' monitor processes
//! (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are not the
//! container: they get no id.

/// The 64-hex container id in `cgroup_path` (relative to the cgroup root
/// or absolute), or `None` outside a container.
pub fn container_id(cgroup_path: &str) -> Option<&str> {
    // The innermost container wins (a container's own sub-cgroups keep
    // its id; nested runtimes name the inner one last).
    cgroup_path.rsplit('/').find_map(id_of_component)
}

fn id_of_component(component: &str) -> Option<&str> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    if name.contains("-conmon-") {
        return None;
    }
    let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    is_container_id(id).then_some(id)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` starts with `prefix`, the `--container` form: at least 12
/// hex digits, as `docker ps` shows them.
pub fn matches_prefix(id: &str, prefix: &str) -> bool {
    prefix.len() >= 12 && id.starts_with(prefix)
}

/// Checks a `--container` value: 12 to 64 lowercase hex digits.
pub fn parse_container_prefix(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    if (12..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(format!(
            "{text:?} is not a container id: give 12 to 64 hex digits, as `docker ps` shows them"
        ))
    }
}

/// Finds the cgroups of the containers whose ids start with given
/// prefixes, by walking the cgroup v2 hierarchy: for `--container`, whose
/// in-kernel filter is a set of cgroup ids. Each call returns only the
/// cgroups not returned before, so it can be called again to pick up
/// containers that started since.
pub struct ContainerCgroups {
    root: std::path::PathBuf,
    prefixes: Vec<String>,
    seen: std::collections::HashSet<u64>,
}

impl ContainerCgroups {
    pub fn new(root: std::path::PathBuf, prefixes: Vec<String>) -> Self {
        ContainerCgroups {
            root,
            prefixes,
            seen: Default::default(),
        }
    }

    /// The ids (cgroupfs inodes) of matching cgroups not returned before.
    /// A container's own sub-cgroups match too (they are below it anyway).
    pub fn new_ids(&mut self) -> Vec<u64> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                let name = entry.file_name();
                if let Some(id) = id_of_component(&name.to_string_lossy())
                    && self.prefixes.iter().any(|p| matches_prefix(id, p))
                    && let Ok(meta) = std::fs::symlink_metadata(&path)
                    && self.seen.insert(meta.ino())
                {
                    out.push(meta.ino());
                }
                stack.push(path);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f9c1b2a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    #[test]
    fn each_runtime_and_driver() {
        let samples = [
            // docker, systemd driver and cgroupfs driver
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            // containerd under Kubernetes, systemd driver
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID}.scope"
            ),
            // containerd under Kubernetes, cgroupfs driver
            format!("/kubepods/besteffort/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}"),
            // CRI-O, both drivers
            format!(
                "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/crio-{ID}.scope"
            ),
            format!("/kubepods/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/crio-{ID}"),
            // podman, root and rootless
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
            // a sub-cgroup the container made for itself keeps its id
            format!("/system.slice/docker-{ID}.scope/init.scope"),
            // relative to the cgroup root, as nwtrace writes it
            format!("system.slice/docker-{ID}.scope"),
        ];
        for path in &samples {
            assert_eq!(container_id(path), Some(ID), "{path}");
        }
    }

    #[test]
    fn outside_containers_and_monitors() {
        for path in [
            "/",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/ssh.service",
            "/system.slice/docker.service",
            "/kubepods.slice/kubepods-burstable.slice",
            // the runtime's monitor, not the container
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/kubepods.slice/crio-conmon-{ID}.scope"),
            // not 64 hex digits
            "/system.slice/docker-3f9c1b2a4d5e.scope",
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/system.slice/docker-{}x.scope", &ID[1..]),
        ] {
            assert_eq!(container_id(path), None, "{path}");
        }
    }

    #[test]
    fn container_cgroups_are_found_once_and_later_ones_too() {
        use std::os::unix::fs::MetadataExt;
        let root = std::env::temp_dir().join(format!("nwtrace-ct-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let docker = root.join(format!("system.slice/docker-{ID}.scope"));
        let other = root.join(format!("system.slice/docker-{}.scope", "0".repeat(64)));
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let mut f = ContainerCgroups::new(root.clone(), vec![ID[..12].to_string()]);
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(f.new_ids(), [ino(&docker)]);
        assert_eq!(f.new_ids(), Vec::<u64>::new(), "nothing new");
        // The same container under Kubernetes, started later.
        let later = root.join(format!(
            "kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope"
        ));
        std::fs::create_dir_all(&later).unwrap();
        assert_eq!(f.new_ids(), [ino(&later)]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn container_prefixes() {
        assert_eq!(
            parse_container_prefix("3F9C1B2A4D5E"),
            Ok("3f9c1b2a4d5e".into())
        );
        assert!(parse_container_prefix("3f9c1b2a4d5").is_err(), "11 digits");
        assert!(parse_container_prefix("3f9c1b2a4d5g").is_err());
        assert!(
            parse_container_prefix(&format!("{ID}0")).is_err(),
            "65 digits"
        );
        assert!(matches_prefix(ID, "3f9c1b2a4d5e"));
        assert!(!matches_prefix(ID, "3f9c1b2a4d5f"));
        assert!(
            !matches_prefix(ID, "3f9c"),
            "too short to mean one container"
        );
    }
}
