//! Putting virtual addresses on interfaces and taking them off.
//!
//! For now through iproute2 (`ip addr add/del`), which every machine running
//! keepalived has; the netlink implementation replaces this module without
//! changing its interface (issue #6).

use std::process::Command;

use super::spec::AddressSpec;

/// The `ip` arguments after `addr add|del`.
pub fn ip_args(a: &AddressSpec) -> Vec<String> {
    let mut args = vec![
        format!("{}/{}", a.addr, a.prefix_len),
        "dev".into(),
        a.dev.clone(),
    ];
    for (k, v) in [
        ("label", &a.label),
        ("scope", &a.scope),
        ("broadcast", &a.brd),
    ] {
        if let Some(v) = v {
            args.push(k.into());
            args.push(v.clone());
        }
    }
    if a.addr.is_ipv6() {
        args.push("nodad".into());
    }
    args
}

/// Adds `a`; an address already there is fine.
pub fn add(a: &AddressSpec) -> Result<(), String> {
    run("add", a, &["File exists"])
}

/// Removes `a`; an address already gone is fine.
pub fn remove(a: &AddressSpec) -> Result<(), String> {
    run(
        "del",
        a,
        &["Address not found", "Cannot assign requested address"],
    )
}

fn run(verb: &str, a: &AddressSpec, benign: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .arg("addr")
        .arg(verb)
        .args(ip_args(a))
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || benign.iter().any(|b| stderr.contains(b)) {
        Ok(())
    } else {
        Err(format!("ip addr {verb} {}: {}", a.addr, stderr.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_arguments_carry_every_option() {
        let a = AddressSpec {
            addr: "198.51.100.250".parse().unwrap(),
            prefix_len: 24,
            dev: "eth0".into(),
            label: Some("eth0:vip".into()),
            scope: None,
            brd: Some("198.51.100.255".into()),
        };
        assert_eq!(
            ip_args(&a),
            [
                "198.51.100.250/24",
                "dev",
                "eth0",
                "label",
                "eth0:vip",
                "broadcast",
                "198.51.100.255"
            ]
        );
    }
}
