//! Running nwtrace as a service: the version it reports, the least
//! privilege it needs, its config files. Root tests skip without root,
//! never under CI=true.

mod common;

use std::process::{Command, Output};

use common::nwtrace_bin;

fn nwtrace(args: &[&str]) -> Output {
    Command::new(nwtrace_bin())
        .args(args)
        .output()
        .expect("running nwtrace")
}

#[test]
fn version_names_the_commit() {
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
