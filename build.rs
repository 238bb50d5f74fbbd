//! Compiles the BPF object with clang and generates its libbpf-rs skeleton.

use std::env;
use std::path::PathBuf;

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

    println!("cargo:rerun-if-changed={BPF_SOURCE}");
    println!("cargo:rerun-if-changed=src/bpf/nwtrace.h");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
}
