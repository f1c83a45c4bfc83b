//! keepalived's own sample configurations load without errors, and each one

#![allow(clippy::unwrap_used)]
//! written back out by `to_text` reads back to the same model.

use std::path::{Path, PathBuf};

fn samples() -> Option<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/keepalived-samples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is missing: CI must have shared/ beside the checkout",
            dir.display()
        );
        netlab::skipped(
            "keepalived samples",
            &format!(
                "{} not found (the sample configs beside the checkout)",
                dir.display()
            ),
        );
        return None;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf"))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the sample corpus, found {}",
        files.len()
    );
    Some(files)
}

fn opts() -> kaconf::Options {
    kaconf::Options {
        config_id: None,
        check_interfaces: false,
    }
}

/// Samples with lines keepalived 2.4.3 itself rejects (`keepalived -t`
/// says "Invalid rule to address 192.168.100./24"), and what we must say.
const KNOWN_BAD: &[(&str, &[&str])] = &[(
    "keepalived.conf.vrrp.rules",
    &[
        "rules:11:8: error: bad prefix: `192.168.100.`",
        "rules:26:12: error: bad prefix",
    ],
)];

#[test]
fn every_sample_loads_without_errors() {
    let Some(files) = samples() else { return };
    for file in &files {
        let loaded = kaconf::load(file, &opts());
        let name = file.file_name().unwrap().to_string_lossy();
        if let Some((_, expected)) = KNOWN_BAD.iter().find(|(n, _)| *n == name) {
            let errors = loaded.rendered().join("\n");
            for e in *expected {
                assert!(
                    errors.contains(e),
                    "{name}: expected an error about {e}:\n{errors}"
                );
            }
            continue;
        }
        assert!(
            !loaded.has_errors(),
            "{}:\n{}",
            file.display(),
            loaded.rendered().join("\n")
        );
    }
}

#[test]
fn every_sample_round_trips_through_to_text() {
    let Some(files) = samples() else { return };
    for file in &files {
        let first = kaconf::load(file, &opts());
        let text = kaconf::to_text(&first.config);
        let second = kaconf::parse_str(Path::new("emitted.conf"), &text, &opts());
        assert!(
            !second.has_errors(),
            "{}: re-read errors:\n{}\n{text}",
            file.display(),
            second.rendered().join("\n")
        );
        assert_eq!(
            first.config,
            second.config,
            "{} did not round-trip:\n{text}",
            file.display()
        );
    }
}

#[test]
fn samples_fill_the_typed_model() {
    let Some(files) = samples() else { return };
    let sample = files
        .iter()
        .find(|f| f.ends_with("keepalived.conf.sample"))
        .expect("the main sample");
    let loaded = kaconf::load(sample, &opts());
    let c = &loaded.config;
    let g = c.globals();
    assert_eq!(g.router_id.as_deref(), Some("LVS_DEVEL"));
    let vi = &c.instances[0];
    assert_eq!(vi.name, "VI_1");
    assert_eq!(
        vi.body.virtual_router_id.map(kaconf::value::Int::get),
        Some(50)
    );
    assert_eq!(vi.body.priority.as_ref().map(|p| p.value.get()), Some(100));
    assert!(vi.body.vips().count() >= 1);
    assert!(!c.virtual_servers.is_empty());
    assert!(c
        .virtual_servers
        .iter()
        .any(|vs| !vs.body.real_servers.is_empty()));
}
