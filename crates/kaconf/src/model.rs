//! The typed model of `keepalived.conf`: one struct per block, one field per
//! keyword. Fields hold what was written (`None` when absent); defaults are
//! the business of whoever acts on the configuration.

use std::net::IpAddr;

use crate::section::{emit_block, section, Named, Origin, Section, Sub};
use crate::tree::Stmt;
use crate::value::{
    keyword_enum, no_block, one_arg, parse_ip, At, Command, Count, Cx, Emitter, Flag, Int,
    LineValue, Lines, Millis, Port, Prefix, Priority, RawLine, Script, Seconds, Slot, Switch,
    Value, Vrid, Words,
};

keyword_enum!(
    /// `state`: the state an instance starts in.
    InitialState { Master = "MASTER", Backup = "BACKUP" }
);
keyword_enum!(
    /// `auth_type` (VRRPv2 only).
    AuthType { Pass = "PASS", Ah = "AH" }
);
keyword_enum!(
    /// `lb_algo` / `lvs_sched`: the scheduler of a virtual server.
    LbAlgo {
        Rr = "rr", Wrr = "wrr", Lc = "lc", Wlc = "wlc", Lblc = "lblc", Lblcr = "lblcr",
        Dh = "dh", Sh = "sh", Sed = "sed", Nq = "nq", Fo = "fo", Ovf = "ovf", Mh = "mh",
        Twos = "twos",
    }
);
keyword_enum!(
    /// `lb_kind` / `lvs_method`: how packets reach a real server.
    LbKind { Nat = "NAT", Dr = "DR", Tun = "TUN" }
);
keyword_enum!(
    /// `lb_kind TUN type …`: IPVS's encapsulation.
    TunnelType { Ipip = "ipip", Gue = "gue", Gre = "gre" }
);
keyword_enum!(
    /// `lb_kind TUN … csum|nocsum|remcsum`: the tunnel's checksum.
    TunnelCsum { NoCsum = "nocsum", Csum = "csum", RemCsum = "remcsum" }
);

/// `lb_kind` / `lvs_method` with keepalived's tunnel options:
/// `TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]` (a GUE tunnel
/// needs its port, the others have none; IPIP carries no checksum, GRE no
/// remote checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forwarding {
    pub kind: LbKind,
    pub tunnel: TunnelType,
    /// GUE's UDP port (0 for the others).
    pub tunnel_port: u16,
    pub csum: TunnelCsum,
}

impl From<LbKind> for Forwarding {
    fn from(kind: LbKind) -> Self {
        Self {
            kind,
            tunnel: TunnelType::Ipip,
            tunnel_port: 0,
            csum: TunnelCsum::NoCsum,
        }
    }
}

impl Value for Forwarding {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        let args = stmt.args();
        let Some(first) = args.first() else {
            cx.error(
                stmt.arg_loc(0),
                format!("`{}` needs NAT, DR or TUN", stmt.keyword()),
            );
            return None;
        };
        let Some(kind) = LbKind::from_text(&first.text) else {
            cx.error(
                stmt.arg_loc(0),
                format!(
                    "`{}` must be one of NAT, DR, TUN, not `{}`",
                    stmt.keyword(),
                    first.text
                ),
            );
            return None;
        };
        let mut out = Self::from(kind);
        let mut i = 1;
        while let Some(w) = args.get(i) {
            let at = stmt.arg_loc(i);
            let value = args.get(i + 1);
            match w.text.as_str() {
                "type" => {
                    let Some(t) = value.and_then(|v| TunnelType::from_text(&v.text)) else {
                        cx.error(at, "`type` needs ipip, gue or gre");
                        return None;
                    };
                    out.tunnel = t;
                    i += 2;
                }
                "port" => {
                    let Some(p) = value
                        .and_then(|v| v.text.parse::<u16>().ok())
                        .filter(|p| *p > 0)
                    else {
                        cx.error(at, "`port` needs the GUE tunnel's port, 1 to 65535");
                        return None;
                    };
                    out.tunnel_port = p;
                    i += 2;
                }
                other => {
                    let Some(c) = TunnelCsum::from_text(other) else {
                        cx.error(
                            at,
                            format!("invalid tunnel option `{other}` (type, port, nocsum, csum, remcsum)"),
                        );
                        return None;
                    };
                    out.csum = c;
                    i += 1;
                }
            }
        }
        let here = stmt.arg_loc(0);
        if args.len() > 1 && kind != LbKind::Tun {
            cx.warn(
                here,
                format!(
                    "tunnel options apply to TUN only; ignored for {}",
                    kind.as_str()
                ),
            );
            return Some(Self::from(kind));
        }
        if (out.tunnel == TunnelType::Gue) != (out.tunnel_port != 0) {
            cx.error(
                here,
                "gue tunnels require `port`, and the others cannot have one",
            );
            return None;
        }
        if out.tunnel == TunnelType::Ipip && out.csum != TunnelCsum::NoCsum {
            cx.error(here, "ipip tunnels do not support a checksum option");
            return None;
        }
        if out.tunnel == TunnelType::Gre && out.csum == TunnelCsum::RemCsum {
            cx.error(here, "gre tunnels do not support remcsum");
            return None;
        }
        Some(out)
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut w = vec![keyword.to_owned(), self.kind.as_str().to_owned()];
        if self.kind == LbKind::Tun && *self != Self::from(LbKind::Tun) {
            w.extend(["type".to_owned(), self.tunnel.as_str().to_owned()]);
            if self.tunnel_port != 0 {
                w.extend(["port".to_owned(), self.tunnel_port.to_string()]);
            }
            if self.csum != TunnelCsum::NoCsum {
                w.push(self.csum.as_str().to_owned());
            }
        }
        out.line(&w);
    }
}

keyword_enum!(
    /// `protocol` of a virtual server.
    Protocol { Tcp = "TCP", Udp = "UDP", Sctp = "SCTP" }
);
keyword_enum!(
    /// `ip_family` of a virtual server.
    IpFamily { Inet = "inet", Inet6 = "inet6" }
);
keyword_enum!(
    /// `lb_dataplane` (keepalived-rs extension): what carries virtual server traffic.
    Dataplane { Ipvs = "ipvs", Nftables = "nftables", Proxy = "proxy" }
);
keyword_enum!(
    /// `proxy_protocol` (keepalived-rs extension): the PROXY protocol
    /// header the proxy sends real servers first.
    ProxyProtocol { V1 = "v1", V2 = "v2" }
);

/// VRRP protocol version.
pub type VrrpVersion = Int<2, 3>;

/// `weight N [reverse]` of a script, file or process tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackWeight {
    pub weight: i64,
    pub reverse: bool,
}

/// The range keepalived allows for tracker weights.
const WEIGHT_MIN: i64 = -253;
const WEIGHT_MAX: i64 = 253;

fn parse_weight(
    stmt: &Stmt,
    words: &[crate::lexer::Word],
    at: usize,
    cx: &mut Cx,
) -> Option<TrackWeight> {
    let Some(w) = words.get(at) else {
        cx.error(stmt.loc, "`weight` needs a number");
        return None;
    };
    let weight = match Int::<WEIGHT_MIN, WEIGHT_MAX>::from_text(&w.text) {
        Ok(v) => v.get(),
        Err(e) => {
            cx.error(stmt.loc.at_col(w.col), format!("weight {e}"));
            return None;
        }
    };
    let reverse = match words.get(at + 1).map(|w| w.text.as_str()) {
        None => false,
        Some("reverse") => true,
        Some(other) => {
            cx.error(
                stmt.loc.at_col(words[at + 1].col),
                format!("expected `reverse` after the weight, not `{other}`"),
            );
            return None;
        }
    };
    Some(TrackWeight { weight, reverse })
}

impl Value for TrackWeight {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        parse_weight(stmt, &stmt.words, 1, cx)
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut w = vec![keyword.to_owned(), self.weight.to_string()];
        if self.reverse {
            w.push("reverse".into());
        }
        out.line(&w);
    }
}

/// A line of `track_script`, `track_file`, `track_process`, `track_interface`:
/// `NAME [weight N [reverse]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackRef {
    pub name: String,
    pub weight: Option<TrackWeight>,
    pub origin: Origin,
}

impl LineValue for TrackRef {
    fn parse_line(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let weight = match stmt.words.get(1).map(|w| w.text.as_str()) {
            None => None,
            Some("weight") => Some(parse_weight(stmt, &stmt.words, 2, cx)?),
            Some(other) => {
                cx.error(
                    stmt.arg_loc(0),
                    format!(
                        "expected `weight` after `{}`, not `{other}`",
                        stmt.keyword()
                    ),
                );
                return None;
            }
        };
        Some(Self {
            name: stmt.keyword().to_owned(),
            weight,
            origin: Origin(stmt.loc),
        })
    }
    fn emit_line(&self, out: &mut Emitter) {
        let mut w = vec![self.name.clone()];
        if let Some(tw) = self.weight {
            w.push("weight".into());
            w.push(tw.weight.to_string());
            if tw.reverse {
                w.push("reverse".into());
            }
        }
        out.line(&w);
    }
}

/// Words of a line, each a name (`group { VI_1 VI_2 }`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names(pub Vec<String>);

impl LineValue for Names {
    fn parse_line(stmt: &Stmt, _cx: &mut Cx) -> Option<Self> {
        Some(Self(stmt.words.iter().map(|w| w.text.clone()).collect()))
    }
    fn emit_line(&self, out: &mut Emitter) {
        out.line(&self.0);
    }
}

/// A line of `virtual_ipaddress` / `static_ipaddress`:
/// `ADDR[/LEN] [brd X] [dev IF] [scope S] [label L] [peer X] [no_track] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualAddress {
    pub addr: Prefix,
    pub brd: Option<String>,
    pub dev: Option<String>,
    pub scope: Option<String>,
    pub label: Option<String>,
    pub peer: Option<Prefix>,
    pub preferred_lft: Option<String>,
    /// Flags written after the address: `home`, `-nodad`, `noprefixroute`,
    /// `autojoin`, `no_track`.
    pub flags: Vec<String>,
    pub origin: Origin,
}

const VIP_FLAGS: &[&str] = &[
    "home",
    "-nodad",
    "nodad",
    "noprefixroute",
    "autojoin",
    "no_track",
];
const SCOPES: &[&str] = &["global", "site", "link", "host", "nowhere"];

impl LineValue for VirtualAddress {
    fn parse_line(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let first = &stmt.words[0];
        let addr = match Prefix::from_text(&first.text) {
            Ok(p) => p,
            Err(e) => {
                cx.error(stmt.loc.at_col(first.col), format!("bad address: {e}"));
                return None;
            }
        };
        let mut v = Self {
            addr,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            preferred_lft: None,
            flags: Vec::new(),
            origin: Origin(stmt.loc),
        };
        let mut i = 1;
        while let Some(w) = stmt.words.get(i) {
            let key = w.text.as_str();
            if VIP_FLAGS.contains(&key) {
                v.flags.push(key.to_owned());
                i += 1;
                continue;
            }
            let Some(val) = stmt.words.get(i + 1) else {
                let msg = if [
                    "brd",
                    "broadcast",
                    "dev",
                    "scope",
                    "label",
                    "peer",
                    "preferred_lft",
                ]
                .contains(&key)
                {
                    format!("`{key}` needs a value")
                } else {
                    format!("unknown address option `{key}`")
                };
                cx.error(stmt.loc.at_col(w.col), msg);
                return None;
            };
            let at = stmt.loc.at_col(val.col);
            match key {
                "brd" | "broadcast" => v.brd = Some(val.text.clone()),
                "dev" => v.dev = Some(val.text.clone()),
                "label" => v.label = Some(val.text.clone()),
                "preferred_lft" => v.preferred_lft = Some(val.text.clone()),
                "scope" => {
                    if !SCOPES.contains(&val.text.as_str()) && val.text.parse::<u8>().is_err() {
                        cx.error(
                            at,
                            format!(
                                "unknown scope `{}` (global, site, link, host, nowhere or 0-255)",
                                val.text
                            ),
                        );
                        return None;
                    }
                    v.scope = Some(val.text.clone());
                }
                "peer" => match Prefix::from_text(&val.text) {
                    Ok(p) => v.peer = Some(p),
                    Err(e) => {
                        cx.error(at, format!("bad peer address: {e}"));
                        return None;
                    }
                },
                _ => {
                    cx.error(
                        stmt.loc.at_col(w.col),
                        format!("unknown address option `{key}`"),
                    );
                    return None;
                }
            }
            i += 2;
        }
        Some(v)
    }

    fn emit_line(&self, out: &mut Emitter) {
        let mut w = vec![self.addr.to_text()];
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                w.push(k.to_owned());
                w.push(v.clone());
            }
        };
        opt("brd", &self.brd);
        opt("dev", &self.dev);
        opt("scope", &self.scope);
        opt("label", &self.label);
        opt("peer", &self.peer.map(|p| p.to_text()));
        opt("preferred_lft", &self.preferred_lft);
        w.extend(self.flags.iter().cloned());
        out.line(&w);
    }
}

/// A line of `unicast_peer`: `ADDR [min_ttl N] [max_ttl N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicastPeer {
    pub addr: IpAddr,
    pub options: Vec<String>,
}

impl LineValue for UnicastPeer {
    fn parse_line(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        match parse_ip(stmt.keyword()) {
            Ok(addr) => Some(Self {
                addr,
                options: stmt.args().iter().map(|w| w.text.clone()).collect(),
            }),
            Err(e) => {
                cx.error(stmt.loc, format!("invalid unicast peer: {e}"));
                None
            }
        }
    }
    fn emit_line(&self, out: &mut Emitter) {
        let mut w = vec![self.addr.to_string()];
        w.extend(self.options.iter().cloned());
        out.line(&w);
    }
}

/// `persistence_timeout N`; 0 (written by the seed) means no persistence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersistenceTimeout(pub u32);

impl Value for PersistenceTimeout {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let text = one_arg(stmt, cx, "a number of seconds")?;
        let Ok(v) = text.parse::<u32>() else {
            cx.error(
                stmt.arg_loc(0),
                format!(
                    "persistence_timeout `{text}` is not a whole number 0..={}",
                    u32::MAX
                ),
            );
            return None;
        };
        if v == 0 {
            cx.warn(
                stmt.arg_loc(0),
                "persistence_timeout 0 means no persistence (keepalived 2.2 rejects 0); leaving the keyword out says the same",
            );
        }
        Some(Self(v))
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword.to_owned(), self.0.to_string()]);
    }
}

/// `ADDR PORT`, as in `sorry_server`, `metrics_listen` (also `ADDR:PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl Endpoint {
    fn from_words(stmt: &Stmt, words: &[crate::lexer::Word], cx: &mut Cx) -> Option<Self> {
        let Some(first) = words.first() else {
            cx.error(
                stmt.arg_loc(0),
                format!("`{}` needs an address", stmt.keyword()),
            );
            return None;
        };
        // `[v6]:port` or `v4:port` in one word, or `ADDR PORT` in two.
        let (addr_text, port_text) = if let Some(rest) = first.text.strip_prefix('[') {
            match rest.split_once("]:") {
                Some((a, p)) => (a.to_owned(), Some(p.to_owned())),
                None => (rest.trim_end_matches(']').to_owned(), None),
            }
        } else if first.text.matches(':').count() == 1 {
            let (a, p) = first.text.split_once(':').unwrap_or((&first.text, ""));
            (a.to_owned(), Some(p.to_owned()))
        } else {
            (first.text.clone(), words.get(1).map(|w| w.text.clone()))
        };
        let addr = match parse_ip(&addr_text) {
            Ok(a) => a,
            Err(e) => {
                cx.error(stmt.loc.at_col(first.col), e);
                return None;
            }
        };
        let port = match port_text {
            None => None,
            Some(p) => match Port::from_text(&p) {
                Ok(p) => Some(u16::try_from(p.get()).unwrap_or(0)),
                Err(e) => {
                    cx.error(stmt.loc.at_col(first.col), format!("port {e}"));
                    return None;
                }
            },
        };
        Some(Self { addr, port })
    }

    fn words(&self) -> Vec<String> {
        let mut w = vec![self.addr.to_string()];
        if let Some(p) = self.port {
            w.push(p.to_string());
        }
        w
    }
}

impl Value for Endpoint {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        Self::from_words(stmt, stmt.args(), cx)
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut w = vec![keyword.to_owned()];
        w.extend(self.words());
        out.line(&w);
    }
}

/// Reads several `{ … }` blocks of the same keyword into one (keepalived
/// allows `global_defs` more than once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged<T>(pub Option<T>);

impl<T: Section> Slot for Merged<T> {
    fn set(&mut self, stmt: &Stmt, cx: &mut Cx) {
        let Some(block) = &stmt.block else {
            cx.error(
                stmt.arg_loc(0),
                format!("`{}` needs a `{{ … }}` block, not a value", stmt.keyword()),
            );
            return;
        };
        let section = self.0.get_or_insert_with(T::default);
        for s in &block.stmts {
            section.read_stmt(s, cx);
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        if let Some(s) = &self.0 {
            out.open(&[keyword]);
            s.emit_body(out);
            out.close();
        }
    }
}

section! {
    /// The whole configuration file.
    pub struct Config ("the top level") {
        "global_defs" => global_defs: Merged<GlobalDefs>,
        "vrrp_script" => vrrp_scripts: Vec<Named<VrrpScript>>,
        "track_file" => track_files: Vec<Named<TrackFile>>,
        "vrrp_track_process" => track_processes: Vec<Named<TrackProcess>>,
        "vrrp_sync_group" => sync_groups: Vec<Named<SyncGroup>>,
        "vrrp_instance" => instances: Vec<Named<VrrpInstance>>,
        "bfd_instance" => bfd_instances: Vec<Named<BfdInstance>>,
        "static_ipaddress" => static_ipaddress: Vec<Lines<VirtualAddress>>,
        "static_routes" => static_routes: Vec<Lines<crate::route::RouteLine>>,
        "static_rules" => static_rules: Vec<Lines<crate::route::RuleLine>>,
        "virtual_server_group" => virtual_server_groups: Vec<VirtualServerGroup>,
        "virtual_server" => virtual_servers: Vec<VirtualServer>,
    }
    aliases {
        "vrrp_track_file" => "track_file": "the old name of `track_file`",
    }
    unsupported [
        "track_group", "garp_group", "linkbeat_interfaces", "interface_up_down_delays", "SSL",
        "linkbeat_use_polling", "net_namespace", "net_namespace_ipvs",
        "namespace_with_ipsets", "use_pid_dir", "instance", "child_wait_time",
    ]
}

section! {
    /// `global_defs { … }`.
    pub struct GlobalDefs ("global_defs") {
        "router_id" => router_id: Option<String>,
        "notification_email" => notification_email: Option<Lines<Names>>,
        "notification_email_from" => notification_email_from: Option<Words>,
        "smtp_server" => smtp_server: Option<Words>,
        "smtp_helo_name" => smtp_helo_name: Option<String>,
        "smtp_connect_timeout" => smtp_connect_timeout: Option<Seconds>,
        "smtp_alert" => smtp_alert: Option<Switch>,
        "smtp_alert_vrrp" => smtp_alert_vrrp: Option<Switch>,
        "smtp_alert_checker" => smtp_alert_checker: Option<Switch>,
        "no_email_faults" => no_email_faults: bool,
        "startup_script" => startup_script: Option<Script>,
        "startup_script_timeout" => startup_script_timeout: Option<Seconds>,
        "shutdown_script" => shutdown_script: Option<Script>,
        "shutdown_script_timeout" => shutdown_script_timeout: Option<Seconds>,
        "checker_log_all_failures" => checker_log_all_failures: Option<Switch>,
        "dynamic_interfaces" => dynamic_interfaces: Option<Words>,
        "default_interface" => default_interface: Option<String>,
        "vrrp_version" => vrrp_version: Option<VrrpVersion>,
        "vrrp_strict" => vrrp_strict: bool,
        "vrrp_check_unicast_src" => vrrp_check_unicast_src: bool,
        "vrrp_skip_check_adv_addr" => vrrp_skip_check_adv_addr: Option<Switch>,
        "vrrp_mcast_group4" => vrrp_mcast_group4: Option<IpAddr>,
        "vrrp_mcast_group6" => vrrp_mcast_group6: Option<IpAddr>,
        "vrrp_garp_master_delay" => vrrp_garp_master_delay: Option<Seconds>,
        "vrrp_garp_master_repeat" => vrrp_garp_master_repeat: Option<Count>,
        "vrrp_garp_master_refresh" => vrrp_garp_master_refresh: Option<Seconds>,
        "vrrp_garp_master_refresh_repeat" => vrrp_garp_master_refresh_repeat: Option<Count>,
        "vrrp_garp_lower_prio_delay" => vrrp_garp_lower_prio_delay: Option<Seconds>,
        "vrrp_garp_lower_prio_repeat" => vrrp_garp_lower_prio_repeat: Option<Count>,
        "vrrp_garp_interval" => vrrp_garp_interval: Option<Seconds>,
        "vrrp_gna_interval" => vrrp_gna_interval: Option<Seconds>,
        "vrrp_min_garp" => vrrp_min_garp: Option<Switch>,
        "vrrp_down_timer_adverts" => vrrp_down_timer_adverts: Option<Count>,
        "vrrp_lower_prio_no_advert" => vrrp_lower_prio_no_advert: Option<Switch>,
        "vrrp_higher_prio_send_advert" => vrrp_higher_prio_send_advert: Option<Switch>,
        "vrrp_startup_delay" => vrrp_startup_delay: Option<Seconds>,
        "vrrp_owner_ignore_adverts" => vrrp_owner_ignore_adverts: bool,
        "v3_checksum_as_v2" => v3_checksum_as_v2: bool,
        "notify_fifo" => notify_fifo: Option<At<Words>>,
        "notify_fifo_script" => notify_fifo_script: Option<Script>,
        "vrrp_notify_fifo" => vrrp_notify_fifo: Option<At<Words>>,
        "vrrp_notify_fifo_script" => vrrp_notify_fifo_script: Option<Script>,
        "vrrp_notify_priority_changes" => vrrp_notify_priority_changes: Option<Switch>,
        "lvs_notify_fifo" => lvs_notify_fifo: Option<At<Words>>,
        "lvs_notify_fifo_script" => lvs_notify_fifo_script: Option<Script>,
        "script_user" => script_user: Option<At<Words>>,
        "enable_script_security" => enable_script_security: bool,
        "lvs_timeouts" => lvs_timeouts: Option<Words>,
        /// `lvs_sync_daemon IFNAME [INSTANCE] [id N] [maxlen N] [port N]
        /// [ttl N] [group ADDR]`, read by the daemon as keepalived reads it.
        "lvs_sync_daemon" => lvs_sync_daemon: Option<Words>,
        "lvs_flush" => lvs_flush: bool,
        "lvs_flush_on_stop" => lvs_flush_on_stop: Option<Words>,
        "rs_init_notifies" => rs_init_notifies: bool,
        "no_checker_emails" => no_checker_emails: bool,
        "log_unknown_vrids" => log_unknown_vrids: bool,
        "max_auto_priority" => max_auto_priority: Option<Words>,
        "include_check" => include_check: Option<Words>,
        /// Extension: the data plane of every virtual server (ipvs, nftables, proxy).
        "lb_dataplane" => lb_dataplane: Option<Dataplane>,
        /// Extension: where Prometheus metrics are served (`ADDR:PORT`).
        "metrics_listen" => metrics_listen: Option<Endpoint>,
        /// Extension: a group whose members may use the control socket
        /// (besides root); the socket is then 0660 and owned by it.
        "control_socket_group" => control_socket_group: Option<String>,
        /// Extension: the default split-brain guard of every instance.
        "split_brain_guard" => split_brain_guard: Option<Sub<SplitBrainGuard>>,
        /// Extension: conntrackd run and driven for the nftables planes.
        "conntrack_sync" => conntrack_sync: Option<Sub<ConntrackSync>>,
    }
    aliases {
        "lvs_flush_onstop" => "lvs_flush_on_stop": "another spelling of `lvs_flush_on_stop`",
        "vrrp_vmac_garp_intvl" => "vrrp_garp_extra_if": "the pre-2.2.2 name of `vrrp_garp_extra_if`",
    }
    unsupported [
        "process_names", "process_name", "vrrp_process_name", "checker_process_name",
        "lvs_process_name", "bfd_process_name", "use_symlink_paths", "min_auto_priority_delay",
        "disable_local_igmp", "vrrp_garp_extra_if", "vrrp_iptables",
        "vrrp_ipsets", "nftables", "nftables_priority", "nftables_ifindex", "vrrp_priority",
        "vrrp_no_swap", "vrrp_rt_priority", "vrrp_cpu_affinity", "vrrp_rlimit_rttime",
        "vrrp_rlimit_rtime", "nftables_ipvs", "nftables_ipvs_priority",
        "nftables_ipvs_start_fwmark", "nftables_counters", "fifo_write_vrrp_states_on_reload",
        "checker_priority", "checker_no_swap", "checker_rt_priority", "checker_cpu_affinity",
        "checker_rlimit_rttime", "checker_rlimit_rtime", "bfd_priority", "bfd_no_swap",
        "bfd_rt_priority", "bfd_cpu_affinity", "bfd_rlimit_rttime", "bfd_rlimit_rtime",
        "snmp_socket", "enable_traps", "enable_snmp_vrrp", "enable_snmp_keepalived",
        "enable_snmp_rfc", "enable_snmp_rfcv2", "enable_snmp_rfcv3", "enable_snmp_checker",
        "snmp_vs_stats_update_interval", "snmp_rs_stats_update_interval", "enable_dbus",
        "dbus_service_name", "dbus_no_interface_name", "vrrp_netlink_cmd_rcv_bufs",
        "vrrp_netlink_cmd_rcv_bufs_force", "vrrp_netlink_monitor_rcv_bufs",
        "vrrp_netlink_monitor_rcv_bufs_force", "process_monitor_rcv_bufs",
        "process_monitor_rcv_bufs_force", "lvs_netlink_cmd_rcv_bufs",
        "lvs_netlink_cmd_rcv_bufs_force", "lvs_netlink_monitor_rcv_bufs",
        "lvs_netlink_monitor_rcv_bufs_force", "vrrp_rx_bufs_policy", "vrrp_rx_bufs_multiplier",
        "vrrp_delay_after_boot", "vmac_prefix", "vmac_addr_prefix", "umask", "random_seed",
        "reload_check_config", "reload_time_file", "reload_repeat", "reload_file",
        "config_save_dir", "tmp_config_directory", "data_use_instance", "json_version",
        "iproute_usr_dir", "iproute_etc_dir", "state_dump_file", "stats_dump_file",
        "json_dump_file", "linkbeat_use_polling", "net_namespace", "net_namespace_ipvs",
        "namespace_with_ipsets", "use_pid_dir", "instance", "child_wait_time",
    ]
}

section! {
    /// `conntrack_sync { … }` (keepalived-rs extension): conntrackd, from
    /// conntrack-tools, run by the daemon and driven on the named
    /// instance's transitions, so the nftables planes' connections survive
    /// a failover.
    pub struct ConntrackSync ("conntrack_sync") {
        /// The VRRP instance whose state it follows.
        "instance" => instance: Option<String>,
        /// The link the connection state crosses (a dedicated one, or the
        /// heartbeat path).
        "interface" => interface: Option<String>,
        /// Our address on it (default: its first) and the peer's.
        "source" => source: Option<IpAddr>,
        "peer" => peer: Option<IpAddr>,
        /// conntrackd's UDP port (default 3780).
        "port" => port: Option<Port>,
        /// An operator's own conntrackd.conf, used instead of ours.
        "config" => config: Option<String>,
        /// The conntrackd program (default: `conntrackd` on the PATH).
        "conntrackd" => conntrackd: Option<String>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `split_brain_guard { … }` (keepalived-rs extension).
    pub struct SplitBrainGuard ("split_brain_guard") {
        /// `heartbeat_path IF ADDR`: adverts also go over a second link.
        "heartbeat_path" => heartbeat_path: Vec<Words>,
        /// `witness [icmp|tcp] ADDR[:PORT]`.
        "witness" => witness: Vec<Words>,
        "on_dual_master" => on_dual_master: Option<Script>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `vrrp_script NAME { … }`: a tracked script.
    pub struct VrrpScript ("vrrp_script") {
        "script" => script: Option<Command>,
        "interval" => interval: Option<Seconds>,
        "timeout" => timeout: Option<Seconds>,
        "weight" => weight: Option<TrackWeight>,
        "rise" => rise: Option<Int<1, { i32::MAX as i64 }>>,
        "fall" => fall: Option<Int<1, { i32::MAX as i64 }>>,
        "user" => user: Option<At<Words>>,
        "init_fail" => init_fail: bool,
    }
    aliases {}
    unsupported []
}

section! {
    /// `track_file NAME { … }` (formerly `vrrp_track_file`).
    pub struct TrackFile ("track_file") {
        "file" => file: Option<String>,
        "weight" => weight: Option<TrackWeight>,
        "init_file" => init_file: Option<Words>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `vrrp_track_process NAME { … }`.
    pub struct TrackProcess ("vrrp_track_process") {
        "process" => process: Option<Words>,
        "param_match" => param_match: Option<Words>,
        "weight" => weight: Option<TrackWeight>,
        "quorum" => quorum: Option<Count>,
        "quorum_max" => quorum_max: Option<Count>,
        "delay" => delay: Option<Seconds>,
        "terminate_delay" => terminate_delay: Option<Seconds>,
        "fork_delay" => fork_delay: Option<Seconds>,
        "full_command" => full_command: bool,
    }
    aliases {}
    unsupported []
}

section! {
    /// `vrrp_sync_group NAME { … }`.
    pub struct SyncGroup ("vrrp_sync_group") {
        "group" => group: Option<Lines<Names>>,
        "track_interface" => track_interface: Option<Lines<TrackRef>>,
        "track_script" => track_script: Option<Lines<TrackRef>>,
        "track_file" => track_file: Option<Lines<TrackRef>>,
        "track_process" => track_process: Option<Lines<TrackRef>>,
        "track_bfd" => track_bfd: Option<Lines<TrackRef>>,
        "notify_backup" => notify_backup: Option<Script>,
        "notify_master" => notify_master: Option<Script>,
        "notify_fault" => notify_fault: Option<Script>,
        "notify_stop" => notify_stop: Option<Script>,
        "notify" => notify: Option<Script>,
        "smtp_alert" => smtp_alert: Option<Switch>,
        "global_tracking" => global_tracking: bool,
        "sync_group_tracking_weight" => sync_group_tracking_weight: bool,
        "notify_priority_changes" => notify_priority_changes: Option<Switch>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `bfd_instance NAME { … }`: one BFD session (RFC 5880/5881/5883).
    pub struct BfdInstance ("bfd_instance") {
        "neighbor_ip" => neighbor_ip: Option<IpAddr>,
        "source_ip" => source_ip: Option<IpAddr>,
        /// Milliseconds, microsecond resolution (default 10).
        "min_rx" => min_rx: Option<Millis>,
        "min_tx" => min_tx: Option<Millis>,
        /// While not Up (default 1000, at least 1000).
        "idle_tx" => idle_tx: Option<Millis>,
        "multiplier" => multiplier: Option<Int<1, 255>>,
        "passive" => passive: bool,
        /// The TTL (IPv4) or hop limit (IPv6) we send with; default 255
        /// (64 for IPv6, as keepalived).
        "ttl" => ttl: Option<Int<1, 255>>,
        /// How far below `ttl` a received packet's may be (default 0).
        "max_hops" => max_hops: Option<Int<-1, 255>>,
        /// RFC 5883: port 4784.
        "multihop" => multihop: Option<Switch>,
        /// The default weight of a `track_bfd` that names it.
        "weight" => weight: Option<TrackWeight>,
        /// Send its events only to VRRP / only to the checkers.
        "vrrp" => vrrp: bool,
        "checker" => checker: bool,
    }
    aliases {
        "neighbour_ip" => "neighbor_ip": "the British spelling of `neighbor_ip`",
        "hoplimit" => "ttl": "the IPv6 name of `ttl`",
    }
    unsupported []
}

section! {
    /// `authentication { … }` of a VRRPv2 instance.
    pub struct Authentication ("authentication") {
        "auth_type" => auth_type: Option<AuthType>,
        "auth_pass" => auth_pass: Option<String>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `auth_hmac { … }` (keepalived 2.4): signed, replay-proof adverts.
    pub struct AuthHmac ("auth_hmac") {
        "key" => key: Vec<At<Words>>,
        "active_key" => active_key: Option<At<Count>>,
        "time_window" => time_window: Option<At<Seconds>>,
        "anti_replay" => anti_replay: Option<At<Words>>,
        "mode" => mode: Option<At<Words>>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `vrrp_instance NAME { … }`: every keyword keepalived 2.4 knows.
    pub struct VrrpInstance ("vrrp_instance") {
        "state" => state: Option<At<InitialState>>,
        "interface" => interface: Option<At<String>>,
        "virtual_router_id" => virtual_router_id: Option<Vrid>,
        "priority" => priority: Option<At<Priority>>,
        "advert_int" => advert_int: Option<At<Seconds>>,
        "version" => version: Option<At<VrrpVersion>>,
        "native_ipv6" => native_ipv6: bool,
        "use_vmac" => use_vmac: Option<Words>,
        "use_vmac_addr" => use_vmac_addr: bool,
        "vmac_xmit_base" => vmac_xmit_base: bool,
        "use_ipvlan" => use_ipvlan: Option<Words>,
        "unicast_peer" => unicast_peer: Option<Lines<UnicastPeer>>,
        "unicast_fault_no_peer" => unicast_fault_no_peer: bool,
        "check_unicast_src" => check_unicast_src: bool,
        "old_unicast_checksum" => old_unicast_checksum: Option<Words>,
        "vrf" => vrf: Option<String>,
        "dont_track_primary" => dont_track_primary: bool,
        "track_interface" => track_interface: Option<Lines<TrackRef>>,
        "track_script" => track_script: Option<Lines<TrackRef>>,
        "track_file" => track_file: Option<Lines<TrackRef>>,
        "track_process" => track_process: Option<Lines<TrackRef>>,
        "track_bfd" => track_bfd: Option<Lines<TrackRef>>,
        "mcast_src_ip" => mcast_src_ip: Option<IpAddr>,
        "unicast_src_ip" => unicast_src_ip: Option<IpAddr>,
        "mcast_dst_ip" => mcast_dst_ip: Option<IpAddr>,
        "track_src_ip" => track_src_ip: bool,
        "unicast_ttl" => unicast_ttl: Option<Int<1, 255>>,
        "virtual_ipaddress" => virtual_ipaddress: Vec<Lines<VirtualAddress>>,
        "virtual_ipaddress_excluded" => virtual_ipaddress_excluded: Vec<Lines<VirtualAddress>>,
        "no_virtual_ipaddress" => no_virtual_ipaddress: bool,
        "promote_secondaries" => promote_secondaries: bool,
        "linkbeat_use_polling" => linkbeat_use_polling: bool,
        "v3_checksum_as_v2" => v3_checksum_as_v2: bool,
        "virtual_routes" => virtual_routes: Vec<Lines<crate::route::RouteLine>>,
        "virtual_rules" => virtual_rules: Vec<Lines<crate::route::RuleLine>>,
        "accept" => accept: bool,
        "no_accept" => no_accept: bool,
        "skip_check_adv_addr" => skip_check_adv_addr: Option<Switch>,
        "strict_mode" => strict_mode: Option<Switch>,
        "preempt" => preempt: bool,
        "nopreempt" => nopreempt: Option<At<Flag>>,
        "preempt_delay" => preempt_delay: Option<Seconds>,
        "debug" => debug: Option<Words>,
        "notify_backup" => notify_backup: Option<Script>,
        "notify_master" => notify_master: Option<Script>,
        "notify_fault" => notify_fault: Option<Script>,
        "notify_stop" => notify_stop: Option<Script>,
        "notify_deleted" => notify_deleted: Option<Script>,
        "notify" => notify: Option<Script>,
        "notify_master_rx_lower_pri" => notify_master_rx_lower_pri: Option<Script>,
        "smtp_alert" => smtp_alert: Option<Switch>,
        "notify_priority_changes" => notify_priority_changes: Option<Switch>,
        "lvs_sync_daemon_interface" => lvs_sync_daemon_interface: Option<String>,
        "garp_master_delay" => garp_master_delay: Option<Seconds>,
        "garp_master_refresh" => garp_master_refresh: Option<Seconds>,
        "garp_master_repeat" => garp_master_repeat: Option<Count>,
        "garp_master_refresh_repeat" => garp_master_refresh_repeat: Option<Count>,
        "garp_lower_prio_delay" => garp_lower_prio_delay: Option<Seconds>,
        "garp_lower_prio_repeat" => garp_lower_prio_repeat: Option<Count>,
        "down_timer_adverts" => down_timer_adverts: Option<Int<1, 100>>,
        "timer_expired_backup" => timer_expired_backup: bool,
        "thread_timer_expired" => thread_timer_expired: bool,
        "garp_extra_if" => garp_extra_if: Option<Words>,
        "lower_prio_no_advert" => lower_prio_no_advert: Option<Switch>,
        "higher_prio_send_advert" => higher_prio_send_advert: Option<Switch>,
        "owner_ignore_adverts" => owner_ignore_adverts: bool,
        "kernel_rx_buf_size" => kernel_rx_buf_size: Option<Count>,
        "authentication" => authentication: Option<At<Sub<Authentication>>>,
        "auth_hmac" => auth_hmac: Option<Sub<AuthHmac>>,
        /// Extension: see [`SplitBrainGuard`].
        "split_brain_guard" => split_brain_guard: Option<Sub<SplitBrainGuard>>,
    }
    aliases {
        "vmac_garp_intvl" => "garp_extra_if": "the pre-2.2.2 name of `garp_extra_if`",
    }
    unsupported []
    not_planned [
        "use_vmac_addr", "use_ipvlan", "vrf",
        "linkbeat_use_polling", "kernel_rx_buf_size",
        "thread_timer_expired", "debug",
    ]
}

/// `virtual_server_group NAME { ADDR PORT | ADDR-RANGE PORT | fwmark N … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServerGroup {
    pub name: String,
    pub origin: Origin,
    pub entries: Vec<RawLine>,
}

impl Value for VirtualServerGroup {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let Some(name) = stmt.args().first() else {
            cx.error(stmt.arg_loc(0), "`virtual_server_group` needs a name");
            return None;
        };
        let Some(block) = &stmt.block else {
            cx.error(
                stmt.arg_loc(1),
                format!(
                    "`virtual_server_group {}` needs a `{{ … }}` block",
                    name.text
                ),
            );
            return None;
        };
        let mut entries = Vec::new();
        for s in &block.stmts {
            let first = s.keyword();
            if first != "fwmark" {
                let addr = first.split_once('-').map_or(first, |(a, _)| a);
                if let Err(e) = parse_ip(addr) {
                    cx.error(s.loc, format!("in virtual_server_group {}: {e}", name.text));
                    continue;
                }
            }
            entries.push(RawLine(s.words.iter().map(|w| w.text.clone()).collect()));
        }
        Some(Self {
            name: name.text.clone(),
            origin: Origin(stmt.loc),
            entries,
        })
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.open(&[keyword, self.name.as_str()]);
        for e in &self.entries {
            out.line(&e.0);
        }
        out.close();
    }
}

/// What a `virtual_server` line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAddr {
    /// `virtual_server ADDR PORT`
    Ip { addr: IpAddr, port: u16 },
    /// `virtual_server fwmark N`
    Fwmark(u32),
    /// `virtual_server group NAME`
    Group(String),
}

/// `virtual_server … { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    pub service: ServiceAddr,
    pub origin: Origin,
    pub body: VirtualServerBody,
}

impl Value for VirtualServer {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let args = stmt.args();
        let service = match args.first().map(|w| w.text.as_str()) {
            None => {
                cx.error(
                    stmt.arg_loc(0),
                    "`virtual_server` needs `ADDR PORT`, `fwmark N` or `group NAME`",
                );
                return None;
            }
            Some("fwmark") => match args.get(1).map(|w| w.text.parse::<u32>()) {
                Some(Ok(v)) => ServiceAddr::Fwmark(v),
                Some(Err(_)) => {
                    cx.error(
                        stmt.arg_loc(1),
                        format!("fwmark must be a whole number 0..={}", u32::MAX),
                    );
                    return None;
                }
                None => {
                    cx.error(stmt.arg_loc(1), "`virtual_server fwmark` needs a number");
                    return None;
                }
            },
            Some("group") => {
                let Some(w) = args.get(1) else {
                    cx.error(stmt.arg_loc(1), "`virtual_server group` needs a group name");
                    return None;
                };
                ServiceAddr::Group(w.text.clone())
            }
            Some(_) => {
                let ep = Endpoint::from_words(stmt, args, cx)?;
                let Some(port) = ep.port else {
                    cx.error(stmt.arg_loc(1), "`virtual_server ADDR` needs a port");
                    return None;
                };
                ServiceAddr::Ip {
                    addr: ep.addr,
                    port,
                }
            }
        };
        let Some(block) = &stmt.block else {
            cx.error(stmt.loc, "`virtual_server` needs a `{ … }` block");
            return None;
        };
        Some(Self {
            service,
            origin: Origin(stmt.loc),
            body: VirtualServerBody::read(&block.stmts, cx),
        })
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut w = vec![keyword.to_owned()];
        match &self.service {
            ServiceAddr::Ip { addr, port } => {
                w.push(addr.to_string());
                w.push(port.to_string());
            }
            ServiceAddr::Fwmark(m) => {
                w.push("fwmark".into());
                w.push(m.to_string());
            }
            ServiceAddr::Group(g) => {
                w.push("group".into());
                w.push(g.clone());
            }
        }
        out.open(&w);
        self.body.emit_body(out);
        out.close();
    }
}

section! {
    /// The keywords inside `virtual_server … { }`.
    pub struct VirtualServerBody ("virtual_server") {
        "ip_family" => ip_family: Option<IpFamily>,
        "delay_loop" => delay_loop: Option<Seconds>,
        "retry" => retry: Option<Count>,
        "delay_before_retry" => delay_before_retry: Option<Seconds>,
        "warmup" => warmup: Option<Seconds>,
        "connect_timeout" => connect_timeout: Option<Seconds>,
        "inhibit_on_failure" => inhibit_on_failure: Option<Switch>,
        "lb_algo" => lb_algo: Option<LbAlgo>,
        "hashed" => hashed: bool,
        "ops" => ops: bool,
        "flag-1" => flag_1: bool,
        "flag-2" => flag_2: bool,
        "flag-3" => flag_3: bool,
        "sh-port" => sh_port: bool,
        "sh-fallback" => sh_fallback: bool,
        "mh-port" => mh_port: bool,
        "mh-fallback" => mh_fallback: bool,
        "lb_kind" => lb_kind: Option<Forwarding>,
        "persistence_engine" => persistence_engine: Option<String>,
        "persistence_timeout" => persistence_timeout: Option<PersistenceTimeout>,
        "persistence_granularity" => persistence_granularity: Option<String>,
        "protocol" => protocol: Option<Protocol>,
        "ha_suspend" => ha_suspend: bool,
        "smtp_alert" => smtp_alert: Option<Switch>,
        "virtualhost" => virtualhost: Option<String>,
        "alpha" => alpha: bool,
        "omega" => omega: bool,
        "quorum_up" => quorum_up: Option<Script>,
        "quorum_down" => quorum_down: Option<Script>,
        "quorum" => quorum: Option<Count>,
        "hysteresis" => hysteresis: Option<Count>,
        "weight" => weight: Option<Int<0, 65535>>,
        "sorry_server" => sorry_server: Option<Endpoint>,
        "sorry_server_inhibit" => sorry_server_inhibit: Option<Switch>,
        "sorry_server_lvs_method" => sorry_server_lvs_method: Option<Forwarding>,
        "real_server" => real_servers: Vec<RealServer>,
        /// Extension: this virtual server's data plane.
        "lb_dataplane" => lb_dataplane: Option<Dataplane>,
        /// Extension: NAT also rewrites the client's address to the
        /// director's, so real servers need no route back through it.
        "lb_snat" => lb_snat: Option<Switch>,
        /// Extension: the proxy sends each real server a PROXY protocol
        /// header (v1 or v2) first.
        "proxy_protocol" => proxy_protocol: Option<ProxyProtocol>,
        /// Extension: the most connections (UDP: sessions) the proxy
        /// relays to this virtual server at once (nginx's `max_conns`).
        "max_conns" => max_conns: Option<Count>,
        /// Extension: the proxy ends a connection that moved no byte
        /// either way for this long (nginx's `proxy_timeout`; 0: never).
        "proxy_timeout" => proxy_timeout: Option<Seconds>,
    }
    aliases {
        "lvs_sched" => "lb_algo": "another name of `lb_algo`",
        "lvs_method" => "lb_kind": "another name of `lb_kind`",
        "nb_get_retry" => "retry": "the old name of `retry`",
    }
    unsupported ["snmp_name"]
}

/// `real_server ADDR [PORT] { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub origin: Origin,
    pub body: RealServerBody,
}

impl Value for RealServer {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let ep = Endpoint::from_words(stmt, stmt.args(), cx)?;
        let body = match &stmt.block {
            Some(b) => RealServerBody::read(&b.stmts, cx),
            None => RealServerBody::default(),
        };
        Some(Self {
            addr: ep.addr,
            port: ep.port,
            origin: Origin(stmt.loc),
            body,
        })
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut w = vec![keyword.to_owned(), self.addr.to_string()];
        if let Some(p) = self.port {
            w.push(p.to_string());
        }
        out.open(&w);
        self.body.emit_body(out);
        out.close();
    }
}

section! {
    /// The keywords inside `real_server … { }`.
    pub struct RealServerBody ("real_server") {
        "weight" => weight: Option<Int<0, 65535>>,
        "lvs_method" => lvs_method: Option<Forwarding>,
        "uthreshold" => uthreshold: Option<Count>,
        "lthreshold" => lthreshold: Option<Count>,
        "inhibit_on_failure" => inhibit_on_failure: Option<Switch>,
        "notify_up" => notify_up: Option<Script>,
        "notify_down" => notify_down: Option<Script>,
        "alpha" => alpha: bool,
        "retry" => retry: Option<Count>,
        "delay_before_retry" => delay_before_retry: Option<Seconds>,
        "warmup" => warmup: Option<Seconds>,
        "connect_timeout" => connect_timeout: Option<Seconds>,
        "delay_loop" => delay_loop: Option<Seconds>,
        "smtp_alert" => smtp_alert: Option<Switch>,
        "virtualhost" => virtualhost: Option<String>,
        /// Every checker block, in the order written.
        "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "PING_CHECK" | "UDP_CHECK" | "MISC_CHECK"
            | "DNS_CHECK" | "SMTP_CHECK" | "FILE_CHECK" | "BFD_CHECK" => checkers: Checkers,
        /// Extension: failed proxied connections that take the server out.
        "max_fails" => max_fails: Option<Count>,
        /// Extension: how long it stays out, and the window `max_fails` counts in.
        "fail_timeout" => fail_timeout: Option<Seconds>,
    }
    aliases {
        "nb_get_retry" => "retry": "the old name of `retry`",
    }
    unsupported ["snmp_name"]
    not_planned []
}

/// The checker blocks of a real server: almost always exactly one, kept
/// inline so that 37,000 real servers do not make 37,000 extra allocations.
pub type Checkers = smallvec::SmallVec<[Checker; 1]>;

impl Slot for Checkers {
    fn set(&mut self, stmt: &Stmt, cx: &mut Cx) {
        if let Some(c) = Checker::parse(stmt, cx) {
            self.push(c);
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        for c in self {
            c.emit(keyword, out);
        }
    }
    fn shrink(&mut self) {
        self.shrink_to_fit();
    }
}

/// One checker block of a real server (boxed: checker blocks differ in size,
/// and most real servers have one small one).
#[derive(Debug, Clone, PartialEq)]
pub enum Checker {
    Tcp(Box<TcpCheck>),
    HttpGet(Box<HttpCheck>),
    SslGet(Box<HttpCheck>),
    Ping(Box<PingCheck>),
    Udp(Box<UdpCheck>),
    Misc(Box<MiscCheck>),
    Dns(Box<DnsCheck>),
    Smtp(Box<SmtpCheck>),
    File(Box<FileCheck>),
    Bfd(Box<BfdCheck>),
}

impl Checker {
    /// The block's keyword (`TCP_CHECK`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Checker::Tcp(_) => "TCP_CHECK",
            Checker::HttpGet(_) => "HTTP_GET",
            Checker::SslGet(_) => "SSL_GET",
            Checker::Ping(_) => "PING_CHECK",
            Checker::Udp(_) => "UDP_CHECK",
            Checker::Misc(_) => "MISC_CHECK",
            Checker::Dns(_) => "DNS_CHECK",
            Checker::Smtp(_) => "SMTP_CHECK",
            Checker::File(_) => "FILE_CHECK",
            Checker::Bfd(_) => "BFD_CHECK",
        }
    }
}

impl Value for Checker {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        fn sub<T: Section>(stmt: &Stmt, cx: &mut Cx) -> Option<Box<T>> {
            Sub::<T>::parse(stmt, cx).map(|s| Box::new(s.0))
        }
        Some(match stmt.keyword() {
            "TCP_CHECK" => Checker::Tcp(sub(stmt, cx)?),
            "HTTP_GET" => Checker::HttpGet(sub(stmt, cx)?),
            "SSL_GET" => Checker::SslGet(sub(stmt, cx)?),
            "PING_CHECK" => Checker::Ping(sub(stmt, cx)?),
            "UDP_CHECK" => Checker::Udp(sub(stmt, cx)?),
            "MISC_CHECK" => Checker::Misc(sub(stmt, cx)?),
            "DNS_CHECK" => Checker::Dns(sub(stmt, cx)?),
            "SMTP_CHECK" => Checker::Smtp(sub(stmt, cx)?),
            "FILE_CHECK" => Checker::File(sub(stmt, cx)?),
            "BFD_CHECK" => Checker::Bfd(sub(stmt, cx)?),
            other => {
                cx.error(stmt.loc, format!("`{other}` is not a checker"));
                return None;
            }
        })
    }

    fn emit(&self, _keyword: &str, out: &mut Emitter) {
        let kw = self.keyword();
        match self {
            Checker::Tcp(c) => emit_block(kw, &**c, out),
            Checker::HttpGet(c) | Checker::SslGet(c) => emit_block(kw, &**c, out),
            Checker::Ping(c) => emit_block(kw, &**c, out),
            Checker::Udp(c) => emit_block(kw, &**c, out),
            Checker::Misc(c) => emit_block(kw, &**c, out),
            Checker::Dns(c) => emit_block(kw, &**c, out),
            Checker::Smtp(c) => emit_block(kw, &**c, out),
            Checker::File(c) => emit_block(kw, &**c, out),
            Checker::Bfd(c) => emit_block(kw, &**c, out),
        }
    }
}

section! {
    /// Timing keywords every checker shares.
    pub struct CheckTiming ("checker") {
        "retry" => retry: Option<Count>,
        "delay_before_retry" => delay_before_retry: Option<Seconds>,
        "warmup" => warmup: Option<Seconds>,
        "delay_loop" => delay_loop: Option<Seconds>,
        "alpha" => alpha: bool,
        "log_all_failures" => log_all_failures: Option<Switch>,
    }
    aliases {
        "nb_get_retry" => "retry": "the old name of `retry`",
    }
    unsupported []
}

section! {
    /// Connection keywords the network checkers share.
    pub struct CheckConn ("checker") extends timing: CheckTiming {
        "connect_ip" => connect_ip: Option<IpAddr>,
        "connect_port" => connect_port: Option<Port>,
        "bindto" => bindto: Option<IpAddr>,
        "bind_port" => bind_port: Option<Port>,
        "bind_if" => bind_if: Option<String>,
        "connect_timeout" => connect_timeout: Option<Seconds>,
        "fwmark" => fwmark: Option<Count>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `TCP_CHECK { … }`.
    pub struct TcpCheck ("TCP_CHECK") extends conn: CheckConn {}
    aliases {}
    unsupported []
}

section! {
    /// `PING_CHECK { … }`.
    pub struct PingCheck ("PING_CHECK") extends conn: CheckConn {}
    aliases {}
    unsupported []
}

section! {
    /// `HTTP_GET { … }` and `SSL_GET { … }`.
    pub struct HttpCheck ("HTTP_GET") extends conn: CheckConn {
        "virtualhost" => virtualhost: Option<String>,
        "http_protocol" => http_protocol: Option<Words>,
        "enable_sni" => enable_sni: bool,
        "fast_recovery" => fast_recovery: Option<Switch>,
        "tls_compliant" => tls_compliant: bool,
        "url" => url: Vec<Sub<Url>>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `url { … }` of an HTTP check.
    pub struct Url ("url") {
        "path" => path: Option<String>,
        "digest" => digest: Option<String>,
        "status_code" => status_code: Option<Words>,
        "virtualhost" => virtualhost: Option<String>,
        "regex" => regex: Option<String>,
        "regex_no_match" => regex_no_match: bool,
        "regex_options" => regex_options: Option<Words>,
        "regex_min_offset" => regex_min_offset: Option<Count>,
        "regex_max_offset" => regex_max_offset: Option<Count>,
        "regex_stack" => regex_stack: Option<Words>,
        "tls_compliant" => tls_compliant: bool,
    }
    aliases {}
    unsupported []
}

section! {
    /// `UDP_CHECK { … }`.
    pub struct UdpCheck ("UDP_CHECK") extends conn: CheckConn {
        "payload" => payload: Option<Words>,
        "require_reply" => require_reply: Option<Words>,
        "min_reply_length" => min_reply_length: Option<Count>,
        "max_reply_length" => max_reply_length: Option<Count>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `MISC_CHECK { … }`: a script decides.
    pub struct MiscCheck ("MISC_CHECK") extends timing: CheckTiming {
        "misc_path" => misc_path: Option<Command>,
        "misc_timeout" => misc_timeout: Option<Seconds>,
        "misc_dynamic" => misc_dynamic: bool,
        "user" => user: Option<At<Words>>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `DNS_CHECK { … }`.
    pub struct DnsCheck ("DNS_CHECK") extends conn: CheckConn {
        "type" => query_type: Option<String>,
        "name" => name: Option<String>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `SMTP_CHECK { … }`.
    pub struct SmtpCheck ("SMTP_CHECK") extends conn: CheckConn {
        "helo_name" => helo_name: Option<String>,
        "host" => host: Vec<Sub<CheckConn>>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `FILE_CHECK { … }`: a tracked file sets the weight.
    pub struct FileCheck ("FILE_CHECK") {
        "track_file" => track_file: Option<String>,
        "weight" => weight: Option<TrackWeight>,
    }
    aliases {}
    unsupported []
}

section! {
    /// `BFD_CHECK { … }`.
    pub struct BfdCheck ("BFD_CHECK") {
        "name" => name: Option<String>,
        "alpha" => alpha: bool,
    }
    aliases {}
    unsupported []
}

impl VrrpInstance {
    /// All virtual addresses, across every `virtual_ipaddress` block.
    pub fn vips(&self) -> impl Iterator<Item = &VirtualAddress> {
        self.virtual_ipaddress.iter().flat_map(|l| l.0.iter())
    }

    /// The `virtual_ipaddress_excluded` addresses: added on MASTER like the
    /// VIPs, but not listed in adverts.
    pub fn excluded_vips(&self) -> impl Iterator<Item = &VirtualAddress> {
        self.virtual_ipaddress_excluded
            .iter()
            .flat_map(|l| l.0.iter())
    }
}

impl Config {
    /// `global_defs`, or an empty one.
    pub fn globals(&self) -> GlobalDefs {
        self.global_defs.0.clone().unwrap_or_default()
    }
}
