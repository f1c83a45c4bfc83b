//! Prometheus metrics (`metrics_listen ADDR:PORT`, our extension): the
//! daemon's status as OpenMetrics text at `GET /metrics`, built with the
//! `prometheus-client` crate from the same snapshot `keepalived-rs status`
//! shows. The names follow what keepalived users scrape from
//! keepalived-exporter (`keepalived_vrrp_state`, `keepalived_…_total`
//! counters per instance); the checkers' and data planes' are
//! `keepalived_check_*` and `keepalived_lvs_*`. `tests/metrics_names.txt`
//! pins them.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::control::{Shared, Status};
use crate::deadline::{self, Bounded};

type Labels = Vec<(String, String)>;

/// keepalived's numbers for its states (as keepalived-exporter reports
/// them): INIT 0, BACKUP 1, MASTER 2, FAULT 3; STOP 4 is ours.
pub fn state_code(state: vrrp::StateName) -> i64 {
    match state {
        vrrp::StateName::Init => 0,
        vrrp::StateName::Backup => 1,
        vrrp::StateName::Master => 2,
        vrrp::StateName::Fault => 3,
        vrrp::StateName::Stop => 4,
    }
}

/// One family per metric, registered under its name and help.
struct Families {
    registry: Registry,
}

impl Families {
    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.registry.register(name, help, f.clone());
        f
    }

    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let f = Family::<Labels, Counter>::default();
        self.registry.register(name, help, f.clone());
        f
    }
}

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The metrics of `s`, as OpenMetrics text.
#[allow(clippy::too_many_lines)] // one line per metric, in one place
pub fn render(s: &Status) -> String {
    let mut f = Families {
        registry: Registry::default(),
    };
    let up = Gauge::<i64>::default();
    up.set(1);
    f.registry
        .register("keepalived_up", "1 while keepalived-rs runs", up);
    let state = f.gauge(
        "keepalived_vrrp_state",
        "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT, 4 STOP",
    );
    let prio = f.gauge("keepalived_vrrp_priority", "Configured priority");
    let eff = f.gauge(
        "keepalived_vrrp_effective_priority",
        "Priority the adverts carry (with tracking)",
    );
    let rx = f.counter(
        "keepalived_vrrp_advertisements_received",
        "Valid adverts received",
    );
    let tx = f.counter("keepalived_vrrp_advertisements_sent", "Adverts sent");
    let became = f.counter("keepalived_vrrp_become_master", "Times it became MASTER");
    let zero = f.counter(
        "keepalived_vrrp_priority_zero_received",
        "Priority-0 adverts received (a master leaving)",
    );
    let invalid = f.counter(
        "keepalived_vrrp_invalid_packets",
        "Invalid adverts dropped, by reason",
    );
    let suspected = f.gauge(
        "keepalived_vrrp_split_brain_suspected",
        "1 while the split-brain guard suspects a split brain",
    );
    let episodes = f.counter(
        "keepalived_vrrp_dual_master_episodes",
        "Dual-master episodes seen by this master",
    );
    let guard = f.counter(
        "keepalived_vrrp_guard_faults",
        "Times the split-brain guard kept or took the node out of MASTER",
    );
    for i in &s.vrrp {
        let l = labels(&[
            ("iname", i.name.clone()),
            ("intf", i.interface.clone()),
            ("vrid", i.vrid.to_string()),
        ]);
        state.get_or_create(&l).set(state_code(i.state));
        prio.get_or_create(&l).set(i64::from(i.priority));
        eff.get_or_create(&l).set(i64::from(i.effective_priority));
        rx.get_or_create(&l).inc_by(i.adverts_received);
        tx.get_or_create(&l).inc_by(i.adverts_sent);
        became.get_or_create(&l).inc_by(i.became_master);
        zero.get_or_create(&l).inc_by(i.priority_zero_received);
        suspected
            .get_or_create(&l)
            .set(i64::from(i.split_brain_suspected));
        episodes.get_or_create(&l).inc_by(i.dual_master_episodes);
        guard.get_or_create(&l).inc_by(i.guard_faults);
        for (reason, n) in &i.dropped {
            let mut lr = l.clone();
            lr.push(("reason".into(), reason.clone()));
            invalid.get_or_create(&lr).inc_by(*n);
        }
    }
    let rs_up = f.gauge(
        "keepalived_check_real_server_up",
        "1 while the real server's checkers call it healthy",
    );
    let rs_down = f.gauge(
        "keepalived_check_real_server_down_reason",
        "1 while the real server is down, labelled with why (its first failing checker's failure kind)",
    );
    let rs_weight = f.gauge("keepalived_lvs_rs_weight", "Real server weight now");
    let quorum = f.gauge(
        "keepalived_lvs_vs_quorum_up",
        "1 while the virtual server has its quorum",
    );
    let sorry = f.gauge(
        "keepalived_lvs_vs_sorry_server_active",
        "1 while the sorry server takes the traffic",
    );
    for v in &s.virtual_servers {
        let vs = format!("{}:{}", v.address, v.port);
        let lv = labels(&[("vs", vs.clone()), ("protocol", v.protocol.clone())]);
        quorum.get_or_create(&lv).set(i64::from(v.quorum_up));
        sorry
            .get_or_create(&lv)
            .set(i64::from(v.sorry_server_active));
        for r in &v.real_servers {
            let mut l = lv.clone();
            l.push(("rs".into(), format!("{}:{}", r.address, r.port)));
            rs_up.get_or_create(&l).set(i64::from(r.healthy));
            if let (false, Some(kind)) = (r.healthy, r.reason_kind) {
                let mut lr = l.clone();
                lr.push(("reason".into(), kind.to_owned()));
                rs_down.get_or_create(&lr).set(1);
            }
            rs_weight.get_or_create(&l).set(i64::from(r.weight));
        }
    }
    let active = f.gauge(
        "keepalived_lvs_rs_active_conn",
        "Connections the proxy has open to the real server",
    );
    let bytes = f.counter(
        "keepalived_lvs_rs_bytes",
        "Bytes the proxy relayed to and from the real server",
    );
    for c in &s.proxy {
        let l = labels(&[
            ("vs", c.virtual_server.clone()),
            ("rs", c.real_server.clone()),
        ]);
        active
            .get_or_create(&l)
            .set(i64::from(c.active_connections));
        bytes.get_or_create(&l).inc_by(c.bytes);
    }
    proxy_limits(&mut f, s.proxy_limits.as_ref());
    sync_daemon(&mut f, s.sync.as_ref());
    conntrack_sync(&mut f, s.conntrack_sync.as_ref());
    flow_sync(&mut f, s.flow_sync.as_ref());
    bfd(&mut f, &s.bfd);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &f.registry);
    out
}

/// IPVS's sync daemon: which roles run, and how often they changed.
fn sync_daemon(f: &mut Families, y: Option<&crate::control::SyncStatus>) {
    let running = f.gauge(
        "keepalived_lvs_sync_daemon_running",
        "1 while IPVS's sync daemon of this role (master, backup) runs for us",
    );
    let changes = f.counter(
        "keepalived_lvs_sync_daemon_changes",
        "IPVS sync daemon roles started or stopped",
    );
    let Some(y) = y else {
        return;
    };
    let sid = y.sync_id.to_string();
    for role in ["master", "backup"] {
        let l = labels(&[
            ("role", role.to_owned()),
            ("intf", y.interface.clone()),
            ("syncid", sid.clone()),
        ]);
        running
            .get_or_create(&l)
            .set(i64::from(y.roles.iter().any(|r| r == role)));
    }
    changes
        .get_or_create(&labels(&[("intf", y.interface.clone()), ("syncid", sid)]))
        .inc_by(y.changes);
}

/// conntrackd (`conntrack_sync`): whether it runs, its commits on
/// takeover and how long the last one held the VIPs.
fn conntrack_sync(f: &mut Families, c: Option<&crate::control::ConntrackStatus>) {
    let running = f.gauge(
        "keepalived_conntrack_sync_running",
        "1 while conntrackd runs for us",
    );
    let commits = f.counter(
        "keepalived_conntrack_sync_commits",
        "Takeovers: the peer's connections committed into the kernel",
    );
    let last = f.gauge(
        "keepalived_conntrack_sync_last_commit_milliseconds",
        "How long the last commit held the VIPs",
    );
    let entries = f.gauge(
        "keepalived_conntrack_sync_entries",
        "conntrackd's caches: this node's connections (local) and the peer's (peer)",
    );
    let packets = f.counter(
        "keepalived_conntrack_sync_packets",
        "conntrackd's sync datagrams, sent and received",
    );
    let Some(c) = c else {
        return;
    };
    let l = labels(&[("iname", c.instance.clone()), ("peer", c.peer.clone())]);
    let with = |k: &str, v: &str| {
        labels(&[
            ("iname", c.instance.clone()),
            ("peer", c.peer.clone()),
            (k, v.to_owned()),
        ])
    };
    for (side, n) in [("local", c.local_entries), ("peer", c.peer_entries)] {
        entries
            .get_or_create(&with("cache", side))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    for (dir, n) in [("sent", c.packets_sent), ("received", c.packets_received)] {
        packets.get_or_create(&with("dir", dir)).inc_by(n);
    }
    running.get_or_create(&l).set(i64::from(c.running));
    commits.get_or_create(&l).inc_by(c.commits);
    last.get_or_create(&l).set(
        c.last_commit_ms
            .map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
    );
}

/// The nftables DR flow sync: entries sent, received and written, and
/// which way it runs.
fn flow_sync(f: &mut Families, y: Option<&crate::control::FlowSyncStatus>) {
    let sending = f.gauge(
        "keepalived_dr_flow_sync_sending",
        "1 while this director sends its DR flows (its instance is MASTER)",
    );
    let entries = f.counter(
        "keepalived_dr_flow_sync_entries",
        "DR flow entries, by what happened to them (sent, received, written, refused, dropped)",
    );
    let Some(y) = y else {
        return;
    };
    let base = [
        ("intf", y.interface.clone()),
        ("syncid", y.sync_id.to_string()),
    ];
    sending
        .get_or_create(&labels(&base))
        .set(i64::from(y.sending));
    for (what, n) in [
        ("sent", y.sent),
        ("received", y.received),
        ("written", y.written),
        ("refused", y.refused),
        ("dropped", y.dropped),
    ] {
        let mut l = base.to_vec();
        l.push(("what", what.to_owned()));
        entries.get_or_create(&labels(&l)).inc_by(n);
    }
}

/// The BFD sessions: up or not, their changes, packets, detection time.
fn bfd(f: &mut Families, sessions: &[crate::control::BfdStatus]) {
    let up = f.gauge("keepalived_bfd_session_up", "1 while the BFD session is Up");
    let changes = f.counter(
        "keepalived_bfd_session_changes",
        "Times the BFD session came Up (to=up) or went Down from Up (to=down)",
    );
    let packets = f.counter(
        "keepalived_bfd_packets",
        "BFD control packets sent, received, and refused (wrong discriminator, TTL, authentication)",
    );
    let detect = f.gauge(
        "keepalived_bfd_detection_time_microseconds",
        "How long without a packet before the peer is declared Down (0 before it has sent)",
    );
    for b in sessions {
        let base = [("name", b.name.clone()), ("neighbor", b.neighbor.clone())];
        up.get_or_create(&labels(&base))
            .set(i64::from(b.state == "Up"));
        detect.get_or_create(&labels(&base)).set(
            b.detection_time_us
                .map_or(0, |d| i64::try_from(d).unwrap_or(i64::MAX)),
        );
        for (to, n) in [("up", b.ups), ("down", b.downs)] {
            let mut l = base.to_vec();
            l.push(("to", to.to_owned()));
            changes.get_or_create(&labels(&l)).inc_by(n);
        }
        for (dir, n) in [
            ("sent", b.sent),
            ("received", b.received),
            ("refused", b.refused),
        ] {
            let mut l = base.to_vec();
            l.push(("dir", dir.to_owned()));
            packets.get_or_create(&labels(&l)).inc_by(n);
        }
    }
}

/// The proxy's caps: connections and refusals per virtual server, and
/// the daemon's descriptors against its limit.
fn proxy_limits(f: &mut Families, p: Option<&crate::control::ProxyLimits>) {
    let conns = f.gauge(
        "keepalived_proxy_vs_connections",
        "Connections (UDP: sessions) the proxy relays to the virtual server now",
    );
    let refused = f.counter(
        "keepalived_proxy_vs_refused",
        "New connections the proxy refused, by reason (max_conns, descriptors)",
    );
    let idle = f.counter(
        "keepalived_proxy_vs_idle_timeouts",
        "Connections the proxy ended after proxy_timeout without traffic",
    );
    let open = f.gauge(
        "keepalived_process_open_fds",
        "File descriptors the daemon has open",
    );
    let max = f.gauge("keepalived_process_max_fds", "The daemon's open-file limit");
    let Some(p) = p else {
        return;
    };
    open.get_or_create(&Vec::new())
        .set(i64::try_from(p.fds_open).unwrap_or(i64::MAX));
    max.get_or_create(&Vec::new())
        .set(i64::try_from(p.fd_limit).unwrap_or(i64::MAX));
    for v in &p.virtual_servers {
        let l = labels(&[
            ("vs", v.virtual_server.clone()),
            ("protocol", v.protocol.clone()),
        ]);
        conns.get_or_create(&l).set(i64::from(v.connections));
        idle.get_or_create(&l).inc_by(v.idle_timeouts);
        for (reason, n) in &v.refused {
            let mut lr = l.clone();
            lr.push(("reason".into(), reason.clone()));
            refused.get_or_create(&lr).inc_by(*n);
        }
    }
}

/// Serves `GET /metrics` on `addr` on a thread of its own; returns the
/// address it listens on (port 0 picks one).
pub fn serve(addr: SocketAddr, status: Shared) -> std::io::Result<SocketAddr> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(64)?;
    let listener: TcpListener = s.into();
    let addr = listener.local_addr()?;
    tracing::info!("metrics: serving http://{addr}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(&conn, &status) {
                    tracing::debug!("metrics: a request failed: {e}");
                }
            }
        })?;
    Ok(addr)
}

fn answer(conn: &TcpStream, status: &Shared) -> std::io::Result<()> {
    // One deadline for the whole request, reading its head and writing the
    // answer, however slowly it trickles: one slow client does not hold
    // the (single) serving thread long.
    let until = std::time::Instant::now() + deadline::REQUEST;
    let mut reader = BufReader::new(std::io::Read::take(Bounded::new(conn, until), 8192));
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The rest of the head, unread otherwise.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (code, kind, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                render(&snapshot),
            )
        } else {
            ("404 Not Found", "text/plain", "try /metrics\n".to_owned())
        };
    write!(
        Bounded::new(conn, until),
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{InstanceStatus, ProxyCounter, RealServerStatus, VirtualServerStatus};

    #[allow(clippy::too_many_lines)]
    fn sample() -> Status {
        Status {
            vrrp: vec![InstanceStatus {
                name: "VI_1".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: vrrp::StateName::Master,
                reason: None,
                priority: 100,
                effective_priority: 100,
                adverts_received: 3,
                adverts_sent: 40,
                became_master: 1,
                priority_zero_received: 1,
                dropped: [("ttl".to_owned(), 2u64)].into_iter().collect(),
                ..InstanceStatus::default()
            }],
            virtual_servers: vec![VirtualServerStatus {
                address: "198.51.100.250".into(),
                port: 80,
                protocol: "TCP".into(),
                quorum_up: true,
                real_servers: vec![
                    RealServerStatus {
                        address: "198.51.100.50".into(),
                        port: 80,
                        weight: 3,
                        healthy: true,
                        reason: None,
                        reason_kind: None,
                    },
                    RealServerStatus {
                        address: "198.51.100.51".into(),
                        port: 80,
                        weight: 1,
                        healthy: false,
                        reason: Some("HTTP_GET: HTTP 503, expected 200-299".into()),
                        reason_kind: Some("http_status"),
                    },
                ],
                ..VirtualServerStatus::default()
            }],
            proxy: vec![ProxyCounter {
                virtual_server: "198.51.100.250:80".into(),
                real_server: "198.51.100.50:80".into(),
                active_connections: 2,
                bytes: 1234,
            }],
            proxy_limits: Some(crate::control::ProxyLimits {
                fd_limit: 20_000,
                fds_open: 18_100,
                virtual_servers: vec![crate::control::ProxyServiceLimits {
                    virtual_server: "198.51.100.250:80".into(),
                    protocol: "TCP".into(),
                    connections: 9_000,
                    refused: [
                        ("max_conns".to_owned(), 0u64),
                        ("descriptors".to_owned(), 3_000),
                    ]
                    .into_iter()
                    .collect(),
                    idle_timeouts: 4,
                    ..crate::control::ProxyServiceLimits::default()
                }],
                ..crate::control::ProxyLimits::default()
            }),
            bfd: vec![crate::control::BfdStatus {
                name: "gw".into(),
                neighbor: "198.51.100.1".into(),
                state: "Up".into(),
                detection_time_us: Some(30_000),
                ups: 2,
                downs: 1,
                sent: 900,
                ..crate::control::BfdStatus::default()
            }],
            flow_sync: Some(crate::control::FlowSyncStatus {
                interface: "eth0".into(),
                sync_id: 51,
                sending: true,
                sent: 50,
                ..crate::control::FlowSyncStatus::default()
            }),
            conntrack_sync: Some(crate::control::ConntrackStatus {
                instance: "VI_1".into(),
                peer: "198.51.100.40".into(),
                role: "master".into(),
                running: true,
                commits: 2,
                last_commit_ms: Some(12),
                peer_entries: 40,
                ..crate::control::ConntrackStatus::default()
            }),
            sync: Some(crate::control::SyncStatus {
                interface: "eth0".into(),
                instance: Some("VI_1".into()),
                sync_id: 51,
                roles: vec!["master".into()],
                changes: 3,
                ..crate::control::SyncStatus::default()
            }),
        }
    }

    /// The names users' dashboards and alerts depend on: changing one is
    /// a breaking change, and this golden list says so.
    #[test]
    fn the_metric_names_are_pinned() {
        let text = render(&sample());
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let golden: Vec<&str> = include_str!("../tests/metrics_names.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        assert_eq!(names, golden, "\n{text}");
    }

    #[test]
    fn values_and_labels_as_the_status_says() {
        let text = render(&sample());
        for want in [
            "keepalived_up 1",
            r#"keepalived_vrrp_state{iname="VI_1",intf="eth0",vrid="51"} 2"#,
            r#"keepalived_vrrp_advertisements_sent_total{iname="VI_1",intf="eth0",vrid="51"} 40"#,
            r#"keepalived_vrrp_become_master_total{iname="VI_1",intf="eth0",vrid="51"} 1"#,
            r#"keepalived_vrrp_priority_zero_received_total{iname="VI_1",intf="eth0",vrid="51"} 1"#,
            r#"keepalived_vrrp_invalid_packets_total{iname="VI_1",intf="eth0",vrid="51",reason="ttl"} 2"#,
            r#"keepalived_check_real_server_up{vs="198.51.100.250:80",protocol="TCP",rs="198.51.100.50:80"} 1"#,
            r#"keepalived_lvs_rs_weight{vs="198.51.100.250:80",protocol="TCP",rs="198.51.100.50:80"} 3"#,
            r#"keepalived_check_real_server_down_reason{vs="198.51.100.250:80",protocol="TCP",rs="198.51.100.51:80",reason="http_status"} 1"#,
            r#"keepalived_lvs_rs_active_conn{vs="198.51.100.250:80",rs="198.51.100.50:80"} 2"#,
            r#"keepalived_lvs_rs_bytes_total{vs="198.51.100.250:80",rs="198.51.100.50:80"} 1234"#,
            r#"keepalived_proxy_vs_connections{vs="198.51.100.250:80",protocol="TCP"} 9000"#,
            r#"keepalived_proxy_vs_refused_total{vs="198.51.100.250:80",protocol="TCP",reason="descriptors"} 3000"#,
            r#"keepalived_proxy_vs_idle_timeouts_total{vs="198.51.100.250:80",protocol="TCP"} 4"#,
            "keepalived_process_open_fds{} 18100",
            "keepalived_process_max_fds{} 20000",
            r#"keepalived_lvs_sync_daemon_running{role="master",intf="eth0",syncid="51"} 1"#,
            r#"keepalived_lvs_sync_daemon_running{role="backup",intf="eth0",syncid="51"} 0"#,
            r#"keepalived_lvs_sync_daemon_changes_total{intf="eth0",syncid="51"} 3"#,
            r#"keepalived_conntrack_sync_running{iname="VI_1",peer="198.51.100.40"} 1"#,
            r#"keepalived_conntrack_sync_entries{iname="VI_1",peer="198.51.100.40",cache="peer"} 40"#,
            r#"keepalived_dr_flow_sync_sending{intf="eth0",syncid="51"} 1"#,
            r#"keepalived_dr_flow_sync_entries_total{intf="eth0",syncid="51",what="sent"} 50"#,
            r#"keepalived_bfd_session_up{name="gw",neighbor="198.51.100.1"} 1"#,
            r#"keepalived_bfd_session_changes_total{name="gw",neighbor="198.51.100.1",to="down"} 1"#,
            r#"keepalived_bfd_packets_total{name="gw",neighbor="198.51.100.1",dir="sent"} 900"#,
            r#"keepalived_bfd_detection_time_microseconds{name="gw",neighbor="198.51.100.1"} 30000"#,
            r#"keepalived_conntrack_sync_commits_total{iname="VI_1",peer="198.51.100.40"} 2"#,
            r#"keepalived_conntrack_sync_last_commit_milliseconds{iname="VI_1",peer="198.51.100.40"} 12"#,
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing `{want}` in\n{text}"
            );
        }
        // A healthy server has no reason series.
        assert!(
            !text.contains(r#"keepalived_check_real_server_down_reason{vs="198.51.100.250:80",protocol="TCP",rs="198.51.100.50:80""#),
            "{text}"
        );
        assert_eq!(state_code(vrrp::StateName::Backup), 1);
        assert_eq!(state_code(vrrp::StateName::Fault), 3);
        assert_eq!(state_code(vrrp::StateName::Init), 0);
    }
}
