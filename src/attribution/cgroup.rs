//! Cgroup v2 ids (what `bpf_get_current_cgroup_id()` returns) to paths
//! relative to the cgroup root.
//!
//! On cgroup v2 a cgroup's id is its folder's inode number in cgroupfs
//! (kernfs node id), so the map is made by walking the hierarchy, as
//! ebpf_exporter does. It is cached, and walked again on a miss (a cgroup
//! made since), at most once per `RESCAN_EVERY`: a flood of events from a
//! cgroup that is already gone must not turn into a flood of walks. A
//! cgroup that disappears before it is resolved keeps its number, written
//! `id:NNN`, never a wrong path.

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The least time between two walks of the hierarchy.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo:
/// `/sys/fs/cgroup` on a unified system, `/sys/fs/cgroup/unified` on a
/// hybrid one.
pub fn cgroup2_root() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_root_in(&text)
}

/// The mount point of the first cgroup2 line of a mountinfo text.
fn cgroup2_root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(unescape_mount))?
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
fn unescape_mount(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

pub struct CgroupResolver {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
    /// Walks made so far (for tests and the run's statistics).
    pub walks: u64,
}

impl CgroupResolver {
    pub fn new(root: PathBuf) -> Self {
        CgroupResolver {
            root,
            paths: HashMap::new(),
            last_walk: None,
            walks: 0,
        }
    }

    /// The path of cgroup `id` relative to the root (`""` is the root
    /// itself), or `id:NNN` when no cgroup has that id.
    pub fn resolve(&mut self, id: u64) -> String {
        if let Some(path) = self.paths.get(&id) {
            return path.clone();
        }
        let due = self.last_walk.is_none_or(|t| t.elapsed() >= RESCAN_EVERY);
        if due {
            self.walk();
            if let Some(path) = self.paths.get(&id) {
                return path.clone();
            }
        }
        format!("id:{id}")
    }

    /// Walks the whole hierarchy and adds every cgroup to the cache. Paths
    /// already known are kept: an id is never reused while the kernel
    /// runs, so a cgroup removed since still has its right path.
    fn walk(&mut self) {
        self.walks += 1;
        self.last_walk = Some(Instant::now());
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&dir) else {
                continue;
            };
            let rel = relative(&self.root, &dir);
            self.paths.entry(meta.ino()).or_insert(rel);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // Cgroups are folders; never follow a link out of cgroupfs.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
}

fn relative(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nwtrace-cgroup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ino(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn ids_are_folder_inodes_and_a_miss_walks_again() {
        let root = tempdir("walk");
        let scope = root.join("system.slice/docker-abc.scope");
        std::fs::create_dir_all(&scope).unwrap();
        let mut r = CgroupResolver::new(root.clone());
        assert_eq!(r.resolve(ino(&scope)), "system.slice/docker-abc.scope");
        assert_eq!(r.resolve(ino(&root)), "");
        assert_eq!(r.walks, 1, "the second answer came from the cache");

        // A cgroup made later is found by the walk a miss causes, once the
        // rescan interval has passed.
        let later = root.join("user.slice");
        std::fs::create_dir_all(&later).unwrap();
        r.last_walk = Some(Instant::now() - RESCAN_EVERY);
        assert_eq!(r.resolve(ino(&later)), "user.slice");
        assert_eq!(r.walks, 2);

        // Gone before it was resolved: its number, not a guess.
        let gone = root.join("gone.scope");
        std::fs::create_dir_all(&gone).unwrap();
        let gone_id = ino(&gone);
        std::fs::remove_dir(&gone).unwrap();
        r.last_walk = Some(Instant::now() - RESCAN_EVERY);
        assert_eq!(r.resolve(gone_id), format!("id:{gone_id}"));
        // ...and a flood of misses does not walk again at once.
        for _ in 0..100 {
            r.resolve(gone_id);
        }
        assert_eq!(r.walks, 3);

        // Known before it went: its path stays right.
        std::fs::remove_dir(&later).unwrap();
        assert_eq!(
            r.paths.get(&ino(&scope)).unwrap(),
            "system.slice/docker-abc.scope"
        );
    }

    #[test]
    fn cgroup2_mount_from_mountinfo() {
        let unified = "24 18 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_root_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n";
        assert_eq!(
            cgroup2_root_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v1_only = "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_root_in(v1_only), None);
        let spaced = "40 25 0:30 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root_in(spaced), Some(PathBuf::from("/mnt/cg two")));
    }
}
