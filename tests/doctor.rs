//! `nwtrace doctor` agrees with what `record` does on this kernel.

mod common;

use std::process::Command;

use common::*;

#[test]
fn doctor_explains_every_backend_and_record_agrees() {
    if skip_without_root("doctor_explains_every_backend_and_record_agrees") {
        return;
    }
    let out = Command::new(nwtrace_bin())
        .arg("doctor")
        .output()
        .expect("running doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for field in [
        "kernel",
        "btf",
        "lockdown",
        "tracefs",
        "per-thread state",
        "sock tracepoints",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(field)),
            "no {field:?} line:\n{text}"
        );
    }
    // One verdict per backend, and a reason for each that does not work.
    let verdict = |backend: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(backend))
            .unwrap_or_else(|| panic!("no line for {backend}:\n{text}"))
            .to_string()
    };
    for backend in ["fentry", "tracepoint", "kprobe"] {
        let line = verdict(backend);
        assert!(
            line.contains("works (loaded, attached, detached)") || line.contains("does not work: "),
            "{line}"
        );
    }
    let chosen = text
        .lines()
        .find_map(|l| l.strip_prefix("record would use"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no choice:\n{text}"))
        .to_string();
    assert!(
        verdict(&chosen).contains("works"),
        "doctor chose {chosen}, which it says does not work"
    );

    // record with auto picks the same backend.
    let dir = scratch_dir("doctor");
    let mut tracer = Tracer::start(&dir, &[]);
    assert_eq!(tracer.stop(), 0);
    let tracing = tracer
        .stderr
        .iter()
        .find(|l| l.starts_with("Tracing"))
        .unwrap();
    assert!(
        tracing.contains(&format!("(backend: {chosen})")),
        "{tracing}"
    );

    // Forcing a backend doctor says does not work fails with its reason.
    for backend in ["fentry", "tracepoint", "kprobe"] {
        if verdict(backend).contains("does not work") {
            let out = Command::new(nwtrace_bin())
                .args(["record", "--backend", backend, "-o"])
                .arg(dir.join("forced"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains(&format!("{backend}: ")) && err.contains("nwtrace doctor"),
                "{err}"
            );
        }
    }
}
