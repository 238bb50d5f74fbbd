//! The folder layout `<output-dir>/<MACHINE_ID>/<TIMESTAMP>/nw/`, created
//! so that nobody else on the host can redirect a root-owned write: every
//! folder below the output dir is made and opened through [`SafeDir`],
//! relative to its parent's descriptor and never through a symlink.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::output::dir::SafeDir;

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

/// Creates (or opens) `<output_dir>/<machine_id>/<timestamp>/nw`: the
/// run's folder.
///
/// The output dir itself is the user's choice and may be a symlink; it is
/// created with its parents if missing. Everything below it is ours.
pub fn create_run_dir(
    output_dir: &Path,
    machine_id: &str,
    timestamp: &str,
) -> Result<SafeDir, LayoutError> {
    validate_component("machine id", machine_id)?;
    validate_component("timestamp", timestamp)?;
    SafeDir::open_user_path(output_dir)?
        .open_or_create_dir(machine_id)?
        .open_or_create_dir(timestamp)?
        .open_or_create_dir("nw")
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
        assert_eq!(run.path(), out.join("m1/20261126T050814Z/nw"));
        for p in ["m1", "m1/20261126T050814Z", "m1/20261126T050814Z/nw"] {
            let mode = std::fs::metadata(out.join(p)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o750, "{p}");
        }
        let f = run.create_file_exclusive("nw_0001.csv").unwrap().unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o640);
        // Taken: the caller moves on.
        assert!(run.create_file_exclusive("nw_0001.csv").unwrap().is_none());
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
        std::os::unix::fs::symlink(dir.join("target"), run.path().join("nw_0001.csv")).unwrap();
        let err = run.create_file_exclusive("nw_0001.csv").err().unwrap();
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
