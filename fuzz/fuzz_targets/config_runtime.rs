//! Config text → the daemon's own conversion into what runs, and a reload
//! from one configuration to another.
//!
//! The input is one configuration, or two separated by a line `====`
//! (the second is a reload). For each:
//! - reading, `-t`'s extra checks (`keepalived_rs::preflight::check`) and
//!   every conversion the daemon makes at start — VRRP instance specs,
//!   checker specs (`checks::Plan::build`), data-plane specs and the
//!   checkers' view — never panic;
//! - a configuration that passes `-t` (no error from either) converts: the
//!   VRRP specs build and the checkers find no error (what `-t` checks and
//!   what the daemon runs are the same functions, so this guards against
//!   a conversion that stops going through them);
//! - a reload: the new checker plan adopts the old one's state, and each
//!   VRRP instance of the old configuration running as a router takes the
//!   new one of the same name in place or refuses it, without panicking.

#![no_main]

use std::net::IpAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Every interface has an address: the machine is not what is fuzzed.
struct AnyInterface;

impl keepalived_rs::vrrp::spec::Interfaces for AnyInterface {
    fn primary(&self, _ifname: &str, family: vrrp::Family) -> Option<IpAddr> {
        Some(match family {
            vrrp::Family::V4 => IpAddr::from([198, 51, 100, 22]),
            vrrp::Family::V6 => IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 0x22]),
        })
    }
}

struct Converted {
    plan: keepalived_rs::checks::Plan,
    instances: Vec<keepalived_rs::vrrp::spec::InstanceSpec>,
}

fn convert(text: &str, name: &str) -> Converted {
    let opts = kaconf::Options::default();
    let loaded = kaconf::parse_str(Path::new(name), text, &opts);
    let found = keepalived_rs::preflight::check(&loaded.config, &AnyInterface);
    let passes = !loaded.has_errors()
        && found.iter().all(|d| d.severity != kaconf::Severity::Error);
    let mut problems = kaconf::diag::Diagnostics::default();
    let plan = keepalived_rs::checks::Plan::build(&loaded.config, &mut problems);
    let _ = plan.view();
    let _ = keepalived_rs::dataplane::specs(&loaded.config);
    let instances = keepalived_rs::vrrp::spec::instances(&loaded.config, &AnyInterface);
    if passes {
        assert!(!problems.has_errors(), "-t passed, the checkers did not: {:?}", problems.as_slice());
        assert!(instances.is_ok(), "-t passed, VRRP did not: {instances:?}");
    }
    Converted {
        plan,
        instances: instances.unwrap_or_default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, second) = match text.split_once("\n====\n") {
        Some((a, b)) => (a, Some(b)),
        None => (&*text, None),
    };
    let old = convert(first, "old.conf");
    let Some(second) = second else {
        return;
    };
    let mut new = convert(second, "new.conf");
    let _ = new.plan.adopt(&old.plan);
    let now = vrrp::Instant::ZERO;
    let mut out = Vec::new();
    for spec in &old.instances {
        let mut router = vrrp::Router::new(spec.engine.clone());
        router.handle_into(now, vrrp::Input::Start, &mut out);
        if let Some(next) = new.instances.iter().find(|n| n.name == spec.name) {
            let _ = router.reconfigure(now, next.engine.clone(), &mut out);
        }
        out.clear();
    }
});
