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

/// `lb_kind` / `lvs_method` with keepalived's tunnel options: read,
/// written back, and refused as keepalived refuses them.
#[test]
fn tunnel_options_on_lb_kind() {
    use kaconf::model::{LbKind, TunnelCsum, TunnelType};
    let read = |line: &str| {
        let text = format!(
            "virtual_server 198.51.100.250 80 {{\n protocol TCP\n {line}\n real_server 198.51.100.50 80 {{\n lvs_method TUN type gre csum\n }}\n}}\n"
        );
        kaconf::parse_str(Path::new("t.conf"), &text, &opts())
    };
    let ok = read("lb_kind TUN type gue port 6080 remcsum");
    assert!(!ok.has_errors(), "{:?}", ok.rendered());
    let vs = &ok.config.virtual_servers[0].body;
    let f = vs.lb_kind.unwrap();
    assert_eq!(
        (f.kind, f.tunnel, f.tunnel_port, f.csum),
        (LbKind::Tun, TunnelType::Gue, 6080, TunnelCsum::RemCsum)
    );
    let r = vs.real_servers[0].body.lvs_method.unwrap();
    assert_eq!((r.tunnel, r.csum), (TunnelType::Gre, TunnelCsum::Csum));
    // Written back, it reads the same.
    let again = kaconf::parse_str(Path::new("t.conf"), &kaconf::to_text(&ok.config), &opts());
    assert_eq!(again.config.virtual_servers[0].body.lb_kind, Some(f));
    for (bad, why) in [
        ("lb_kind TUN type gue", "gue tunnels require `port`"),
        ("lb_kind TUN port 6080", "gue tunnels require `port`"),
        ("lb_kind TUN type ipip csum", "ipip tunnels do not support"),
        (
            "lb_kind TUN type gre remcsum",
            "gre tunnels do not support remcsum",
        ),
        ("lb_kind TUN type vxlan", "`type` needs ipip, gue or gre"),
        ("lb_kind TUN type gue port 0", "`port` needs"),
        ("lb_kind TUN fast", "invalid tunnel option `fast`"),
    ] {
        let loaded = read(bad);
        let text = loaded.rendered().join("\n");
        assert!(loaded.has_errors() && text.contains(why), "{bad}: {text}");
        assert!(text.contains("t.conf:3:"), "{bad}: no file:line in {text}");
    }
    let warned = read("lb_kind DR type gre");
    assert!(!warned.has_errors());
    assert!(warned
        .rendered()
        .join("\n")
        .contains("tunnel options apply to TUN only"));
}
