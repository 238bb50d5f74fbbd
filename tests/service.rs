//! Running nwtrace as a service: the version it reports, the least
//! privilege it needs, its config files. Root tests skip without root,
//! never under CI=true.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::nwtrace_bin;

fn nwtrace(args: &[&str]) -> Output {
    Command::new(nwtrace_bin())
        .args(args)
        .output()
        .expect("running nwtrace")
}

#[test]
fn version_names_the_commit() {
    let _guard = serial();
    let out = nwtrace(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected_prefix = format!("nwtrace {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_prefix), "{text:?}");
    let commit = text.trim_end().strip_prefix(&expected_prefix).unwrap();
    let commit = commit.strip_suffix(')').unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{commit:?}"
    );
    // Built from a checkout, it is the checkout's commit (or an ancestor of
    // it when the tree moved on since the build).
    if let Ok(head) = Command::new("git").args(["rev-parse", "HEAD"]).output()
        && head.status.success()
        && commit != "unknown"
    {
        let ok = Command::new("git")
            .args(["merge-base", "--is-ancestor", commit, "HEAD"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{commit} is not HEAD or an ancestor of it");
    }
}

/// The capabilities a non-root user needs (README, "Least privilege").
const SERVICE_CAPS: [&str; 3] = ["bpf", "perfmon", "dac_read_search"];

/// One root test at a time: a copy of the binary being written while
/// another test forks would make the exec fail with ETXTBSY.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A copy of the binary that nobody can reach and run (the checkout may
/// sit in a folder nobody cannot traverse), and an output folder nobody
/// owns.
fn nobody_setup(tag: &str) -> (PathBuf, PathBuf) {
    let dir = common::scratch_dir(tag);
    let bin = dir.join("nwtrace");
    std::fs::copy(nwtrace_bin(), &bin).unwrap();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    (bin, out)
}

/// `setpriv` running `bin` as nobody with exactly `caps` (ambient, so
/// they survive the exec) and nothing else in any set.
fn as_nobody_with(caps: &[&str], bin: &Path, args: &[&str]) -> Command {
    let list: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg(format!("--bounding-set={list}"))
        .arg(bin)
        .args(args)
        .env_clear()
        .stdin(Stdio::null());
    cmd
}

#[test]
fn records_as_nobody_with_exactly_the_documented_capabilities() {
    if common::skip_without_root("records_as_nobody_with_exactly_the_documented_capabilities") {
        return;
    }
    let _guard = serial();
    let (bin, out) = nobody_setup("caps");
    let pid = std::process::id().to_string();
    let backend = common::backend();
    let args = [
        "record",
        "-o",
        out.to_str().unwrap(),
        "--pid",
        &pid,
        "--backend",
        &backend,
        "--duration",
        "60s",
    ];
    let mut child = as_nobody_with(&SERVICE_CAPS, &bin, &args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("Tracing"), "{line}");
    // Known traffic from this process: 5 UDP sends to the discard port.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        sock.send_to(b"least privilege", "127.0.0.1:9").unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill on our own child's pid (setpriv exec'd nwtrace).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    let files = common::csv_files(&out);
    let sends = files
        .iter()
        .flat_map(|f| common::read_rows(f))
        .filter(|r| r.get("Protocol") == "UDP" && r.get("Destination Port") == "9")
        .count();
    assert_eq!(sends, 5, "{rest}");
    // The files belong to the user that wrote them.
    let meta = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
}

#[test]
fn one_capability_fewer_is_one_line_naming_it() {
    if common::skip_without_root("one_capability_fewer_is_one_line_naming_it") {
        return;
    }
    let _guard = serial();
    let (bin, out) = nobody_setup("fewer");
    for missing in SERVICE_CAPS {
        let caps: Vec<&str> = SERVICE_CAPS.into_iter().filter(|c| *c != missing).collect();
        let output = as_nobody_with(
            &caps,
            &bin,
            &["record", "-o", out.to_str().unwrap(), "-d", "1s"],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{missing}: {err}");
        assert_eq!(err.lines().count(), 1, "{missing}: {err}");
        let name = format!("lacks CAP_{}", missing.to_uppercase());
        assert!(err.contains(&name), "{missing}: {err}");
        assert!(common::csv_files(&out).is_empty(), "{missing}: wrote files");
    }
}
