//! Replays: each file in `tests/replays/` is a story told to one router, one
//! JSON object per line:
//!
//! ```text
//! {"comment": "…"}                                   ignored
//! {"config": {"priority": 90, "version": 2, …}}       first: the router
//! {"at_ms": 0, "input": "start"}                     an input (also "stop", "timer",
//!                                                    {"track": {"weight": -20, "fault": false}})
//! {"at_ms": 2000, "advert": {"src": "198.51.100.40", "priority": 100}}
//!                                                    a received advert (fields default to
//!                                                    the router's; "ttl", "vrid", "version",
//!                                                    "interval", "auth_pass", "addrs",
//!                                                    "bad_checksum" override)
//! {"expect": ["state INIT->BACKUP"]}                 the actions of the last input, exactly
//! {"expect_poll_at_us": 3648437}                     when the router wants the next timer
//! {"expect_state": "MASTER"}
//! {"expect_dropped": {"ttl": 1}}                     drop counters so far
//! {"expect_suspected": true}                         split_brain_suspected now
//! {"expect_counters": {"dual_master_episodes": 1}}   counters so far
//! ```
//!
//! A config may carry the split-brain guard (`"guard": {"heartbeat": [{"local": …,
//! "peers": […]}], "witnesses": true}`); an advert may name its `dst` (a heartbeat
//! path's adverts are unicast to our address there); witnesses are reported as
//! `{"input": {"witness": {"reachable": false}}}`.
//!
//! ```text
//! ```
//!
//! Times may be given as `at_ms` or `at_us`. Next to the golden expectations the
//! runner checks rules taken from the RFC on every step, so a golden file cannot
//! freeze a bug: entering MASTER adds the VIPs, sends an advert and announces;
//! leaving it removes them; a backup never waits longer than Master_Down_Interval.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use vrrp::wire::{PseudoHeader, MULTICAST_V4, MULTICAST_V6};
use vrrp::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayConfig {
    #[serde(default = "d_prio")]
    priority: u8,
    #[serde(default = "d_version")]
    version: u8,
    #[serde(default)]
    advert_ms: Option<u64>,
    #[serde(default = "d_primary")]
    primary: IpAddr,
    #[serde(default = "d_vips")]
    vips: Vec<IpAddr>,
    #[serde(default)]
    peers: Vec<IpAddr>,
    #[serde(default)]
    initial_state: Option<String>,
    #[serde(default = "d_true")]
    preempt: bool,
    #[serde(default)]
    preempt_delay_ms: u64,
    #[serde(default)]
    auth_pass: Option<String>,
    #[serde(default)]
    startup_delay_ms: u64,
    #[serde(default)]
    guard: Option<vrrp::guard::GuardConfig>,
}

fn d_prio() -> u8 {
    100
}
fn d_version() -> u8 {
    2
}
fn d_primary() -> IpAddr {
    "198.51.100.22".parse().unwrap()
}
fn d_vips() -> Vec<IpAddr> {
    vec!["198.51.100.250".parse().unwrap()]
}
fn d_true() -> bool {
    true
}

impl ReplayConfig {
    fn build(self) -> Config {
        let version = if self.version == 3 {
            Version::V3
        } else {
            Version::V2
        };
        Config {
            name: "VI_1".into(),
            vrid: 51,
            version,
            priority: self.priority,
            advert_interval: Duration::from_millis(self.advert_ms.unwrap_or(1000)),
            initial_state: match self.initial_state.as_deref() {
                Some("MASTER") => InitialState::Master,
                _ => InitialState::Backup,
            },
            preempt: self.preempt,
            preempt_delay: Duration::from_millis(self.preempt_delay_ms),
            primary: self.primary,
            vips: self.vips,
            peers: self.peers,
            auth: self.auth_pass.as_deref().map_or(Auth::None, Auth::pass),
            startup_delay: Duration::from_millis(self.startup_delay_ms),
            guard: self.guard,
            ..Config::default()
        }
    }
}

/// One action as a short line of text (a send from another address than
/// `primary`, a heartbeat path's, says `from=`).
fn render(a: &Action, primary: IpAddr) -> String {
    let addrs = |v: &[IpAddr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match a {
        Action::Send {
            src, to, advert, ..
        } => {
            let to = match to {
                Dest::Multicast => "multicast".to_owned(),
                Dest::Unicast(a) => a.to_string(),
            };
            if *src == primary {
                format!("send prio={} to={to}", advert.priority)
            } else {
                format!("send prio={} from={src} to={to}", advert.priority)
            }
        }
        Action::DualMaster { peer, priority } => format!("dual_master {peer} prio={priority}"),
        Action::AddVips(v) => format!("add_vips {}", addrs(v)),
        Action::RemoveVips(v) => format!("remove_vips {}", addrs(v)),
        Action::Announce { addrs: v, repeat } => format!("announce {} x{repeat}", addrs(v)),
        Action::State { from, to } => format!("state {from}->{to}"),
        Action::Priority { priority } => format!("priority {priority}"),
        Action::AddRoutes { routes, rules } => {
            format!("add_routes {} {}", routes.join(";"), rules.join(";"))
        }
        Action::RemoveRoutes { routes, rules } => {
            format!("remove_routes {} {}", routes.join(";"), rules.join(";"))
        }
        Action::Log(line) => format!("log {line}"),
    }
}

fn at(line: &Value) -> Option<Instant> {
    if let Some(us) = line.get("at_us").and_then(Value::as_u64) {
        return Some(Instant::from_micros(us));
    }
    line.get("at_ms")
        .and_then(Value::as_u64)
        .map(Instant::from_millis)
}

fn advert_input(cfg: &Config, spec: &Value) -> Input {
    let get_u = |k: &str| spec.get(k).and_then(Value::as_u64);
    let version = match get_u("version") {
        Some(3) => Version::V3,
        Some(2) => Version::V2,
        _ => cfg.version,
    };
    let src: IpAddr = spec["src"].as_str().unwrap().parse().unwrap();
    let auth = match spec.get("auth_pass").and_then(Value::as_str) {
        Some(p) => Auth::pass(p),
        None => cfg.auth.clone(),
    };
    let addrs = spec.get("addrs").map_or_else(
        || cfg.vips.clone(),
        |a| {
            a.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().parse().unwrap())
                .collect()
        },
    );
    let advert = Advert {
        version,
        vrid: get_u("vrid").map_or(cfg.vrid, |v| u8::try_from(v).unwrap()),
        priority: u8::try_from(get_u("priority").unwrap()).unwrap(),
        interval: get_u("interval").map_or(cfg.wire_interval(), |v| u16::try_from(v).unwrap()),
        auth,
        addrs,
    };
    let dst = match src {
        _ if spec.get("dst").is_some() => spec["dst"].as_str().unwrap().parse().unwrap(),
        IpAddr::V4(_) if cfg.peers.is_empty() => IpAddr::V4(MULTICAST_V4),
        IpAddr::V6(_) if cfg.peers.is_empty() => IpAddr::V6(MULTICAST_V6),
        _ => cfg.primary,
    };
    let mut bytes = advert.emit(Some(PseudoHeader { src, dst }));
    if spec.get("bad_checksum").and_then(Value::as_bool) == Some(true) {
        bytes[6] ^= 0x5a;
    }
    let ttl = get_u("ttl").map_or(255, |t| u8::try_from(t).unwrap());
    Input::Packet {
        src,
        dst,
        ttl,
        bytes,
    }
}

/// `ttl`, `vrid`, … and `wire_checksum` for wire errors.
fn drop_name(d: Drop) -> String {
    match serde_json::to_value(d).unwrap() {
        Value::String(s) => s,
        Value::Object(m) => {
            let (k, v) = m.iter().next().unwrap();
            format!("{k}_{}", v.as_str().unwrap_or("?"))
        }
        other => other.to_string(),
    }
}

/// RFC rules checked after every input, whatever the golden lines say.
fn check_rules(r: &Router, now: Instant, before: StateName, actions: &[Action], where_: &str) {
    let has = |f: &dyn Fn(&Action) -> bool| actions.iter().any(f);
    if before != StateName::Master && r.state() == StateName::Master {
        assert!(
            has(&|a| matches!(a, Action::AddVips(_))),
            "{where_}: MASTER without adding the VIPs"
        );
        assert!(
            has(&|a| matches!(a, Action::Send { .. })),
            "{where_}: MASTER without an advert"
        );
        assert!(
            has(&|a| matches!(a, Action::Announce { .. })),
            "{where_}: MASTER without GARP/NA"
        );
    }
    if before == StateName::Master && r.state() != StateName::Master {
        assert!(
            has(&|a| matches!(a, Action::RemoveVips(_))),
            "{where_}: left MASTER keeping the VIPs"
        );
    }
    if r.state() == StateName::Backup {
        let due = r.poll_at().unwrap();
        assert!(
            due <= now + r.master_down_interval(),
            "{where_}: backup waits past Master_Down_Interval"
        );
    }
    for a in actions {
        if let Action::Send { advert, .. } = a {
            assert!(
                advert.priority == r.priority() || advert.priority == 0,
                "{where_}: advert with a stale priority"
            );
        }
    }
}

fn run(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut router: Option<Router> = None;
    let mut last: Vec<Action> = Vec::new();
    let mut now = Instant::ZERO;
    let mut checks = 0;
    for (n, raw) in text.lines().enumerate() {
        let where_ = format!("{name}:{}", n + 1);
        if raw.trim().is_empty() {
            continue;
        }
        let line: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{where_}: {e}"));
        if line.get("comment").is_some() {
            continue;
        }
        if let Some(c) = line.get("config") {
            let rc: ReplayConfig =
                serde_json::from_value(c.clone()).unwrap_or_else(|e| panic!("{where_}: {e}"));
            router = Some(Router::new(rc.build()));
            // A new router: a new story, its clock from zero.
            now = Instant::ZERO;
            continue;
        }
        let r = router
            .as_mut()
            .unwrap_or_else(|| panic!("{where_}: no config line yet"));
        if let Some(t) = at(&line) {
            assert!(t >= now, "{where_}: time goes backwards");
            now = t;
            let input = if let Some(spec) = line.get("advert") {
                advert_input(r.config(), spec)
            } else {
                serde_json::from_value(line["input"].clone())
                    .unwrap_or_else(|e| panic!("{where_}: {e}"))
            };
            let before = r.state();
            last = r.handle(now, input);
            check_rules(r, now, before, &last, &where_);
        } else if let Some(e) = line.get("expect") {
            let want: Vec<String> = serde_json::from_value(e.clone()).unwrap();
            let primary = r.config().primary;
            let got: Vec<String> = last.iter().map(|a| render(a, primary)).collect();
            assert_eq!(got, want, "{where_}");
            checks += 1;
        } else if let Some(p) = line.get("expect_poll_at_us") {
            assert_eq!(r.poll_at().map(Instant::as_micros), p.as_u64(), "{where_}");
            checks += 1;
        } else if let Some(s) = line.get("expect_state") {
            assert_eq!(r.state().to_string(), s.as_str().unwrap(), "{where_}");
            checks += 1;
        } else if let Some(v) = line.get("expect_suspected") {
            assert_eq!(
                Some(r.split_brain_suspected(now)),
                v.as_bool(),
                "{where_}: split_brain_suspected"
            );
            checks += 1;
        } else if let Some(c) = line.get("expect_counters") {
            let got = r.counters();
            for (k, v) in c.as_object().unwrap() {
                let have = match k.as_str() {
                    "dual_master_adverts" => got.dual_master_adverts,
                    "dual_master_episodes" => got.dual_master_episodes,
                    "guard_faults" => got.guard_faults,
                    "received" => got.received,
                    "became_master" => got.became_master,
                    other => panic!("{where_}: no counter {other}"),
                };
                assert_eq!(Some(have), v.as_u64(), "{where_}: {k}");
            }
            checks += 1;
        } else if let Some(d) = line.get("expect_dropped") {
            let want: BTreeMap<String, u64> = serde_json::from_value(d.clone()).unwrap();
            let got: BTreeMap<String, u64> = r
                .counters()
                .dropped
                .iter()
                .map(|(k, v)| (drop_name(*k), *v))
                .collect();
            assert_eq!(got, want, "{where_}");
            checks += 1;
        } else {
            panic!("{where_}: unknown line {raw}");
        }
    }
    assert!(checks > 0, "{name} checks nothing");
    checks
}

#[test]
fn every_replay_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replays");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "only {} replays", files.len());
    let mut total = 0;
    for f in &files {
        total += run(f);
    }
    assert!(total >= 50, "only {total} checks across all replays");
}
