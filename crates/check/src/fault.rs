//! Fault injection, for the tests of what the daemon does when one of its
//! threads dies or hangs: `KEEPALIVED_RS_FAULT=<point>` makes the code at
//! `<point>` panic the first time it runs, `<point>-stall` makes it hang;
//! `KEEPALIVED_RS_FAULT_AFTER_MS` holds it back that long after the first
//! point is passed (about the daemon's start). The points are named where they are
//! called (`check-task`, `check`, `dataplane`, `vrrp`). Setting the
//! daemon's environment takes the rights of its user already, so this
//! opens nothing an attacker lacks; unset, it costs one cached read.

use std::sync::OnceLock;

/// Panics if `KEEPALIVED_RS_FAULT` names `point`; never returns if it
/// names `<point>-stall`.
pub fn at(point: &str) {
    static WANTED: OnceLock<Option<(String, std::time::Instant)>> = OnceLock::new();
    let Some((wanted, from)) = WANTED.get_or_init(|| {
        let wanted = std::env::var("KEEPALIVED_RS_FAULT").ok()?;
        let after = std::env::var("KEEPALIVED_RS_FAULT_AFTER_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0);
        Some((
            wanted,
            std::time::Instant::now() + std::time::Duration::from_millis(after),
        ))
    }) else {
        return;
    };
    if std::time::Instant::now() < *from {
        return;
    }
    assert!(
        wanted != point,
        "injected fault at {point} (KEEPALIVED_RS_FAULT)"
    );
    if wanted.strip_suffix("-stall") == Some(point) {
        eprintln!("injected stall at {point} (KEEPALIVED_RS_FAULT)");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
