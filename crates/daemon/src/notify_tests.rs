//! Tests of the notifier (`notify.rs`).

use super::*;

/// `on_dual_master` (a `Job::Once`): while one run is going, a second
/// episode starts nothing; it goes through the script policy (an
/// unknown user runs nothing, never as root).
#[test]
fn a_once_script_runs_one_at_a_time_and_through_the_policy() {
    let dir = std::env::temp_dir().join(format!("krs-once-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("runs");
    let script = Script {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo run >> {}; sleep 1", out.display()),
        ],
        user: None,
    };
    let policy = Policy::from_globals(&kaconf::model::GlobalDefs::default());
    let running: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::Arc::default();
    let timeout = Duration::from_secs(5);
    let episode = |script: Script| once(&running, "VI_1 dual".into(), script, timeout, &policy);
    // Waits (at most 10 s: a loaded machine) until no run is going.
    let ended = || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running.lock().is_ok_and(|r| !r.is_empty()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    episode(script.clone());
    // Still running (its key is taken before it starts): not again.
    episode(script.clone());
    ended();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "run\n");
    // Ended: the next episode runs it again.
    episode(script.clone());
    ended();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "run\nrun\n");
    let stranger = Script {
        user: Some(vec!["krs-no-such-user".into()]),
        ..script
    };
    episode(stranger);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "run\nrun\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checkers' slow script does not hold VRRP's notify script back
/// (each part has its own queue); `finish` waits for both.
#[test]
fn a_slow_checker_script_does_not_delay_vrrp_s_notifications() {
    let dir = std::env::temp_dir().join(format!("krs-queues-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (slow, quick) = (dir.join("slow"), dir.join("quick"));
    let sh = |cmd: String| Script {
        argv: vec!["/bin/sh".into(), "-c".into(), cmd],
        user: None,
    };
    let policy = Policy::from_globals(&kaconf::model::GlobalDefs::default());
    let notifier = start(
        Vec::new(),
        None,
        &policy,
        vec![Source::Vrrp, Source::Checkers],
    )
    .unwrap();
    let started = std::time::Instant::now();
    let checkers = notifier.sender(Source::Checkers);
    checkers
        .send(Job::Run(sh(format!("sleep 5; touch {}", slow.display()))))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let vrrp = notifier.sender(Source::Vrrp);
    vrrp.send(Job::Run(sh(format!("touch {}", quick.display()))))
        .unwrap();
    while !quick.exists() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let quick_after = started.elapsed();
    assert!(
        quick.exists() && quick_after < Duration::from_secs(3),
        "VRRP's script ran after {quick_after:?}"
    );
    assert!(!slow.exists(), "the slow one is still running");
    drop((checkers, vrrp));
    notifier.finish();
    assert!(slow.exists(), "finish waits for every queued job");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fifo_lines_are_keepalived_s() {
    assert_eq!(
        fifo_line("VI_1", StateName::Master, 100),
        "INSTANCE \"VI_1\" MASTER 100\n"
    );
}

#[test]
fn notify_gets_keepalived_s_four_arguments() {
    let script = |argv: &[&str]| Script {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        user: None,
    };
    let s = Scripts {
        master: Some(script(&["/etc/keepalived/master.sh"])),
        any: Some(script(&["/etc/keepalived/notify.sh", "extra"])),
        ..Scripts::default()
    };
    assert_eq!(
        s.for_state("VI_1", StateName::Master, 100),
        vec![
            script(&["/etc/keepalived/master.sh"]),
            script(&[
                "/etc/keepalived/notify.sh",
                "extra",
                "INSTANCE",
                "VI_1",
                "MASTER",
                "100"
            ]),
        ]
    );
    assert_eq!(s.for_state("VI_1", StateName::Backup, 90).len(), 1);
}
