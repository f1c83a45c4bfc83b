//! The health model without root, sockets or checkers: a plan built from
//! configuration text, fed checker events, read back through `status`,
//! the data plane's view and the notifications it sends.

use std::fmt::Write as _;

use super::*;
use check::reason::Reason;
use check::run::Event;
use check::state::Transition;

fn plan(text: &str) -> (Plan, std::sync::mpsc::Receiver<crate::notify::Job>) {
    let loaded = kaconf::parse_str(
        std::path::Path::new("t.conf"),
        text,
        &kaconf::Options::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.rendered());
    let mut p = Plan::new(&loaded.config);
    let (tx, rx) = std::sync::mpsc::channel();
    p.notify = Some(tx);
    (p, rx)
}

/// A virtual server of `reals` (address last byte, weight, extra keywords),
/// each with one TCP_CHECK, and `extra` keywords of its own.
fn vs(extra: &str, reals: &[(u8, u32, &str)]) -> String {
    let mut c = format!("virtual_server 198.51.100.250 80 {{\n protocol TCP\n lb_algo rr\n{extra}");
    for (last, weight, more) in reals {
        let _ = write!(
            c,
            " real_server 198.51.100.{last} 80 {{\n weight {weight}\n{more} TCP_CHECK {{\n connect_timeout 1\n }}\n }}\n"
        );
    }
    c.push_str("}\n");
    c
}

fn down(id: usize) -> Event {
    Event::State {
        id,
        transition: Transition::Down,
        reason: Some(Reason::Refused),
    }
}

fn up(id: usize) -> Event {
    Event::State {
        id,
        transition: Transition::Up,
        reason: None,
    }
}

fn healthy(p: &Plan) -> Vec<bool> {
    p.status[0].real_servers.iter().map(|r| r.healthy).collect()
}

fn jobs(rx: &std::sync::mpsc::Receiver<crate::notify::Job>) -> Vec<String> {
    rx.try_iter()
        .map(|j| match j {
            crate::notify::Job::Fifo(_, line) => line.trim_end().to_owned(),
            crate::notify::Job::Run(s) => format!("run {}", s.argv.join(" ")),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_server_is_down_while_one_of_its_checkers_is() {
    let text = "virtual_server 198.51.100.250 80 {\n protocol TCP\n real_server 198.51.100.50 80 {\n TCP_CHECK {\n connect_port 80\n }\n HTTP_GET {\n url {\n path /\n }\n }\n }\n}\n";
    let (mut p, _rx) = plan(text);
    assert_eq!(healthy(&p), [true]);
    assert!(p.event(down(0)));
    assert_eq!(healthy(&p), [false]);
    // The second checker failing too: still down, nothing new but the reason.
    p.event(down(1));
    // One of two passing is not enough (the reason now names the other).
    p.event(up(0));
    assert_eq!(healthy(&p), [false], "one of two passing is not enough");
    assert_eq!(
        p.status[0].real_servers[0].reason.as_deref(),
        Some("HTTP_GET: connection refused")
    );
    assert_eq!(p.status[0].real_servers[0].reason_kind, Some("refused"));
    assert!(p.event(up(1)));
    assert_eq!(healthy(&p), [true]);
    assert_eq!(p.status[0].real_servers[0].reason, None);
    assert_eq!(p.status[0].real_servers[0].reason_kind, None);
}

#[test]
fn quorum_with_hysteresis_and_the_sorry_server() {
    // Weights 1+2+3 = 6; quorum 4, hysteresis 1: lost below 3, back at 5.
    let (mut p, rx) = plan(&vs(
        " quorum 4\n hysteresis 1\n sorry_server 198.51.100.60 80\n",
        &[(50, 1, ""), (51, 2, ""), (52, 3, "")],
    ));
    assert!(p.status[0].quorum_up);
    p.event(down(0)); // 5 live
    p.event(down(1)); // 3 live: still ≥ 4 − 1
    assert!(p.status[0].quorum_up);
    assert!(!p.status[0].sorry_server_active);
    p.event(down(2)); // 0 live
    assert!(!p.status[0].quorum_up);
    assert!(p.status[0].sorry_server_active);
    assert!(
        !p.view()[0].quorum_up,
        "the data plane serves the sorry server"
    );
    p.event(up(1)); // 2 live: not back (needs 4 + 1)
    assert!(!p.status[0].quorum_up);
    p.event(up(2)); // 5 live
    assert!(p.status[0].quorum_up);
    assert!(!p.status[0].sorry_server_active);
    let lines = jobs(&rx);
    assert!(
        lines.contains(&"VS [198.51.100.250]:tcp:80 DOWN".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"VS [198.51.100.250]:tcp:80 UP".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn weights_follow_misc_dynamic_and_file_check_offsets() {
    let (mut p, _rx) = plan(&vs("", &[(50, 10, "")]));
    assert_eq!(p.status[0].real_servers[0].weight, 10);
    // misc_dynamic replaces the weight; FILE_CHECK adds to it.
    assert!(p.event(Event::Weight {
        id: 0,
        weight: Some(3)
    }));
    assert_eq!(p.status[0].real_servers[0].weight, 3);
    p.event(Event::Offset { id: 0, delta: 5 });
    assert_eq!(p.status[0].real_servers[0].weight, 8);
    p.event(Event::Offset { id: 0, delta: -100 });
    assert_eq!(p.status[0].real_servers[0].weight, 0, "never below 0");
    p.event(Event::Offset { id: 0, delta: 0 });
    p.event(Event::Weight {
        id: 0,
        weight: None,
    });
    assert_eq!(
        p.status[0].real_servers[0].weight, 10,
        "back to the configured weight"
    );
}

#[test]
fn inhibit_on_failure_keeps_a_down_server_at_weight_zero() {
    let (mut p, _rx) = plan(&vs("", &[(50, 2, " inhibit_on_failure\n"), (51, 2, "")]));
    p.event(down(0));
    p.event(down(1));
    let view = &p.view()[0];
    let (a, b) = (&view.reals[0], &view.reals[1]);
    assert!(
        !a.healthy && a.inhibit,
        "inhibited: stays, at weight 0 in the plane"
    );
    assert!(!b.healthy && !b.inhibit, "not inhibited: leaves the plane");
}

#[test]
fn alpha_servers_start_down_and_omega_says_goodbye() {
    let (mut p, rx) = plan(&vs(" alpha\n omega\n", &[(50, 1, ""), (51, 1, "")]));
    assert_eq!(
        healthy(&p),
        [false, false],
        "alpha: down until a check passes"
    );
    assert_eq!(
        p.status[0].real_servers[0].reason.as_deref(),
        Some("not passed yet (alpha)")
    );
    assert!(p.event(up(0)));
    assert!(p.event(up(1)));
    assert_eq!(healthy(&p), [true, true]);
    let _ = jobs(&rx);
    p.shutdown();
    let lines = jobs(&rx);
    // omega: each live server and the virtual server go DOWN at shutdown.
    for want in [
        "RS [198.51.100.50]:tcp:80 [198.51.100.250]:tcp:80 DOWN",
        "RS [198.51.100.51]:tcp:80 [198.51.100.250]:tcp:80 DOWN",
        "VS [198.51.100.250]:tcp:80 DOWN",
    ] {
        assert!(lines.iter().any(|l| l == want), "no `{want}` in {lines:?}");
    }
}

#[test]
fn without_omega_shutdown_notifies_nothing() {
    let (p, rx) = plan(&vs("", &[(50, 1, "")]));
    p.shutdown();
    assert_eq!(jobs(&rx), Vec::<String>::new());
}

#[test]
fn a_reload_carries_verdicts_weights_and_quorum_over() {
    // Weights 1 + 2, quorum 3: one server down loses it.
    let text = vs(" quorum 3\n", &[(50, 1, ""), (51, 2, "")]);
    let (mut old, _rx) = plan(&text);
    old.event(down(1));
    assert!(!old.status[0].quorum_up);
    old.event(Event::Weight {
        id: 0,
        weight: Some(2),
    });
    assert!(!old.status[0].quorum_up, "2 < 3: still lost");
    // The same servers, a changed scheduler.
    let (mut new, rx) = plan(&text.replace("lb_algo rr", "lb_algo wlc"));
    assert_eq!(new.adopt(&old), 2, "both checkers kept");
    assert_eq!(healthy(&new), [true, false]);
    assert_eq!(
        new.status[0].real_servers[0].weight, 2,
        "the dynamic weight stays"
    );
    assert_eq!(
        new.status[0].real_servers[1].reason.as_deref(),
        Some("TCP_CHECK: connection refused")
    );
    assert!(!new.status[0].quorum_up, "the lost quorum stays lost");
    // Nothing is notified by the reload itself.
    assert_eq!(jobs(&rx), Vec::<String>::new());
    // And the next real change is: the server back, quorum regained.
    new.event(up(1));
    assert!(new.status[0].quorum_up);
    assert!(jobs(&rx).contains(&"VS [198.51.100.250]:tcp:80 UP".to_owned()));
}
