//! Putting virtual addresses on interfaces and taking them off, through
//! rtnetlink (see [`crate::netlink`]).

use std::io;

use super::spec::AddressSpec;
use crate::netlink::{Address, Rtnl, ADDRESS_PROTOCOL};

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
        Ok(removed)
    }
}
