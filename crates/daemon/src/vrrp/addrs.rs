//! Putting virtual addresses, routes and rules into the kernel and taking
//! them out, through rtnetlink (see [`crate::netlink`]).

use std::io;

use kaconf::route::{RouteLine, RuleLine};

use super::spec::AddressSpec;
use crate::netlink::{Address, Route, Rtnl, Rule, ADDRESS_PROTOCOL};

fn ifindex(dev: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(dev).map_err(|e| io::Error::other(format!("{dev}: {e}")))
}

/// The kernel's view of route `r` (`dev` defaults to the instance's
/// interface when the route has no gateway, as keepalived does).
fn route(r: &RouteLine, interface: &str) -> io::Result<Route> {
    let dev = match (&r.dev, r.via.is_empty()) {
        (Some(d), _) => Some(ifindex(d)?),
        (None, true) if r.kind == kaconf::route::RouteKind::Unicast => Some(ifindex(interface)?),
        (None, _) => None,
    };
    Ok(Route {
        dst: r.dst.addr,
        prefix_len: r
            .dst
            .len
            .unwrap_or(if r.dst.addr.is_ipv4() { 32 } else { 128 }),
        src: r.src,
        via: r.via.clone(),
        ifindex: dev,
        table: r.table.unwrap_or(254),
        metric: r.metric,
        scope: r.scope,
        kind: r.kind,
        onlink: r.onlink,
    })
}

fn rule(r: &RuleLine) -> Rule {
    let cidr = |p: kaconf::value::Prefix| {
        (
            p.addr,
            p.len.unwrap_or(if p.addr.is_ipv4() { 32 } else { 128 }),
        )
    };
    Rule {
        v6: r.from.or(r.to).is_some_and(|p| p.addr.is_ipv6()),
        from: r.from.map(cidr),
        to: r.to.map(cidr),
        table: r.table.unwrap_or(254),
        priority: r.priority,
        iif: r.iif.clone(),
        oif: r.oif.clone(),
        fwmark: r.fwmark,
    }
}

/// The kernel's view of `a`, with its interface looked up now (an interface
/// may come and go while we run).
fn resolve(a: &AddressSpec) -> io::Result<Address> {
    let ifindex = nix::net::if_::if_nametoindex(a.dev.as_str()).map_err(io::Error::from)?;
    Ok(Address {
        addr: a.addr,
        prefix_len: a.prefix_len,
        ifindex,
        label: a.label.clone(),
        scope: a.scope,
        broadcast: a.brd,
    })
}

/// A VMAC interface we created, and the base interface's ARP settings to
/// put back when it goes.
#[derive(Debug)]
pub struct Vmac {
    pub name: String,
    index: u32,
    base: String,
    base_arp: Vec<(&'static str, String)>,
}

fn arp_setting(ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{ifname}/{key}")
}

/// Sets `key` of `ifname` to `value`; the old value.
fn set_arp(ifname: &str, key: &str, value: &str) -> io::Result<String> {
    let path = arp_setting(ifname, key);
    let old = std::fs::read_to_string(&path)?.trim().to_owned();
    std::fs::write(&path, value)?;
    Ok(old)
}

/// Adds and removes VIPs.
#[derive(Debug)]
pub struct Addresses {
    rtnl: Rtnl,
}

impl Addresses {
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            rtnl: Rtnl::open()?,
        })
    }

    /// Adds `a`; an address already there is fine.
    pub fn add(&mut self, a: &AddressSpec) -> Result<(), String> {
        resolve(a)
            .and_then(|k| self.rtnl.add_address(&k))
            .map_err(|e| format!("adding {}/{} on {}: {e}", a.addr, a.prefix_len, a.dev))
    }

    /// Removes `a`; an address already gone (or its interface) is fine.
    pub fn remove(&mut self, a: &AddressSpec) -> Result<(), String> {
        match resolve(a) {
            Err(_) => Ok(()),
            Ok(k) => self
                .rtnl
                .remove_address(&k)
                .map_err(|e| format!("removing {}/{} from {}: {e}", a.addr, a.prefix_len, a.dev)),
        }
    }

    /// Creates the VMAC of `v` on `base`. ARP for the VIPs must then be
    /// answered by the VMAC only (with its virtual MAC): as keepalived does,
    /// both get `arp_ignore 1` (reply only for addresses on the receiving
    /// interface), the base `arp_filter 1`, the VMAC `accept_local 1` and
    /// `rp_filter 0`. Beyond keepalived, the base also gets `arp_announce 2`:
    /// otherwise its own ARP requests (for a host it answers from the VIP)
    /// carry the VIP with the base's MAC, and hosts that hear them move the
    /// VIP to the wrong MAC. The base's settings come back when the VMAC goes.
    pub fn add_vmac(&mut self, v: &super::spec::VmacSpec, base: &str) -> io::Result<Vmac> {
        let index = self.rtnl.add_macvlan(&v.name, ifindex(base)?, v.mac)?;
        let mut base_arp = Vec::new();
        for (key, value) in [
            ("arp_ignore", "1"),
            ("arp_filter", "1"),
            ("arp_announce", "2"),
        ] {
            base_arp.push((key, set_arp(base, key, value)?));
        }
        for (key, value) in [
            ("arp_ignore", "1"),
            ("accept_local", "1"),
            ("rp_filter", "0"),
        ] {
            set_arp(&v.name, key, value)?;
        }
        Ok(Vmac {
            name: v.name.clone(),
            index,
            base: base.to_owned(),
            base_arp,
        })
    }

    /// Deletes a VMAC and puts the base interface's ARP settings back.
    pub fn remove_vmac(&mut self, v: &Vmac) -> io::Result<()> {
        for (key, value) in &v.base_arp {
            let _ = std::fs::write(arp_setting(&v.base, key), value);
        }
        self.rtnl.remove_link(v.index)
    }

    /// Installs the routes, then the rules.
    pub fn add_routes(
        &mut self,
        routes: &[RouteLine],
        rules: &[RuleLine],
        interface: &str,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for r in routes {
            if let Err(e) = route(r, interface).and_then(|k| self.rtnl.add_route(&k)) {
                errors.push(format!("adding route `{}`: {e}", r.words.join(" ")));
            }
        }
        for r in rules {
            if let Err(e) = self.rtnl.add_rule(&rule(r)) {
                errors.push(format!("adding rule `{}`: {e}", r.words.join(" ")));
            }
        }
        errors
    }

    /// Removes the rules, then the routes.
    pub fn remove_routes(
        &mut self,
        routes: &[RouteLine],
        rules: &[RuleLine],
        interface: &str,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for r in rules {
            if let Err(e) = self.rtnl.remove_rule(&rule(r)) {
                errors.push(format!("removing rule `{}`: {e}", r.words.join(" ")));
            }
        }
        for r in routes {
            match route(r, interface) {
                // Its interface is gone, and the route with it.
                Err(_) => {}
                Ok(k) => {
                    if let Err(e) = self.rtnl.remove_route(&k) {
                        errors.push(format!("removing route `{}`: {e}", r.words.join(" ")));
                    }
                }
            }
        }
        errors
    }

    /// Removes every address a previous run of ours left behind (marked with
    /// our `IFA_PROTO`), so a crash never leaves a VIP on this machine once we
    /// start again. Returns what was removed.
    pub fn remove_leftovers(&mut self) -> io::Result<Vec<String>> {
        let ours: Vec<_> = self
            .rtnl
            .addresses()?
            .into_iter()
            .filter(|p| p.protocol == Some(ADDRESS_PROTOCOL))
            .collect();
        let mut removed = Vec::new();
        for p in ours {
            let a = Address {
                addr: p.addr,
                prefix_len: p.prefix_len,
                ifindex: p.ifindex,
                label: None,
                scope: None,
                broadcast: None,
            };
            self.rtnl.remove_address(&a)?;
            removed.push(format!("{}/{}", p.addr, p.prefix_len));
        }
        let n = self.rtnl.remove_our_routes_and_rules()?;
        if n > 0 {
            removed.push(format!("{n} routes and rules"));
        }
        Ok(removed)
    }
}
