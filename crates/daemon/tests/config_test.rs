//! `keepalived-rs -t`: exit 0 when the configuration loads (warnings allowed),
//! exit 1 with `FILE:LINE:COL: error: …` on stderr when it does not.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::bin;

fn check(path: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .arg("-t")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kaconf_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kaconf/tests/broken")
}

#[test]
fn every_keepalived_sample_passes_dash_t() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/keepalived-samples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} missing under CI",
            dir.display()
        );
        netlab::skipped(
            "every_keepalived_sample_passes_dash_t",
            &format!(
                "{} not found (the sample configs beside the checkout)",
                dir.display()
            ),
        );
        return;
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("keepalived.conf")
        {
            continue;
        }
        let (code, stderr) = check(&path);
        n += 1;
        // keepalived 2.4.3's own -t rejects two rule lines of this sample
        // ("Invalid rule to address 192.168.100./24"); so do we, by line.
        if path.ends_with("keepalived.conf.vrrp.rules") {
            assert_eq!(code, 1, "{stderr}");
            assert!(stderr.contains("rules:11:8: error: bad prefix"), "{stderr}");
            assert!(
                stderr.contains("rules:26:12: error: bad prefix"),
                "{stderr}"
            );
            continue;
        }
        assert_eq!(code, 0, "{}:\n{stderr}", path.display());
        assert!(!stderr.contains(": error: "), "{stderr}");
    }
    assert!(n >= 20, "only {n} samples");
}

#[test]
fn the_seed_config_loads_and_its_typos_get_suggestions() {
    let (code, stderr) = check(&kaconf_tests().join("w_seed_typos.conf"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("w_seed_typos.conf:6:4: warning: unknown keyword `mtp_server` in global_defs; did you mean `smtp_server`?"), "{stderr}");
    assert!(stderr.contains("w_seed_typos.conf:10:4: warning: unknown keyword `cript` in vrrp_script; did you mean `script`?"), "{stderr}");
}

#[test]
fn errors_exit_1_with_file_line_col() {
    let (code, stderr) = check(&kaconf_tests().join("e_vrid_range.conf"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "e_vrid_range.conf:3:23: error: virtual_router_id 300 is out of range 1..=255"
        ),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let (code, stderr) = check(Path::new("/nonexistent/keepalived.conf"));
    assert_eq!(code, 1);
    assert!(
        stderr
            .contains("cannot read configuration file /nonexistent/keepalived.conf: no such file"),
        "{stderr}"
    );
}

#[test]
fn config_id_selects_conditional_lines() {
    let dir = std::env::temp_dir().join(format!("krs-cid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("k.conf");
    std::fs::write(
        &file,
        "vrrp_instance VI_1 {\n interface lo\n@lb1 virtual_router_id 51\n@lb2 virtual_router_id 999\n}\n",
    )
    .unwrap();
    let run = |id: &str| {
        let out = Command::new(bin())
            .args(["-t", "-i", id, "-f"])
            .arg(&file)
            .output()
            .unwrap();
        out.status.code()
    };
    assert_eq!(run("lb1"), Some(0));
    assert_eq!(run("lb2"), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("krs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A virtual server whose one real server has `checker`.
fn with_checker(checker: &str) -> String {
    format!(
        "virtual_server 198.51.100.250 80 {{\n  lb_algo rr\n  real_server 198.51.100.50 80 {{\n{checker}\n  }}\n}}\n"
    )
}

/// What the daemon converts later is checked by `-t` with its line: a
/// value that passes `-t` cannot fail (or panic) when the daemon starts.
/// (Before: `-t` passed this digest, and the checker thread panicked on
/// it at start.)
#[test]
fn values_the_daemon_converts_are_checked_by_dash_t() {
    let dir = Scratch::new("convert");
    let bad = [
        // 32 bytes of multi-byte characters: a panic at a char boundary.
        (
            format!("    HTTP_GET {{\n      url {{\n        path /\n        digest a{}b\n      }}\n    }}", "é".repeat(15)),
            "digest",
        ),
        (
            "    HTTP_GET {\n      url {\n        path /\n        digest +1234567890abcdef1234567890abcde\n      }\n    }".to_owned(),
            "digest",
        ),
        (
            "    HTTP_GET {\n      url {\n        path /\n        status_code 200-abc\n      }\n    }".to_owned(),
            "status_code",
        ),
        (
            "    HTTP_GET {\n      url {\n        path /\n        regex \"(unclosed\"\n      }\n    }".to_owned(),
            "regex",
        ),
        (
            "    DNS_CHECK {\n      type NOTATYPE\n    }".to_owned(),
            "DNS_CHECK",
        ),
        (
            "    UDP_CHECK {\n      payload zz\n    }".to_owned(),
            "UDP_CHECK",
        ),
        ("    MISC_CHECK {\n      misc_timeout 3\n    }".to_owned(), "misc_path"),
    ];
    for (checker, word) in bad {
        let file = dir.0.join("k.conf");
        std::fs::write(&file, with_checker(&checker)).unwrap();
        let (code, stderr) = check(&file);
        assert_eq!(code, 1, "{checker}\n{stderr}");
        // The real server's line, with the keyword that is wrong.
        assert!(
            stderr.contains("k.conf:3:3: error: real_server 198.51.100.50:80: ")
                && stderr.contains(word),
            "{checker}\n{stderr}"
        );
        // The daemon refuses the same file at once, and does not panic.
        let out = Command::new(bin())
            .args(["-n", "-l", "-C", "--control"])
            .arg(dir.0.join("c.sock"))
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert!(!log.contains("panicked"), "{log}");
        assert!(log.contains("configuration has errors"), "{log}");
    }
    // A good digest still passes.
    let file = dir.0.join("k.conf");
    std::fs::write(
        &file,
        with_checker("    HTTP_GET {\n      url {\n        path /\n        digest 0123456789abcdef0123456789ABCDEF\n      }\n    }"),
    )
    .unwrap();
    let (code, stderr) = check(&file);
    assert_eq!(code, 0, "{stderr}");
}

/// `notify_* SCRIPT [USER [GROUP]]` is read as keepalived reads it: the
/// words after the script name a user, and an unknown user (or an unknown
/// `script_user`) is an error at `-t`, never a silent run as root.
/// (Before: both passed `-t`, the user became an argument and the script
/// ran as root.)
#[test]
fn scripts_name_their_user_and_an_unknown_one_is_an_error() {
    let dir = Scratch::new("users");
    let file = dir.0.join("k.conf");
    let instance = |notify: &str| {
        format!(
            "vrrp_instance VI_1 {{\n interface lo\n virtual_router_id 51\n{notify}\n virtual_ipaddress {{\n  198.51.100.250\n }}\n}}\n"
        )
    };
    let cases = [
        (
            instance(" notify_master /bin/true krs-no-such-user"),
            1,
            "krs-no-such-user",
        ),
        (
            "global_defs {\n script_user krs-no-such-user\n}\n".to_owned() + &instance(""),
            1,
            "krs-no-such-user",
        ),
        (instance(" notify_master /bin/true nobody"), 0, ""),
        (instance(" notify_master \"/bin/true krs-arg\""), 0, ""),
    ];
    for (text, want, word) in cases {
        std::fs::write(&file, &text).unwrap();
        let (code, stderr) = check(&file);
        assert_eq!(code, want, "{text}\n{stderr}");
        if want == 1 {
            assert!(
                stderr.contains("k.conf:") && stderr.contains(": error: ") && stderr.contains(word),
                "{text}\n{stderr}"
            );
        }
    }
}

/// A notify FIFO path that is a symlink (here to a file someone cares
/// about) is refused, never written through. (Before: the daemon opened it
/// following the link and wrote its notify lines over the file.)
#[test]
fn a_symlink_at_the_notify_fifo_path_is_not_written_through() {
    let dir = Scratch::new("fifolink");
    let victim = dir.0.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let fifo = dir.0.join("notify.fifo");
    std::os::unix::fs::symlink(&victim, &fifo).unwrap();
    let conf = dir.0.join("k.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n notify_fifo {}\n}}\nvirtual_server 127.0.0.2 40001 {{\n delay_loop 1\n lb_dataplane proxy\n real_server 127.0.0.1 1 {{\n  TCP_CHECK {{\n   connect_timeout 1\n   retry 0\n  }}\n }}\n}}\n",
            fifo.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("log")).unwrap();
    let mut child = Command::new(bin())
        .args(["-n", "-l", "-C", "--control"])
        .arg(dir.0.join("c.sock"))
        .arg("-f")
        .arg(&conf)
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Long enough for the real server to be found down and notified.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
    assert!(
        log.contains("Removing service"),
        "no notification was due\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "written through the symlink\n{log}"
    );
}

/// On a terminal `-t` says the test passed (or failed), as `nginx -t`
/// does; piped, it stays silent on success, as keepalived's `-t`.
#[test]
fn dash_t_says_so_on_a_terminal_only() {
    let dir = std::env::temp_dir().join(format!("krs-dash-t-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "vrrp_instance VI_1 {\n interface lo\n virtual_router_id 51\n virtual_ipaddress {\n 198.51.100.250\n }\n}\n",
    )
    .unwrap();
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "vrrp_instance VI_1 {\n virtual_router_id 300\n}\n").unwrap();
    let (code, piped) = check(&good);
    assert_eq!(code, 0, "{piped}");
    assert!(!piped.contains("test is successful"), "{piped}");
    // util-linux `script` gives the command a terminal.
    let on_tty = |path: &Path| {
        let out = Command::new("script")
            .args(["-qec"])
            .arg(format!("{} -t -f {}", bin(), path.display()))
            .arg("/dev/null")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = on_tty(&good);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "keepalived-rs: configuration file {} test is successful",
            good.display()
        )),
        "{text}"
    );
    let (code, text) = on_tty(&bad);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("test failed"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
