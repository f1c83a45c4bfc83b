//! The daemon's own conversion of a configuration into what runs — VRRP
//! instance specs, checker specs, data-plane entries — run once at load so
//! that whatever would keep a part from running is a `file:line` error
//! before anything starts. `-t`, the daemon's start and every reload load
//! through [`load`], so a configuration that passes `-t` converts at start
//! and at reload too.

use std::net::IpAddr;

use kaconf::diag::Diagnostics;
use kaconf::{Config, Diagnostic};
use vrrp::Family;

use crate::vrrp::spec::Interfaces;

/// Reads `path` as the daemon does and adds what the conversion finds.
pub fn load(path: &std::path::Path, config_id: Option<String>) -> kaconf::Loaded {
    let opts = kaconf::Options {
        config_id: config_id.or_else(kaconf::default_config_id),
        check_interfaces: true,
    };
    let mut loaded = kaconf::load(path, &opts);
    let found = check(
        &loaded.config,
        &Lenient(&crate::vrrp::net::SystemInterfaces),
    );
    loaded.diagnostics.extend(found);
    loaded
}

/// Every problem in converting `config` into what runs, each at the line of
/// the block it is in. `ifs` answers for the machine's addresses.
pub fn check(config: &Config, ifs: &dyn Interfaces) -> Vec<Diagnostic> {
    let mut found = Diagnostics::default();
    for inst in &config.instances {
        if let Err(e) = crate::vrrp::spec::instance(config, inst, ifs) {
            found.error(
                inst.origin.0,
                format!("vrrp_instance {}: {}", inst.name, e.reason),
            );
        }
    }
    let _ = crate::checks::Plan::build(config, &mut found);
    for vs in &config.virtual_servers {
        if let Err(e) = crate::dataplane::entries(config, &vs.service) {
            found.error(
                vs.origin.0,
                format!(
                    "virtual_server {}: {e}",
                    crate::dataplane::service_name(&vs.service)
                ),
            );
        }
    }
    found.into_vec()
}

/// The machine's interfaces, except that one this machine lacks (already
/// a warning of its own) answers with a placeholder address, so that the
/// rest of its instance is still checked.
#[derive(Debug)]
pub struct Lenient<'a, I: Interfaces>(pub &'a I);

impl<I: Interfaces> Interfaces for Lenient<'_, I> {
    fn primary(&self, ifname: &str, family: Family) -> Option<IpAddr> {
        self.0.primary(ifname, family).or_else(|| {
            let exists = nix::net::if_::if_nametoindex(ifname).is_ok();
            (!exists).then(|| match family {
                Family::V4 => IpAddr::from([198, 51, 100, 1]),
                Family::V6 => IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
            })
        })
    }
}
