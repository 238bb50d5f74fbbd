//! `nwtrace doctor` agrees with what `record` does on this kernel.

use nwtrace_testkit as common;

use std::process::Command;

use common::*;

#[test]
fn doctor_explains_every_backend_and_record_agrees() {
    if skip_without_root("doctor_explains_every_backend_and_record_agrees") {
        return;
    }
    // Scripts read the JSON; the text says the same for a person.
    let out = Command::new(nwtrace_bin())
        .args(["doctor", "--format", "json"])
        .output()
        .expect("running doctor");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    assert_eq!(report["schema_version"], 1);
    for field in ["kernel", "lockdown"] {
        assert!(report[field].is_string(), "{field}: {report}");
    }
    // tracefs: where it is, or null with the reason (lockdown, below).
    assert!(
        report["tracefs"].is_string() || report["tracefs_note"].is_string(),
        "{report}"
    );
    assert_eq!(report["btf"], true);
    assert_eq!(report["privileged"], true);
    assert!(report["facts"]["task_storage"].is_boolean(), "{report}");

    // One verdict per backend, and a reason for each that does not work.
    let verdicts = report["backends"].as_array().expect("backends");
    let names: Vec<&str> = verdicts
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fentry", "tracepoint", "kprobe"]);
    let works = |backend: &str| {
        let v = verdicts.iter().find(|v| v["name"] == backend).unwrap();
        let works = v["works"].as_bool().unwrap();
        assert_eq!(works, v["error"].is_null(), "{v}");
        works
    };
    // Which backend gives the Socket Cookie column: the tracing-program
    // backends on a 5.12+ kernel, never kprobes (docs/record.md, "Optional columns").
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let new_enough = (it.next().unwrap(), it.next().unwrap()) >= (5, 12);
    assert_eq!(
        report["facts"]["socket_cookie_tracing"], new_enough,
        "{report}"
    );
    for v in verdicts {
        let want = new_enough && v["name"] != "kprobe";
        assert_eq!(v["socket_cookie"], want, "{v}");
    }
    // The syscall tracepoints each backend attached, as docs/backends.md
    // lists them: none for fentry and kprobe, 17 for tracepoint.
    let tracepoint_tps: Vec<String> = [
        "sys_enter_read",
        "sys_enter_readv",
        "sys_enter_recvfrom",
        "sys_enter_recvmmsg",
        "sys_enter_recvmsg",
        "sys_enter_sendfile64",
        "sys_enter_sendmmsg",
        "sys_enter_sendmsg",
        "sys_enter_sendto",
        "sys_enter_splice",
        "sys_enter_write",
        "sys_enter_writev",
        "sys_exit_recvfrom",
        "sys_exit_recvmmsg",
        "sys_exit_recvmsg",
        "sys_exit_sendfile64",
        "sys_exit_splice",
    ]
    .iter()
    .map(|t| format!("syscalls:{t}"))
    .collect();
    for v in verdicts {
        let got: Vec<String> = v["syscall_tracepoints"]
            .as_array()
            .unwrap_or_else(|| panic!("no syscall_tracepoints: {v}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        let want = if v["works"] == true && v["name"] == "tracepoint" {
            tracepoint_tps.clone()
        } else {
            Vec::new()
        };
        assert_eq!(got, want, "{v}");
    }
    let chosen = report["record_would_use"]
        .as_str()
        .unwrap_or_else(|| panic!("no choice: {report}"))
        .to_string();
    assert!(
        works(&chosen),
        "doctor chose {chosen}, which it says does not work"
    );
    // auto's order: the table's, or kprobe first where the kernel can
    // preempt BPF programs (docs/backends.md).
    let auto_order: Vec<String> = report["auto_order"]
        .as_array()
        .unwrap_or_else(|| panic!("no auto_order: {report}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut sorted_order = auto_order.clone();
    sorted_order.sort();
    let mut sorted_names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted_names.sort();
    assert_eq!(sorted_order, sorted_names, "auto tries every backend once");
    let preemptible = report["facts"]["programs_preemptible"] == true;
    assert_eq!(
        auto_order[0] == "kprobe",
        preemptible,
        "kprobe first exactly where programs can be preempted: {report}"
    );
    let first_working = auto_order.iter().find(|b| works(b)).unwrap();
    assert_eq!(&chosen, first_working, "auto takes the first that works");

    // Under lockdown=confidentiality (the kernel's own word, read from
    // securityfs), the backends it refuses say so; elsewhere none does.
    let confidentiality = std::fs::read_to_string("/sys/kernel/security/lockdown")
        .is_ok_and(|l| l.contains("[confidentiality]"));
    for v in verdicts {
        let by_lockdown = &v["refused_by_lockdown"];
        if !confidentiality || v["works"] == true {
            assert!(by_lockdown.is_null(), "{v}");
        } else if v["name"] != "fentry" {
            // fentry may fail there for its own reasons (before 6.2).
            assert_eq!(by_lockdown, "confidentiality", "{v}");
        }
    }
    if confidentiality {
        // tracefs creates no file there: not usable, and said so.
        assert!(report["tracefs"].is_null(), "{report}");
        assert!(
            report["tracefs_note"]
                .as_str()
                .is_some_and(|n| n.contains("locked down")),
            "{report}"
        );
        // fentry reads by BTF loads from 6.2 (bpf_rdonly_cast()).
        let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = rel
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        if (v.next().unwrap(), v.next().unwrap()) >= (6, 2) {
            assert!(works("fentry"), "{report}");
        }
    }

    let text_out = Command::new(nwtrace_bin())
        .arg("doctor")
        .output()
        .expect("running doctor");
    let text = String::from_utf8_lossy(&text_out.stdout).into_owned();
    assert_eq!(text_out.status.code(), Some(0), "{text}");
    for backend in names.iter() {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(backend))
            .unwrap_or_else(|| panic!("no line for {backend}:\n{text}"));
        let says_works = line.contains("works (loaded, attached, detached)");
        assert_eq!(says_works, works(backend), "{line}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("record would use") && l.contains(&chosen)),
        "{text}"
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
    for backend in names.iter().copied() {
        if !works(backend) {
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

/// `nwtrace doctor | head -1`: the reader goes away after one line, and
/// doctor must end quietly, not panic on the closed pipe.
#[test]
fn doctor_into_a_closed_pipe_ends_quietly() {
    if skip_without_root("doctor_into_a_closed_pipe_ends_quietly") {
        return;
    }
    use std::process::Stdio;
    let mut child = Command::new(nwtrace_bin())
        .arg("doctor")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end at once: every write doctor makes hits EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "quiet: {err}");
}

/// `doctor --as-service` tries each backend in a child that holds only the
/// service's capabilities as uid 65534, and says per backend what is
/// missing. Checked against root's own verdicts and the sysctl.
#[test]
fn doctor_as_service_drops_to_the_units_capabilities() {
    if skip_without_root("doctor_as_service_drops_to_the_units_capabilities") {
        return;
    }
    let run = |extra: &[&str]| {
        let out = Command::new(nwtrace_bin())
            .args(["doctor", "--as-service", "--format", "json"])
            .args(extra)
            .output()
            .expect("running doctor --as-service");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    let root_works = |report: &serde_json::Value, name: &str| {
        report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == name && v["works"] == true)
    };
    let paranoid: i64 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let (code, report) = run(&[]);
    let service = &report["service"];
    assert_eq!(report["schema_version"], 1);
    assert_eq!(service["uid"], 65534, "{service}");
    assert_eq!(service["perf_event_paranoid"], paranoid, "{service}");
    // The unit's set: the installed unit's, else the packaged one.
    let unit = [
        "/etc/systemd/system",
        "/run/systemd/system",
        "/lib/systemd/system",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join("nwtrace.service"))
    .find(|p| p.exists());
    if unit.is_none() {
        assert_eq!(
            service["capabilities"],
            serde_json::json!(["CAP_DAC_READ_SEARCH", "CAP_PERFMON", "CAP_BPF"]),
            "{service}"
        );
    }
    let verdicts = service["backends"].as_array().expect("service backends");
    assert_eq!(verdicts.len(), 3, "{service}");
    for v in verdicts {
        let name = v["name"].as_str().unwrap();
        let works = v["works"].as_bool().unwrap();
        assert_eq!(works, v["fix"].is_null(), "{v}");
        if !root_works(&report, name) {
            // What root cannot do, the service cannot either.
            assert!(!works, "{v}");
            assert!(v["fix"].as_str().unwrap().contains("as root too"), "{v}");
        } else if paranoid <= 2 && unit.is_none() {
            // The README's least-privilege claim: the three capabilities
            // are enough for whatever root can use, at paranoid <= 2.
            assert!(works, "{v}");
        } else if !works && paranoid >= 3 {
            assert!(
                v["fix"].as_str().unwrap().contains("perf_event_paranoid"),
                "{v}"
            );
        }
    }
    let first = verdicts.iter().find(|v| v["works"] == true);
    assert_eq!(
        service["backend"],
        first.map_or(serde_json::Value::Null, |v| v["name"].clone())
    );
    assert_eq!(code, Some(if first.is_some() { 0 } else { 1 }), "{service}");

    // The child really holds only what it is given: without
    // CAP_DAC_READ_SEARCH, uid 65534 cannot read the tracepoint ids, so a
    // backend root can use fails, and the fix names that capability. Not
    // fentry, which reads no tracefs (docs/backends.md, "Kernel lockdown"):
    // where root can use it, the service can.
    let (code, report) = run(&["--service-caps", "CAP_BPF CAP_PERFMON"]);
    let service = &report["service"];
    assert_eq!(
        service["capabilities"],
        serde_json::json!(["CAP_PERFMON", "CAP_BPF"])
    );
    let fentry_works = root_works(&report, "fentry");
    if fentry_works {
        assert_eq!(service["backend"], "fentry", "{service}");
        assert_eq!(code, Some(0));
    } else {
        assert_eq!(service["backend"], serde_json::Value::Null, "{service}");
        assert_eq!(code, Some(1));
    }
    for v in service["backends"].as_array().unwrap() {
        if v["name"] == "fentry" {
            assert_eq!(v["works"], fentry_works, "{v}");
            continue;
        }
        assert_eq!(v["works"], false, "{v}");
        if root_works(&report, v["name"].as_str().unwrap()) {
            assert!(
                v["fix"]
                    .as_str()
                    .unwrap()
                    .starts_with("the service lacks CAP_DAC_READ_SEARCH"),
                "{v}"
            );
        }
    }

    // The text says the same, one line per backend.
    let out = Command::new(nwtrace_bin())
        .args(["doctor", "--as-service", "--service-caps", "CAP_BPF"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let section = text.split("result as the service").nth(1).expect(&text);
    for name in ["fentry", "tracepoint", "kprobe"] {
        let line = section
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"));
        assert!(
            line.starts_with(&format!("{name:<18}does not work: ")),
            "{line}"
        );
    }
    assert!(
        section
            .lines()
            .any(|l| l.starts_with(&format!("{:<18}NOTHING", "service would use"))),
        "{text}"
    );
}
