//! [`SafeDir`]: an open folder and its path, and the one audited place for
//! the `*at()` calls that create and replace what nwtrace writes.
//!
//! nwtrace runs as root and writes where other users may have write access.
//! Every name below a `SafeDir` is resolved relative to its descriptor, and
//! never through a symlink: folders are made with `mkdirat` and opened with
//! `O_NOFOLLOW | O_DIRECTORY`, files are created `O_CREAT | O_EXCL |
//! O_NOFOLLOW`, and a symlink where nwtrace expects its own entry is an
//! error that names the path.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::output::layout::LayoutError;

pub const DIR_MODE: libc::mode_t = 0o750;
pub const FILE_MODE: libc::mode_t = 0o640;

/// An open folder, with the path it was reached by (for messages only:
/// every operation goes through the descriptor).
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// A name inside a folder as a C string. Names come from nwtrace itself
/// (validated components, `nw_NNNN.csv`, `manifest.json`), so a NUL in one
/// is a bug.
fn c_name(name: &str) -> CString {
    CString::new(name).expect("nwtrace's own file names hold no NUL")
}

fn io_error(path: PathBuf) -> impl FnOnce(io::Error) -> LayoutError {
    move |source| LayoutError::Io { path, source }
}

impl SafeDir {
    /// Opens `path` as a folder, creating it and its parents first if it is
    /// missing. The path is the user's choice (`--output-dir`) and may go
    /// through symlinks; what nwtrace creates below it may not.
    pub fn open_user_path(path: &Path) -> Result<SafeDir, LayoutError> {
        if !path.exists() {
            std::fs::create_dir_all(path).map_err(io_error(path.to_path_buf()))?;
        }
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io_error(path.to_path_buf())(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: c_path is a valid C string; the fd is checked before use.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::ENOTDIR) {
                LayoutError::NotADir(path.to_path_buf())
            } else {
                LayoutError::Io {
                    path: path.to_path_buf(),
                    source: err,
                }
            });
        }
        Ok(SafeDir {
            // SAFETY: fd is a freshly opened descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the same folder.
    pub fn try_clone(&self) -> io::Result<SafeDir> {
        Ok(SafeDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Opens the folder `name` inside this one, creating it (0750) first if
    /// it is missing, without following a symlink at any point.
    pub fn open_or_create_dir(&self, name: &str) -> Result<SafeDir, LayoutError> {
        let path = self.path.join(name);
        let c_name = c_name(name);
        // SAFETY: self.fd is an open folder and c_name a valid C string.
        let created = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c_name.as_ptr(), DIR_MODE) } == 0;
        if !created {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(LayoutError::Io { path, source: err });
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above; the returned fd is checked before use.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c_name.as_ptr(), flags) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ELOOP) => LayoutError::SymlinkDir(path),
                Some(libc::ENOTDIR) if self.is_symlink(&c_name) => LayoutError::SymlinkDir(path),
                Some(libc::ENOTDIR) => LayoutError::NotADir(path),
                _ => LayoutError::Io { path, source: err },
            });
        }
        let dir = SafeDir {
            // SAFETY: fd is a freshly opened descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path,
        };
        if created {
            // The umask may have narrowed the mode; the contract says 0750.
            // SAFETY: dir.fd is an open descriptor.
            if unsafe { libc::fchmod(dir.fd.as_raw_fd(), DIR_MODE) } != 0 {
                return Err(LayoutError::Io {
                    path: dir.path,
                    source: io::Error::last_os_error(),
                });
            }
        }
        Ok(dir)
    }

    fn is_symlink(&self, name: &CString) -> bool {
        // SAFETY: zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: self.fd is an open folder, name a valid C string, st
        // writable.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        rc == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
    }

    /// Creates the file `name` with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode
    /// 0640. `Ok(None)` when the name is taken, so the caller can try the
    /// next one; an error when a symlink sits there.
    pub fn create_file_exclusive(&self, name: &str) -> Result<Option<File>, LayoutError> {
        let path = self.path.join(name);
        let c_name = c_name(name);
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: self.fd is an open folder and c_name a valid C string.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                flags,
                FILE_MODE as libc::c_uint,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EEXIST) if self.is_symlink(&c_name) => {
                    Err(LayoutError::SymlinkFile(path))
                }
                Some(libc::EEXIST) => Ok(None),
                Some(libc::ELOOP) => Err(LayoutError::SymlinkFile(path)),
                _ => Err(LayoutError::Io { path, source: err }),
            };
        }
        // SAFETY: fd is a freshly opened descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: file holds an open descriptor.
        if unsafe { libc::fchmod(file.as_raw_fd(), FILE_MODE) } != 0 {
            return Err(LayoutError::Io {
                path,
                source: io::Error::last_os_error(),
            });
        }
        Ok(Some(file))
    }

    /// Opens an existing file of ours for writing, refusing a symlink.
    pub fn open_file_for_write(&self, name: &str) -> io::Result<File> {
        let c_name = c_name(name);
        // SAFETY: self.fd is an open folder and c_name a valid C string;
        // the fd is checked before use.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Removes the file `name` (never a folder; a symlink is removed
    /// itself, not followed).
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c_name = c_name(name);
        // SAFETY: self.fd is an open folder and c_name a valid C string.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_name.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Renames `from` to `to` within this folder, replacing `to`
    /// atomically. Neither name is followed if it is a symlink.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (c_from, c_to) = (c_name(from), c_name(to));
        // SAFETY: self.fd is an open folder and both names valid C strings.
        let rc = unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                c_from.as_ptr(),
                self.fd.as_raw_fd(),
                c_to.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Replaces the file `name` atomically, so a reader (or a crash) sees
    /// the old contents or the new, never a mix: `fill` writes the new
    /// contents into a temporary file `.NAME.PID.tmp` (created exclusively:
    /// never a symlink someone planted), which is synced and renamed over
    /// `name`. Returns the new file, still open. On any failure the
    /// temporary file is removed and `name` is left as it was.
    pub fn replace_file(
        &self,
        name: &str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<File> {
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        // A leftover from a killed run with our pid: ours to remove.
        let _ = self.unlink(&tmp);
        let mut file = self
            .create_file_exclusive(&tmp)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists))?;
        let written = fill(&mut file)
            .and_then(|()| file.sync_data())
            .and_then(|()| self.rename(&tmp, name));
        match written {
            Ok(()) => Ok(file),
            Err(e) => {
                let _ = self.unlink(&tmp);
                Err(e)
            }
        }
    }
}

/// What [`SafeDir::stat`] tells of an entry (never following a symlink).
#[derive(Debug, Clone, Copy)]
pub struct EntryStat {
    pub is_file: bool,
    pub is_dir: bool,
    pub uid: u32,
    pub mtime_secs: i64,
}

impl SafeDir {
    /// Opens the existing folder `name` inside this one, never through a
    /// symlink; `None` when it is missing, not a folder, or a symlink.
    pub fn open_existing_dir(&self, name: &str) -> Option<SafeDir> {
        let c_name = c_name(name);
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: self.fd is an open folder and c_name a valid C string;
        // the fd is checked before use.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c_name.as_ptr(), flags) };
        if fd < 0 {
            return None;
        }
        Some(SafeDir {
            // SAFETY: fd is a freshly opened descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: self.path.join(name),
        })
    }

    /// The names in this folder (through the descriptor, not the path).
    pub fn entries(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))? {
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The entry `name`'s type, owner and mtime, without following it.
    pub fn stat(&self, name: &str) -> Option<EntryStat> {
        let c_name = c_name(name);
        // SAFETY: zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: self.fd is an open folder, c_name a valid C string, st
        // writable.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        (rc == 0).then_some(EntryStat {
            is_file: (st.st_mode & libc::S_IFMT) == libc::S_IFREG,
            is_dir: (st.st_mode & libc::S_IFMT) == libc::S_IFDIR,
            uid: st.st_uid,
            mtime_secs: st.st_mtime,
        })
    }

    /// Opens the file `name` for reading, refusing a symlink.
    pub fn open_file_for_read(&self, name: &str) -> io::Result<File> {
        let c_name = c_name(name);
        // SAFETY: self.fd is an open folder and c_name a valid C string;
        // the fd is checked before use.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Removes the folder `name` if it is empty (ENOTEMPTY otherwise).
    pub fn rmdir(&self, name: &str) -> io::Result<()> {
        let c_name = c_name(name);
        // SAFETY: self.fd is an open folder and c_name a valid C string.
        let rc =
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), c_name.as_ptr(), libc::AT_REMOVEDIR) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn replace_file_swaps_whole_contents_or_leaves_the_old_ones() {
        let out = std::env::temp_dir().join(format!("nwtrace-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let dir = SafeDir::open_user_path(&out).unwrap();
        dir.replace_file("m.json", |f| f.write_all(b"old")).unwrap();
        assert_eq!(std::fs::read(out.join("m.json")).unwrap(), b"old");

        // A failing fill: the old contents stay and no temporary is left.
        let failed = dir.replace_file("m.json", |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(out.join("m.json")).unwrap(), b"old");
        assert_eq!(dir.entries().unwrap(), vec!["m.json".to_string()]);

        dir.replace_file("m.json", |f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(out.join("m.json")).unwrap(), b"new");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
