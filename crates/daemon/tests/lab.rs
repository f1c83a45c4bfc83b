//! `keepalived-rs lab` end to end: both web answers reach the client, and no
//! namespace survives the run — neither a normal end nor Ctrl-C in the middle.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keepalived-rs");

fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("{}{pid}-", netlab::NAME_PREFIX);
    netlab::cmd::list_namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn lab_prints_both_web_answers_and_leaves_no_namespace() {
    if !netlab::privileged("lab_prints_both_web_answers_and_leaves_no_namespace") {
        return;
    }
    let child = Command::new(BIN)
        .arg("lab")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keepalived-rs lab");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lab failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (addr, body) in [
        ("198.51.100.50:80", "this is yy web!"),
        ("198.51.100.51:80", "this is cc web!"),
        ("[2001:db8:100::50]:80", "this is yy web!"),
        ("[2001:db8:100::51]:80", "this is cc web!"),
    ] {
        let line = format!("client: curl http://{addr}/ -> 200 \"{body}\"");
        assert!(stdout.contains(&line), "missing `{line}` in:\n{stdout}");
    }
    // The seed's LVS-DR experiment, step by step.
    for line in [
        "lb1 holds the VIP 198.51.100.250",
        "(rr alternates;",
        "only web2 answers",
        "alternation resumes",
        "lb2 holds the VIP",
        "lvs-dr: every step behaved",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("all namespaces removed"), "{stdout}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn ctrl_c_in_the_middle_of_the_lab_leaves_no_namespace() {
    if !netlab::privileged("ctrl_c_in_the_middle_of_the_lab_leaves_no_namespace") {
        return;
    }
    let mut child = Command::new(BIN)
        .args(["lab", "--hold", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run keepalived-rs lab");
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let start = Instant::now();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "lab ended early:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("holding the lab") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "lab never reached its hold:\n{seen}"
        );
    }
    assert_eq!(
        namespaces_of(pid).len(),
        7,
        "switch + six hosts while running:\n{seen}"
    );
    #[allow(clippy::cast_possible_wrap)]
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    stdout.read_to_string(&mut seen).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn two_labs_run_side_by_side_without_clashing() {
    if !netlab::privileged("two_labs_run_side_by_side_without_clashing") {
        return;
    }
    let spawn = || {
        Command::new(BIN)
            .arg("lab")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run keepalived-rs lab")
    };
    let (a, b) = (spawn(), spawn());
    let (pa, pb) = (a.id(), b.id());
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(namespaces_of(pa), Vec::<String>::new());
    assert_eq!(namespaces_of(pb), Vec::<String>::new());
}

#[test]
fn ctrl_c_to_the_whole_process_group_while_building_leaves_no_namespace() {
    if !netlab::privileged("ctrl_c_to_the_whole_process_group_while_building_leaves_no_namespace") {
        return;
    }
    // A terminal's Ctrl-C reaches the lab and every `ip` it runs at that moment.
    let mut child = Command::new(BIN)
        .args(["lab", "--hold", "60"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run keepalived-rs lab");
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap(); // "keepalived-rs lab: scenario …": building starts
    std::thread::sleep(Duration::from_millis(40));
    #[allow(clippy::cast_possible_wrap)]
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{first}{rest}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn lab_proxy_runs_the_seeds_nginx_stream_experiment_with_our_proxy() {
    if !netlab::privileged("lab_proxy_runs_the_seeds_nginx_stream_experiment_with_our_proxy") {
        return;
    }
    let out = Command::new(BIN)
        .args(["lab", "proxy"])
        .output()
        .expect("run keepalived-rs lab proxy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lab proxy failed:\n{stdout}");
    for line in [
        "client: curl http://198.51.100.250:9527/ × 6 -> yy cc yy cc yy cc",
        "only web2 answers",
        "alternation resumes",
        "lb1's proxy check fails",
        "lb2 holds the VIP",
        "proxy: every step behaved",
        "all namespaces removed",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}

#[test]
fn lab_split_brain_keeps_one_master_where_keepalived_makes_two() {
    if !netlab::privileged("lab_split_brain_keeps_one_master_where_keepalived_makes_two") {
        return;
    }
    let out = Command::new(BIN)
        .args(["lab", "split-brain"])
        .output()
        .expect("run keepalived-rs lab split-brain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lab split-brain failed:\n{stdout}");
    for line in [
        "heartbeat switch sw1",
        "3 s later the VIP is on lb1 (",
        "lb1 reached no witness and gave the VIP up; lb2 alone holds it",
        "one master again: lb1",
        "split-brain: every step behaved",
        "all namespaces removed",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}
