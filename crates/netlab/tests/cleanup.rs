//! Whatever happens inside a lab — a panic, a panic in another process, a
//! SIGKILL — no namespace and no process of it outlives it.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use netlab::Lab;

const CHILD_ENV: &str = "NETLAB_CLEANUP_CHILD";

fn namespaces_with(prefix: &str) -> Vec<String> {
    netlab::cmd::list_namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn process_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show "Z".
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

/// Builds a lab with a running process and reports both on stdout.
fn build_and_report() -> (Lab, netlab::Process) {
    let lab = Lab::star(&[("a", &["198.51.100.30/24"]), ("b", &["198.51.100.31/24"])])
        .expect("build lab");
    let sleeper = lab
        .node("a")
        .unwrap()
        .spawn("sleep", &["300"])
        .expect("spawn sleep");
    println!("PREFIX {} PID {}", lab.prefix(), sleeper.pid());
    (lab, sleeper)
}

#[test]
fn panic_inside_a_lab_leaves_no_namespace_and_no_process() {
    if !netlab::privileged("panic_inside_a_lab_leaves_no_namespace_and_no_process") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let (lab, sleeper) = build_and_report();
        tx.send((lab.prefix().to_owned(), sleeper.pid())).unwrap();
        assert_eq!(namespaces_with(lab.prefix()).len(), 3, "switch + two hosts");
        panic!("on purpose, with a lab and a process alive");
    })
    .join();
    assert!(result.is_err(), "the thread was meant to panic");
    let (prefix, pid) = rx.recv().unwrap();
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    assert!(!process_alive(pid), "process {pid} outlived its lab");
}

/// Not a test on its own: the body the parent tests below run in a child
/// process (`--ignored --exact child_body`), so a plain run skips it.
#[test]
#[ignore = "run only as the child of the tests below"]
fn child_body() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("panic") => {
            let (_lab, _sleeper) = build_and_report();
            panic!("child panics on purpose");
        }
        Ok("hang") => {
            let (_lab, _sleeper) = build_and_report();
            std::thread::sleep(Duration::from_secs(300));
        }
        _ => {}
    }
}

fn run_child(mode: &str) -> (std::process::Child, String, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_body",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-run the test binary");
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // The harness prints "test child_body ... " before our line.
        if let Some(rest) = line.split_once("PREFIX ").map(|(_, r)| r) {
            let (prefix, pid) = rest.split_once(" PID ").unwrap();
            return (child, prefix.to_owned(), pid.parse().unwrap());
        }
    }
    panic!("child exited without building its lab: {:?}", child.wait());
}

#[test]
fn panicking_process_leaves_no_namespace_behind() {
    if !netlab::privileged("panicking_process_leaves_no_namespace_behind") {
        return;
    }
    let (mut child, prefix, pid) = run_child("panic");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was meant to fail");
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    assert!(!process_alive(pid));
}

#[test]
fn namespaces_of_a_killed_process_are_swept_by_the_next_lab() {
    if !netlab::privileged("namespaces_of_a_killed_process_are_swept_by_the_next_lab") {
        return;
    }
    let (mut child, prefix, pid) = run_child("hang");
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_eq!(
        namespaces_with(&prefix).len(),
        3,
        "SIGKILL leaves them behind"
    );
    let _next = Lab::new().unwrap();
    assert_eq!(
        namespaces_with(&prefix),
        Vec::<String>::new(),
        "sweep missed them"
    );
    assert!(
        !process_alive(pid),
        "process inside a swept namespace survived"
    );
    assert!(!Path::new(&format!("/run/netns/{prefix}a")).exists());
}
