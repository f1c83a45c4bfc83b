//! The data planes in the daemon: the configuration translated into the
//! service model (`specs`), and a thread that takes the checkers' view of
//! every virtual server over a channel and hands the desired state to
//! each plane that carries some (`lb::open`, `lb::DataPlane`: nftables,
//! IPVS, the proxy — which one is the plane's business, not the
//! thread's). DR on nftables needs each real server's MAC: read from the
//! neighbour table (`/proc/net/arp`), asked for with a datagram when it is
//! missing, and a server left out until it is known. What the planes
//! carry is removed when the daemon stops.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

pub use lb::model::Carrier;
use lb::model::{Desired, Kind, Proto, ProxyOptions, Real, Service, Table};
use lb::sched::Algo;

mod neigh;
mod specs;
mod thread;

use neigh::{arp_table, device_for, parse_mac, solicit};
pub use specs::{entries, flush, service_name, specs, table, table_for_reload, timeouts, Entry};
pub use thread::{start, Msg, Thread};

/// One real server as the checkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealView {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub healthy: bool,
    /// `inhibit_on_failure`: kept at weight 0 while down.
    pub inhibit: bool,
}

/// One virtual server as the checkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub reals: Vec<RealView>,
    pub quorum_up: bool,
}

/// What a virtual server's configuration says about its data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its index in the checkers' view.
    pub index: usize,
    pub vip: IpAddr,
    /// `virtual_server fwmark N` (or a group's `fwmark N`).
    pub fwmark: Option<u32>,
    pub port: u16,
    pub proto: Proto,
    pub kind: Kind,
    pub algo: Algo,
    pub persistence: Option<(Duration, u8)>,
    pub sorry: Option<SocketAddr>,
    /// What carries it.
    pub carrier: Carrier,
    /// What only the proxy acts on.
    pub proxy: ProxyOptions,
    /// `lb_snat` (NAT on nftables).
    pub snat: bool,
    /// What only IPVS acts on (service flags, per-server methods and
    /// thresholds).
    pub ipvs: lb::model::IpvsOptions,
}

/// How often missing MACs are looked for again.
const RETRY: Duration = Duration::from_millis(250);

/// The desired state for `specs` given the checkers' `view` (and
/// the table's `lvs_flush*` and `lvs_timeouts`), and which DR servers'
/// MACs are still missing.
pub fn desired(
    specs: &[ServiceSpec],
    view: &[ServiceView],
    arp: &[(IpAddr, [u8; 6])],
    table: Table,
) -> (Desired, Vec<IpAddr>) {
    let mut missing = Vec::new();
    let mut services = Vec::new();
    for spec in specs {
        let Some(v) = view.get(spec.index) else {
            continue;
        };
        let mut reals: Vec<Real> = if !v.quorum_up && spec.sorry.is_some() {
            // Quorum lost: the sorry server alone.
            spec.sorry
                .map(|s| Real {
                    addr: s.ip(),
                    port: s.port(),
                    weight: 1,
                    mac: None,
                })
                .into_iter()
                .collect()
        } else {
            v.reals
                .iter()
                .filter(|r| r.healthy || r.inhibit)
                .map(|r| Real {
                    addr: r.addr,
                    port: r.port,
                    weight: if r.healthy { r.weight } else { 0 },
                    mac: None,
                })
                .collect()
        };
        let mut device = String::new();
        let mut device_mac = [0u8; 6];
        // DR on nftables needs each server's MAC and the interface; IPVS
        // does its own neighbour work.
        if spec.kind == Kind::Dr && spec.carrier == Carrier::Nftables {
            for r in &mut reals {
                r.mac = arp.iter().find(|(ip, _)| *ip == r.addr).map(|(_, m)| *m);
                if r.mac.is_none() {
                    missing.push(r.addr);
                }
            }
            if let Some(d) = reals.first().and_then(|r| device_for(r.addr)) {
                device_mac = std::fs::read_to_string(format!("/sys/class/net/{d}/address"))
                    .ok()
                    .and_then(|m| parse_mac(m.trim()))
                    .unwrap_or_default();
                device = d;
            } else {
                if let Some(r) = reals.first() {
                    tracing::warn!(
                        "virtual_server {} {}: no interface reaches real server {} directly (DR needs one); not carried",
                        spec.vip,
                        spec.port,
                        r.addr
                    );
                }
                continue;
            }
        }
        services.push(Service {
            vip: spec.vip,
            fwmark: spec.fwmark,
            port: spec.port,
            proto: spec.proto,
            kind: spec.kind,
            algo: spec.algo,
            device,
            device_mac,
            reals,
            persistence: spec.persistence,
            sorry: !v.quorum_up && spec.sorry.is_some(),
            snat: spec.snat,
            ipvs: spec.ipvs.clone(),
            proxy: spec.proxy.clone(),
        });
    }
    (Desired { services, table }, missing)
}

#[cfg(test)]
mod tests {
    use super::specs::prefix_of;
    use super::*;
    use lb::model::Flush;

    #[test]
    fn granularity_as_mask_or_prefix() {
        let v4 = IpAddr::from([198, 51, 100, 250]);
        assert_eq!(prefix_of("255.255.255.0", v4), Some(24));
        assert_eq!(prefix_of("16", v4), Some(16));
        assert_eq!(prefix_of("ffff:ffff::", IpAddr::from([0u16; 8])), Some(32));
        assert_eq!(prefix_of("nonsense", v4), None);
    }

    #[test]
    fn group_entries_with_ranges_and_marks() {
        let text = "virtual_server_group web {\n 198.51.100.250-252 80\n 2001:db8::a-b 443\n fwmark 7\n}\nvirtual_server group web {\n}\nvirtual_server group nope {\n}\n";
        let loaded = kaconf::parse_str(
            std::path::Path::new("t.conf"),
            text,
            &kaconf::Options::default(),
        );
        let config = loaded.config;
        let e = entries(&config, &config.virtual_servers[0].service).unwrap_or_default();
        let v4 = |b: u8| Entry::Ip(IpAddr::from([198, 51, 100, b]), 80);
        let v6 = |g: u16| Entry::Ip(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, g]), 443);
        assert_eq!(
            e,
            [
                v4(250),
                v4(251),
                v4(252),
                v6(0xa),
                v6(0xb),
                Entry::Fwmark(7)
            ]
        );
        assert!(entries(&config, &config.virtual_servers[1].service).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:5e:00:01:33"),
            Some([2, 0, 0x5e, 0, 1, 0x33])
        );
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00"), None);
    }

    fn spec(kind: Kind) -> ServiceSpec {
        ServiceSpec {
            index: 0,
            vip: IpAddr::from([198, 51, 100, 250]),
            fwmark: None,
            port: 80,
            proto: Proto::Tcp,
            kind,
            algo: Algo::Rr,
            persistence: None,
            sorry: Some(SocketAddr::from(([198, 51, 100, 60], 80))),
            carrier: Carrier::Nftables,
            snat: false,
            proxy: ProxyOptions::default(),
            ipvs: lb::model::IpvsOptions::default(),
        }
    }

    fn view(healthy: [bool; 2], inhibit: bool, quorum_up: bool) -> Vec<ServiceView> {
        vec![ServiceView {
            reals: healthy
                .iter()
                .enumerate()
                .map(|(i, &h)| RealView {
                    addr: IpAddr::from([198, 51, 100, 50 + u8::try_from(i).unwrap_or(0)]),
                    port: 80,
                    weight: 3,
                    healthy: h,
                    inhibit,
                })
                .collect(),
            quorum_up,
        }]
    }

    #[test]
    fn healthy_servers_inhibited_ones_at_0_and_the_sorry_server() {
        let (d, _) = desired(
            &[spec(Kind::Nat)],
            &view([true, false], false, true),
            &[],
            Table::default(),
        );
        assert_eq!(d.services[0].reals.len(), 1);
        let (d, _) = desired(
            &[spec(Kind::Nat)],
            &view([true, false], true, true),
            &[],
            Table::default(),
        );
        assert_eq!(
            d.services[0]
                .reals
                .iter()
                .map(|r| r.weight)
                .collect::<Vec<_>>(),
            [3, 0]
        );
        let (d, _) = desired(
            &[spec(Kind::Nat)],
            &view([false, false], false, false),
            &[],
            Table::default(),
        );
        assert!(d.services[0].sorry);
        assert_eq!(
            d.services[0].reals[0].addr,
            IpAddr::from([198, 51, 100, 60])
        );
    }

    /// `lvs_timeouts` as keepalived reads it: any order, 0 is "not set",
    /// a bad value or word is left out and the rest kept.
    #[test]
    fn lvs_timeouts_as_keepalived_reads_them() {
        let of = |line: &str| {
            let c = kaconf::parse_str(
                std::path::Path::new("t.conf"),
                &format!("global_defs {{\n {line}\n}}\n"),
                &kaconf::Options::default(),
            )
            .config;
            super::timeouts(&c)
        };
        let t = |tcp, tcp_fin, udp| lb::model::Timeouts { tcp, tcp_fin, udp };
        assert_eq!(of(""), t(None, None, None));
        assert_eq!(
            of("lvs_timeouts udp 301 tcp 7200 tcpfin 121"),
            t(Some(7200), Some(121), Some(301))
        );
        assert_eq!(of("lvs_timeouts tcp 0 udp 5"), t(None, None, Some(5)));
        assert_eq!(
            of("lvs_timeouts tcp 99999999 bogus udp 5"),
            t(None, None, Some(5))
        );
        assert_eq!(of("lvs_timeouts udp 5 tcp"), t(None, None, Some(5)));
        assert!(table_for_reload(&kaconf::Config::default())
            .timeouts
            .is_empty());
    }

    #[test]
    fn lvs_flush_keywords() {
        let flush_of = |text: &str| {
            let c = kaconf::parse_str(
                std::path::Path::new("t.conf"),
                text,
                &kaconf::Options::default(),
            )
            .config;
            super::flush(&c)
        };
        assert_eq!(flush_of(""), Flush::default());
        assert_eq!(
            flush_of("global_defs {\n lvs_flush\n lvs_flush_on_stop\n}\n"),
            Flush {
                at_start: true,
                all_on_stop: true
            }
        );
        assert!(!flush_of("global_defs {\n lvs_flush_on_stop VS\n}\n").all_on_stop);
        let c = kaconf::parse_str(
            std::path::Path::new("t.conf"),
            "global_defs {\n lvs_flush\n lvs_flush_on_stop\n}\n",
            &kaconf::Options::default(),
        )
        .config;
        assert_eq!(
            table_for_reload(&c).flush,
            Flush {
                at_start: false,
                all_on_stop: true
            }
        );
    }
}
