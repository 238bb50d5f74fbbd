//! The folder layout `<output-dir>/<MACHINE_ID>/<TIMESTAMP>/nw/`, created
//! so that nobody else on the host can redirect a root-owned write: every
//! folder below the output dir is made with `mkdirat` and opened with
//! `O_NOFOLLOW | O_DIRECTORY`, relative to its parent's descriptor.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub const DIR_MODE: libc::mode_t = 0o750;
pub const FILE_MODE: libc::mode_t = 0o640;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{what} {value:?} is not a single path component of [A-Za-z0-9._-]; pass a plain name")]
    BadComponent { what: &'static str, value: String },
    #[error(
        "{0} is a symlink where nwtrace expects its own folder; remove it or pick another --output-dir"
    )]
    SymlinkDir(PathBuf),
    #[error("{0} exists and is not a folder; remove it or pick another --output-dir")]
    NotADir(PathBuf),
    #[error("{0} is a symlink where nwtrace expects its own file; remove it")]
    SymlinkFile(PathBuf),
    #[error("cannot create {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Checks that `value` can be one path component: `[A-Za-z0-9._-]+`, and
/// not `.` or `..`.
pub fn validate_component(what: &'static str, value: &str) -> Result<(), LayoutError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LayoutError::BadComponent {
            what,
            value: value.to_string(),
        })
    }
}

/// The machine id: `/etc/machine-id`, else `/var/lib/dbus/machine-id`, else
/// the hostname. Empty files count as absent.
pub fn default_machine_id() -> Result<String, LayoutError> {
    machine_id_from(&[
        Path::new("/etc/machine-id"),
        Path::new("/var/lib/dbus/machine-id"),
    ])
}

fn machine_id_from(files: &[&Path]) -> Result<String, LayoutError> {
    for file in files {
        if let Ok(text) = std::fs::read_to_string(file) {
            let id = text.trim();
            if !id.is_empty() {
                validate_component("machine id", id)?;
                return Ok(id.to_string());
            }
        }
    }
    let host = hostname();
    validate_component("hostname (used as machine id)", &host)?;
    Ok(host)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes; gethostname NUL-terminates
    // within that length on success (and we stop at the first NUL anyway).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn cstring(name: &str) -> CString {
    // Components are validated to [A-Za-z0-9._-], so they hold no NUL.
    CString::new(name).expect("validated path component has no NUL")
}

/// Opens `name` under `parent` as a folder, creating it (0750) first if it
/// is missing, without following a symlink at any point.
pub fn open_or_create_dir(
    parent: &OwnedFd,
    parent_path: &Path,
    name: &str,
) -> Result<OwnedFd, LayoutError> {
    let path = parent_path.join(name);
    let c_name = cstring(name);
    // SAFETY: parent is an open directory fd and c_name a valid C string.
    let created = unsafe { libc::mkdirat(parent.as_raw_fd(), c_name.as_ptr(), DIR_MODE) } == 0;
    if !created {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(LayoutError::Io { path, source: err });
        }
    }
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; the returned fd is checked before use.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), c_name.as_ptr(), flags) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ELOOP) => LayoutError::SymlinkDir(path),
            Some(libc::ENOTDIR) => {
                if is_symlink_at(parent, &c_name) {
                    LayoutError::SymlinkDir(path)
                } else {
                    LayoutError::NotADir(path)
                }
            }
            _ => LayoutError::Io { path, source: err },
        });
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    if created {
        // The umask may have narrowed the mode; the contract says 0750.
        // SAFETY: dir is an open fd.
        if unsafe { libc::fchmod(dir.as_raw_fd(), DIR_MODE) } != 0 {
            return Err(LayoutError::Io {
                path,
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(dir)
}

fn is_symlink_at(parent: &OwnedFd, name: &CString) -> bool {
    // SAFETY: zeroed stat is a valid out-parameter; fd and name are valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            parent.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    rc == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
}

/// Creates `name` under `dir` with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode
/// 0640. `Ok(None)` when the name is taken, so the caller can try the next.
pub fn create_file_exclusive(
    dir: &OwnedFd,
    dir_path: &Path,
    name: &str,
) -> Result<Option<File>, LayoutError> {
    let path = dir_path.join(name);
    let c_name = cstring(name);
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: dir is an open directory fd and c_name a valid C string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c_name.as_ptr(),
            flags,
            FILE_MODE as libc::c_uint,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EEXIST) if is_symlink_at(dir, &c_name) => {
                Err(LayoutError::SymlinkFile(path))
            }
            Some(libc::EEXIST) => Ok(None),
            Some(libc::ELOOP) => Err(LayoutError::SymlinkFile(path)),
            _ => Err(LayoutError::Io { path, source: err }),
        };
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: file holds an open fd.
    if unsafe { libc::fchmod(file.as_raw_fd(), FILE_MODE) } != 0 {
        return Err(LayoutError::Io {
            path,
            source: io::Error::last_os_error(),
        });
    }
    Ok(Some(file))
}

/// The run's `nw` folder, open.
pub struct RunDir {
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// Creates (or opens) `<output_dir>/<machine_id>/<timestamp>/nw`.
///
/// The output dir itself is the user's choice and may be a symlink; it is
/// created with its parents if missing. Everything below it is ours.
pub fn create_run_dir(
    output_dir: &Path,
    machine_id: &str,
    timestamp: &str,
) -> Result<RunDir, LayoutError> {
    validate_component("machine id", machine_id)?;
    validate_component("timestamp", timestamp)?;
    if !output_dir.exists() {
        std::fs::create_dir_all(output_dir).map_err(|source| LayoutError::Io {
            path: output_dir.to_path_buf(),
            source,
        })?;
    }
    let c_out = CString::new(output_dir.as_os_str().as_bytes()).map_err(|_| LayoutError::Io {
        path: output_dir.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: c_out is a valid C string; the fd is checked before use.
    let fd = unsafe {
        libc::open(
            c_out.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::ENOTDIR) {
            LayoutError::NotADir(output_dir.to_path_buf())
        } else {
            LayoutError::Io {
                path: output_dir.to_path_buf(),
                source: err,
            }
        });
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    let out_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let machine_path = output_dir.join(machine_id);
    let machine_fd = open_or_create_dir(&out_fd, output_dir, machine_id)?;
    let run_path = machine_path.join(timestamp);
    let run_fd = open_or_create_dir(&machine_fd, &machine_path, timestamp)?;
    let nw_path = run_path.join("nw");
    let nw_fd = open_or_create_dir(&run_fd, &run_path, "nw")?;
    Ok(RunDir {
        path: nw_path,
        fd: nw_fd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nwtrace-layout-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn components() {
        for ok in ["abc", "20261126T050814Z", "a.b-c_d", "0123456789abcdef"] {
            assert!(validate_component("x", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "ü", "a\0b", "x\n"] {
            assert!(validate_component("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn machine_id_sources_in_order() {
        let dir = tempdir("mid");
        let a = dir.join("a");
        let b = dir.join("b");
        std::fs::write(&b, "fromdbus\n").unwrap();
        assert_eq!(machine_id_from(&[&a, &b]).unwrap(), "fromdbus");
        std::fs::write(&a, "  \n").unwrap();
        assert_eq!(machine_id_from(&[&a, &b]).unwrap(), "fromdbus");
        std::fs::write(&a, "0123abcd\n").unwrap();
        assert_eq!(machine_id_from(&[&a, &b]).unwrap(), "0123abcd");
        std::fs::write(&a, "../etc\n").unwrap();
        assert!(machine_id_from(&[&a, &b]).is_err());
        let missing = dir.join("missing");
        assert_eq!(machine_id_from(&[&missing]).unwrap(), hostname());
    }

    #[test]
    fn creates_the_layout_with_modes() {
        let dir = tempdir("create");
        let out = dir.join("out");
        let run = create_run_dir(&out, "m1", "20261126T050814Z").unwrap();
        assert_eq!(run.path, out.join("m1/20261126T050814Z/nw"));
        for p in ["m1", "m1/20261126T050814Z", "m1/20261126T050814Z/nw"] {
            let mode = std::fs::metadata(out.join(p)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o750, "{p}");
        }
        let f = create_file_exclusive(&run.fd, &run.path, "nw_0001.csv")
            .unwrap()
            .unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o640);
        // Taken: the caller moves on.
        assert!(
            create_file_exclusive(&run.fd, &run.path, "nw_0001.csv")
                .unwrap()
                .is_none()
        );
        // A second run in the same folder opens it again.
        create_run_dir(&out, "m1", "20261126T050814Z").unwrap();
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempdir("symlink");
        let out = dir.join("out");
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("m1")).unwrap();
        let err = create_run_dir(&out, "m1", "t").err().unwrap();
        assert!(
            matches!(err, LayoutError::SymlinkDir(ref p) if p == &out.join("m1")),
            "{err}"
        );
        assert!(err.to_string().contains("out/m1"));

        let run = create_run_dir(&out, "m2", "t").unwrap();
        std::os::unix::fs::symlink(dir.join("target"), run.path.join("nw_0001.csv")).unwrap();
        let err = create_file_exclusive(&run.fd, &run.path, "nw_0001.csv")
            .err()
            .unwrap();
        assert!(matches!(err, LayoutError::SymlinkFile(_)), "{err}");
        assert!(!dir.join("target").exists());
    }

    #[test]
    fn a_file_where_a_folder_goes() {
        let dir = tempdir("notdir");
        std::fs::write(dir.join("m1"), "x").unwrap();
        let err = create_run_dir(&dir, "m1", "t").err().unwrap();
        assert!(matches!(err, LayoutError::NotADir(_)), "{err}");
        let err = create_run_dir(&dir.join("m1"), "m", "t").err().unwrap();
        assert!(matches!(err, LayoutError::NotADir(_)), "{err}");
    }
}
