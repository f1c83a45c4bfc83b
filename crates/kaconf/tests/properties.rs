//! Property tests: any text reads without a panic, and a generated model
//! written as text reads back to the same model with no errors.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use kaconf::model::*;
use kaconf::section::{Named, Origin, Sub};
use kaconf::value::{At, Command, Flag, Int, Lines, Prefix, Script, Seconds, Switch, Words};
use proptest::prelude::*;

fn opts() -> kaconf::Options {
    kaconf::Options::default()
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_.-]{0,10}"
}

fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_./:@-]{1,12}".prop_filter("not a comment or directive", |w| {
        !w.starts_with('@') && !w.starts_with("include")
    })
}

fn secs() -> impl Strategy<Value = Seconds> {
    (0u64..100_000, prop_oneof![Just(0u32), 0u32..1_000_000])
        .prop_map(|(s, us)| Seconds::new(Duration::new(s, us * 1000)))
}

fn ipv4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        ipv4(),
        any::<[u16; 8]>().prop_map(|g| IpAddr::V6(Ipv6Addr::from(g)))
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop::collection::vec(prop_oneof![word(), "[a-z]{1,4} [a-z]{1,4}"], 1..4)
        .prop_map(|v| Command(v.into_boxed_slice()))
}

/// A notify script: a command, maybe with a user and a group.
fn notify_script() -> impl Strategy<Value = Script> {
    (
        command(),
        prop::option::of(("[a-z]{1,8}", prop::option::of("[a-z]{1,8}"))),
    )
        .prop_map(|(command, user)| Script {
            command,
            user: user.as_ref().map(|(u, _)| u.clone()),
            group: user.and_then(|(_, g)| g),
            origin: Origin::default(),
        })
}

fn switch() -> impl Strategy<Value = Switch> {
    any::<bool>().prop_map(Switch)
}

fn weight() -> impl Strategy<Value = TrackWeight> {
    (-253i64..=253, any::<bool>()).prop_map(|(weight, reverse)| TrackWeight { weight, reverse })
}

fn at<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = At<T>> {
    s.prop_map(|value| At {
        value,
        origin: Origin::default(),
    })
}

fn vip() -> impl Strategy<Value = VirtualAddress> {
    (
        ipv4(),
        prop::option::of(0u8..=32),
        prop::option::of(name()),
        prop::option::of(prop::sample::select(vec![
            "global", "site", "link", "host", "nowhere",
        ])),
        prop::option::of(name()),
        prop::sample::subsequence(vec!["home", "-nodad", "noprefixroute", "no_track"], 0..3),
    )
        .prop_map(|(addr, len, dev, scope, label, flags)| VirtualAddress {
            addr: Prefix { addr, len },
            brd: None,
            dev,
            scope: scope.map(str::to_owned),
            label,
            peer: None,
            preferred_lft: None,
            flags: flags.into_iter().map(str::to_owned).collect(),
            origin: Origin::default(),
        })
}

fn track_ref() -> impl Strategy<Value = TrackRef> {
    (name(), prop::option::of(weight())).prop_map(|(name, weight)| TrackRef {
        name,
        weight,
        origin: Origin::default(),
    })
}

fn script() -> impl Strategy<Value = VrrpScript> {
    (
        prop::option::of(command()),
        prop::option::of(secs()),
        prop::option::of(weight()),
        prop::option::of((1i64..100).prop_map(|v| Int::new(v).unwrap())),
        prop::option::of((1i64..100).prop_map(|v| Int::new(v).unwrap())),
        any::<bool>(),
    )
        .prop_map(
            |(script, interval, weight, rise, fall, init_fail)| VrrpScript {
                script,
                interval,
                weight,
                rise,
                fall,
                init_fail,
                ..VrrpScript::default()
            },
        )
}

/// An instance that validates: it has a VRID and an advert_int its version allows.
fn instance() -> impl Strategy<Value = VrrpInstance> {
    let timing = prop_oneof![
        (1u64..=255).prop_map(|s| (2i64, Seconds::new(Duration::from_secs(s)))),
        (1u64..=4095).prop_map(|cs| (3i64, Seconds::new(Duration::from_millis(cs * 10)))),
    ];
    (
        (
            prop::option::of(at(prop::sample::select(vec![
                InitialState::Master,
                InitialState::Backup,
            ]))),
            at(name()),
            (1i64..=255).prop_map(|v| Int::new(v).unwrap()),
            prop::option::of(at((1i64..=254).prop_map(|v| Int::new(v).unwrap()))),
            timing,
            prop::collection::vec(vip(), 0..4),
            prop::option::of(prop::collection::vec(track_ref(), 0..3)),
        ),
        (
            any::<bool>(),
            prop::option::of(secs()),
            prop::option::of(notify_script()),
            prop::option::of(switch()),
            prop::option::of(prop::collection::vec(ipv4(), 1..3)),
            prop::option::of(("[A-Za-z0-9]{1,8}", any::<bool>())),
            prop::option::of(ipv4()),
        ),
    )
        .prop_map(|(a, b)| {
            let (state, interface, vrid, priority, (version, adv), vips, tracks) = a;
            let (preempt, preempt_delay, notify, smtp_alert, peers, auth, src) = b;
            VrrpInstance {
                state,
                interface: Some(interface),
                virtual_router_id: Some(vrid),
                priority,
                version: Some(At {
                    value: Int::new(version).unwrap(),
                    origin: Origin::default(),
                }),
                advert_int: Some(At {
                    value: adv,
                    origin: Origin::default(),
                }),
                virtual_ipaddress: if vips.is_empty() {
                    vec![]
                } else {
                    vec![Lines(vips)]
                },
                track_script: tracks.map(Lines),
                nopreempt: (!preempt && state.is_none())
                    .then_some(At::default())
                    .map(|a: At<Flag>| a),
                preempt,
                preempt_delay,
                notify_master: notify,
                smtp_alert,
                unicast_peer: peers.map(|p| {
                    Lines(
                        p.into_iter()
                            .map(|addr| UnicastPeer {
                                addr,
                                options: vec![],
                            })
                            .collect(),
                    )
                }),
                authentication: auth.filter(|_| version == 2).map(|(pass, ah)| At {
                    value: Sub(Authentication {
                        auth_type: Some(if ah { AuthType::Ah } else { AuthType::Pass }),
                        auth_pass: Some(pass),
                        ..Authentication::default()
                    }),
                    origin: Origin::default(),
                }),
                unicast_src_ip: src,
                ..VrrpInstance::default()
            }
        })
}

fn conn() -> impl Strategy<Value = CheckConn> {
    (
        prop::option::of((0i64..=65535).prop_map(|v| Int::new(v).unwrap())),
        prop::option::of(secs()),
        prop::option::of((0i64..10).prop_map(|v| Int::new(v).unwrap())),
        prop::option::of(secs()),
        prop::option::of(ip()),
    )
        .prop_map(|(port, timeout, retry, delay, bindto)| CheckConn {
            timing: CheckTiming {
                retry,
                delay_before_retry: delay,
                ..CheckTiming::default()
            },
            connect_port: port,
            connect_timeout: timeout,
            bindto,
            ..CheckConn::default()
        })
}

fn real_server() -> impl Strategy<Value = RealServer> {
    (
        ipv4(),
        prop::option::of(0u16..=65535),
        prop::option::of((0i64..=65535).prop_map(|v| Int::new(v).unwrap())),
        prop::collection::vec(conn(), 0..2),
        prop::option::of(("/[a-z]{0,8}", prop::option::of("[1-5][0-9][0-9]"))),
        prop::option::of(command()),
        prop::option::of((1i64..10).prop_map(|v| Int::new(v).unwrap())),
    )
        .prop_map(
            |(addr, port, weight, tcp, http, misc, max_fails)| RealServer {
                addr,
                port,
                origin: Origin::default(),
                body: RealServerBody {
                    weight,
                    checkers: tcp
                        .into_iter()
                        .map(|conn| {
                            Checker::Tcp(Box::new(TcpCheck {
                                conn,
                                ..TcpCheck::default()
                            }))
                        })
                        .chain(http.map(|(path, code)| {
                            Checker::HttpGet(Box::new(HttpCheck {
                                url: vec![Sub(Url {
                                    path: Some(path),
                                    status_code: code.map(|c| Words(vec![c])),
                                    ..Url::default()
                                })],
                                ..HttpCheck::default()
                            }))
                        }))
                        .chain(misc.map(|m| {
                            Checker::Misc(Box::new(MiscCheck {
                                misc_path: Some(m),
                                ..MiscCheck::default()
                            }))
                        }))
                        .collect::<Checkers>(),
                    max_fails,
                    ..RealServerBody::default()
                },
            },
        )
}

fn virtual_server() -> impl Strategy<Value = VirtualServer> {
    (
        ip(),
        any::<u16>(),
        prop::option::of(prop::sample::select(LbAlgo::ALL.to_vec())),
        prop::option::of(prop::sample::select(LbKind::ALL.to_vec()).prop_map(Forwarding::from)),
        prop::option::of(prop::sample::select(Protocol::ALL.to_vec())),
        prop::option::of(secs()),
        prop::option::of((1u32..100_000).prop_map(PersistenceTimeout)),
        prop::collection::vec(real_server(), 0..4),
        prop::option::of(prop::sample::select(Dataplane::ALL.to_vec())),
    )
        .prop_map(
            |(addr, port, algo, kind, proto, delay, persist, rss, dp)| VirtualServer {
                service: ServiceAddr::Ip { addr, port },
                origin: Origin::default(),
                body: VirtualServerBody {
                    lb_algo: algo,
                    lb_kind: kind,
                    protocol: proto,
                    delay_loop: delay,
                    persistence_timeout: persist,
                    real_servers: rss,
                    lb_dataplane: dp,
                    ..VirtualServerBody::default()
                },
            },
        )
}

fn globals() -> impl Strategy<Value = GlobalDefs> {
    (
        prop::option::of(name()),
        prop::option::of(prop::collection::vec(word(), 1..3)),
        prop::option::of(secs()),
        any::<bool>(),
        prop::option::of(prop::sample::select(Dataplane::ALL.to_vec())),
    )
        .prop_map(|(router_id, smtp, timeout, strict, dp)| GlobalDefs {
            router_id,
            smtp_server: smtp.map(Words),
            smtp_connect_timeout: timeout,
            vrrp_strict: strict,
            lb_dataplane: dp,
            ..GlobalDefs::default()
        })
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop::option::of(globals()),
        prop::collection::vec(script(), 0..3),
        prop::collection::vec(instance(), 0..4),
        prop::collection::vec(virtual_server(), 0..3),
    )
        .prop_map(|(g, scripts, instances, vss)| Config {
            global_defs: Merged(g),
            vrrp_scripts: scripts
                .into_iter()
                .enumerate()
                .map(|(i, body)| Named {
                    name: format!("chk_{i}"),
                    origin: Origin::default(),
                    body,
                })
                .collect(),
            instances: instances
                .into_iter()
                .enumerate()
                .map(|(i, body)| Named {
                    name: format!("VI_{i}"),
                    origin: Origin::default(),
                    body,
                })
                .collect(),
            virtual_servers: vss,
            ..Config::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_configs_round_trip(config in config()) {
        let text = kaconf::to_text(&config);
        let loaded = kaconf::parse_str(Path::new("gen.conf"), &text, &opts());
        let errors: Vec<String> = loaded
            .rendered()
            .into_iter()
            .filter(|l| l.contains(": error: "))
            .collect();
        prop_assert!(errors.is_empty(), "{errors:?}\n{text}");
        prop_assert_eq!(&loaded.config, &config, "\n{}", text);
    }

    #[test]
    fn any_text_reads_without_panicking(text in "\\PC{0,400}") {
        let _ = kaconf::parse_str(Path::new("any.conf"), &text, &opts());
    }

    #[test]
    fn config_like_text_reads_without_panicking(
        text in "([a-z_]{1,12}|[{}\"#!$@~()=,\\\\]|[0-9./:-]{1,8}|~SEQ\\(|\\$\\{|include | |\t|\n){0,120}"
    ) {
        let loaded = kaconf::parse_str(Path::new("any.conf"), &text, &opts());
        // Whatever was read can be written and read again without a panic.
        let again = kaconf::to_text(&loaded.config);
        let _ = kaconf::parse_str(Path::new("again.conf"), &again, &opts());
    }
}
