//! Compiles the BPF object with clang and generates its libbpf-rs skeleton.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const BPF_SOURCE: &str = "src/bpf/nwtrace.bpf.c";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("nwtrace: no BPF support written for target arch {other}"),
        Err(e) => panic!("nwtrace: CARGO_CFG_TARGET_ARCH: {e}"),
    };

    SkeletonBuilder::new()
        .source(BPF_SOURCE)
        .clang_args([
            format!("-D__TARGET_ARCH_{arch}"),
            "-Wall".to_string(),
            "-Werror".to_string(),
            "-Isrc/bpf".to_string(),
        ])
        .build_and_generate(out_dir.join("nwtrace.skel.rs"))
        .expect("building the BPF object (is clang installed?)");

    git_commit();

    // The directory: nwtrace.bpf.c includes its parts (src/bpf/*.bpf.h).
    println!("cargo:rerun-if-changed=src/bpf");
}

/// Runs git in the source tree; None outside a checkout or without git.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// `NWTRACE_GIT_COMMIT` for `nwtrace --version`: the commit this binary
/// was built from, `unknown` outside a git checkout (a source tarball can
/// set NWTRACE_GIT_COMMIT itself). Rebuilt when HEAD moves.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=NWTRACE_GIT_COMMIT");
    let commit = env::var("NWTRACE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NWTRACE_GIT_COMMIT={commit}");
    // HEAD names the branch; the branch's ref (loose or packed) names the
    // commit. Watching all three covers commits, checkouts and gc.
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    // A missing path would make cargo rebuild every time.
    let existing = watch.into_iter().flatten();
    for path in existing.filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}
