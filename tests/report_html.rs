//! The HTML report of the fixture tree: well-formed, self-contained (no
//! fetch of anything), the plots present, and every string from the data
//! escaped (the fixture has a comm of `<script>` and one with quotes).

use nwtrace_testkit::fixture;

use std::path::Path;
use std::process::Command;

fn html(tag: &str, args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-html-{tag}"));
    fixture::build(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_nwtrace"))
        .args(["report", "tree", "--format", "html"])
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];

/// A small tokenizer: every element closes in order (void elements and
/// `<x/>` aside; script and style are raw text). Returns the count of
/// each opened element.
fn check_balanced(html: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        let end = start + html[start..].find('>').expect("tag closes");
        let tag = &html[start + 1..end];
        i = end + 1;
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(
                open,
                name.trim(),
                "</{name}> closes <{open}> at byte {start}"
            );
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(!name.is_empty(), "bad tag at byte {start}: {tag:?}");
        *counts.entry(name.clone()).or_insert(0) += 1;
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let at = html[i..].find(&close).expect("raw text closes");
            i += at + close.len();
            continue;
        }
        stack.push(name);
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    counts
}

#[test]
fn well_formed_self_contained_with_plots() {
    let page = html("plots", &[]);
    let counts = check_balanced(&page);
    // ops/s, bytes/s, latency percentiles, heat map, errors, sizes.
    assert_eq!(counts.get("svg"), Some(&6), "{counts:?}");
    assert!(counts.get("table").copied().unwrap_or(0) >= 10);
    for title in [
        "Operations per second",
        "Bytes per second",
        "Latency percentiles by direction",
        "Latency heat map",
        "Errors per bucket",
    ] {
        assert!(page.contains(&format!("<title>{title}")), "{title}");
    }
    // The heat map has cells, the charts have lines.
    assert!(page.matches("<rect").count() > 20);
    assert!(page.contains("<path d=\"M"));
    // Nothing is fetched: no src/href attributes, no CSS url() or import;
    // the only URL is the SVG namespace name.
    for bad in ["src=", "href=", "url(", "@import", "<link", "<iframe"] {
        assert!(!page.contains(bad), "{bad}");
    }
    let urls: Vec<&str> = page
        .match_indices("http")
        .map(|(i, _)| &page[i..i + 26])
        .collect();
    assert!(
        urls.iter()
            .all(|u| u.starts_with("http://www.w3.org/2000/svg")),
        "{urls:?}"
    );
    // Readable without JavaScript: the tables are in the markup.
    assert!(page.contains("<td class=\"k\">nginx</td>"));
}

#[test]
fn every_data_string_is_escaped() {
    let page = html("escape", &["--top", "1000"]);
    // Our own sortable-table script is the only script element.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains("&lt;script&gt;"));
    // The comm a,"b" in text and inside a title attribute-free cell.
    assert!(page.contains("a,&#34;b&#34;") || page.contains("a,&quot;b&quot;"));
    assert!(!page.contains("<td class=\"k\">a,\"b\"</td>"));
    // The backslash escape of a non-UTF-8 comm byte is shown as text.
    assert!(page.contains("dns\\xffd"));
}
