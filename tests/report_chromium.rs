//! The HTML report rendered by headless Chromium: the page must paint
//! plots, not a blank or broken page. A separate test target, so that CI
//! shows this step on its own.
//!
//! Needs `chromium` (Debian package). Skips without it, except under
//! CI=true. With NWTRACE_SCREENSHOT=PATH it also copies the PNG there
//! (scripts/report-screenshot uses that for docs/report-example.png).

use nwtrace_testkit::fixture;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

#[test]
fn chromium_paints_the_report() {
    let Some(browser) = chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed, and CI=true forbids skipping");
        }
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium)");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-chromium");
    fixture::build(&dir);
    let status = Command::new(env!("CARGO_BIN_EXE_nwtrace"))
        .args(["report", "tree", "-o", "report.html"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let png_path = dir.join("report.png");
    // NWTRACE_SCREENSHOT_HEIGHT: a taller page for the docs image.
    let height: u32 = std::env::var("NWTRACE_SCREENSHOT_HEIGHT")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(2000);
    let profile = dir.join("chromium-profile");
    let _ = std::fs::remove_dir_all(&profile);
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("--window-size=1280,{height}"))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .expect("running chromium");
    assert!(
        png_path.exists(),
        "no screenshot; chromium said: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, height));
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = HashSet::new();
    let mut non_white = 0usize;
    for px in pixels.chunks(channels) {
        let rgb = (px[0], px[1], px[2]);
        colours.insert(rgb);
        if rgb != (255, 255, 255) {
            non_white += 1;
        }
    }
    let total = (info.width * info.height) as usize;
    // Text, tables and the plots' colours: a blank or error page has a
    // handful of colours and almost no ink.
    assert!(colours.len() > 50, "only {} colours", colours.len());
    assert!(
        non_white * 100 / total >= 3,
        "only {non_white} of {total} pixels drawn"
    );
    // The plot colours are there (series blue and red).
    assert!(
        colours.contains(&(0x1f, 0x77, 0xb4)),
        "no blue series pixel"
    );
    assert!(colours.contains(&(0xd6, 0x27, 0x28)), "no red series pixel");

    if let Some(dest) = std::env::var_os("NWTRACE_SCREENSHOT") {
        std::fs::copy(&png_path, dest).unwrap();
    }
}
