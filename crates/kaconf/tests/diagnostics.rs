//! Golden diagnostics: each config in `tests/broken/` shows one kind of mistake,
//! and its diagnostics (with file:line:col) are compared with a snapshot in
//! `tests/snapshots/`. Files named `e_*` must fail `-t`; `w_*` only warn.

#![allow(clippy::unwrap_used)]

use std::path::Path;

fn opts() -> kaconf::Options {
    kaconf::Options {
        config_id: None,
        check_interfaces: false,
    }
}

#[test]
fn broken_configs_say_what_and_where() {
    let mut files: Vec<_> = std::fs::read_dir("tests/broken")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let loaded = kaconf::load(&file, &opts());
        let rendered = loaded.rendered();
        assert!(!rendered.is_empty(), "{name}: no diagnostics at all");
        for line in &rendered {
            // FILE:LINE:COL: with a real line and column.
            let mut parts = line.splitn(4, ':');
            let (path, l, c) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            assert!(path.starts_with("tests/broken/"), "{line}");
            assert!(
                l.parse::<u32>().unwrap() >= 1 && c.parse::<u32>().unwrap() >= 1,
                "{line}"
            );
        }
        if name.starts_with("e_") {
            assert!(
                loaded.has_errors(),
                "{name} should have errors:\n{}",
                rendered.join("\n")
            );
        } else {
            assert!(
                !loaded.has_errors(),
                "{name} should only warn:\n{}",
                rendered.join("\n")
            );
        }
        insta::assert_snapshot!(name, rendered.join("\n"));
    }
}

#[test]
fn an_error_in_an_included_file_names_that_file() {
    let loaded = kaconf::load(Path::new("tests/broken/e_include_loop.conf"), &opts());
    let lines = loaded.rendered();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("tests/broken/inc/loop_b.conf:1:1: error: include loop")),
        "{lines:?}"
    );
    // The included file's own content was read once.
    assert_eq!(loaded.config.globals().router_id.as_deref(), Some("LOOP"));
}
