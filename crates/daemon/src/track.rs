//! Tracked scripts (`vrrp_script`): each runs on a thread of its own every
//! `interval`, with a `timeout`; `rise` successes in a row make it good, `fall`
//! failures in a row make it bad; every change is sent to the VRRP thread,
//! which turns weights into priority (or FAULT). A script can never block the
//! VRRP thread.
//!
//! What a result means for an instance is [`Weighting`]: keepalived's rules,
//! kept pure so they can be tested without running anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaconf::model::VrrpScript;
use kaconf::section::Named;

/// A script as the tracker runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The script's own weight (an instance's `track_script` may override it).
    pub weight: i64,
    pub reverse: bool,
    pub rise: u32,
    pub fall: u32,
    /// Start as failed (`init_fail`) instead of good.
    pub init_fail: bool,
    /// `user USER [GROUP]`, else the global default (`None`: root).
    pub run_as: Option<crate::exec::RunAs>,
}

/// keepalived's defaults for a `vrrp_script` block.
pub fn script_spec(s: &Named<VrrpScript>) -> Option<ScriptSpec> {
    let b = &s.body;
    let argv = b.script.as_ref()?.0.to_vec();
    let interval = b
        .interval
        .map_or(Duration::from_secs(1), kaconf::value::Seconds::duration);
    let count = |c: Option<kaconf::value::Int<1, { i32::MAX as i64 }>>| {
        c.map_or(1, |c| u32::try_from(c.get()).unwrap_or(1))
    };
    Some(ScriptSpec {
        name: s.name.clone(),
        argv,
        interval,
        timeout: b.timeout.map_or(interval, kaconf::value::Seconds::duration),
        weight: b.weight.map_or(0, |w| w.weight),
        reverse: b.weight.is_some_and(|w| w.reverse),
        rise: count(b.rise),
        fall: count(b.fall),
        init_fail: b.init_fail,
        run_as: None,
    })
}

/// A script's verdict changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptEvent {
    pub name: String,
    pub good: bool,
}

/// Rise/fall: turns single results into a verdict.
#[derive(Debug, Clone)]
pub struct Debounce {
    good: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Debounce {
    pub fn new(good: bool, rise: u32, fall: u32) -> Self {
        Self {
            good,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Records one result; returns the new verdict if it flipped.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.good {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak >= needed {
            self.good = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// How tracked scripts move an instance's priority (keepalived's rules):
/// weight 0 — a failing script means FAULT; weight > 0 — added while the
/// script succeeds; weight < 0 — added while it fails; `reverse` swaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weighting {
    pub weight: i64,
    pub reverse: bool,
}

impl Weighting {
    /// The instance's own `weight N [reverse]` if it gave one, else the
    /// tracked item's.
    pub fn chosen(own: Option<(i64, bool)>, weight: i64, reverse: bool) -> Self {
        let (weight, reverse) = own.unwrap_or((weight, reverse));
        Self { weight, reverse }
    }

    /// The priority change and whether it means FAULT, given the verdict.
    pub fn effect(self, good: bool) -> (i64, bool) {
        let good = good != self.reverse;
        match self.weight {
            0 => (0, !good),
            w if w > 0 => (if good { w } else { 0 }, false),
            w => (if good { 0 } else { w }, false),
        }
    }
}

/// Runs `spec` every interval until `stop`, sending each change of verdict.
pub fn spawn(
    spec: ScriptSpec,
    tx: Sender<ScriptEvent>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("script-{}", spec.name))
        .spawn(move || {
            let mut verdict = Debounce::new(!spec.init_fail, spec.rise, spec.fall);
            let mut unstartable = false;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ran = run_once(&spec, &mut unstartable);
                if let Some(good) = ran.and_then(|ok| verdict.record(ok)) {
                    tracing::info!(
                        "Script `{}` now returning {}",
                        spec.name,
                        if good { "success" } else { "failure" }
                    );
                    if tx
                        .send(ScriptEvent {
                            name: spec.name.clone(),
                            good,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                let rest = spec.interval.saturating_sub(started.elapsed());
                sleep_unless_stopped(rest, &stop);
            }
        })
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(
            Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
        );
    }
}

/// One run: exit status 0 within the timeout is success. `None`: it
/// could not be started at all (no such program, no permission, a user we
/// may not switch to). That says nothing about what the script checks, so
/// it is no verdict: a mistake of ours or of the packaging must not fail a
/// check on every node at once. It is an error in the log, said when it
/// begins (`unstartable` remembers) and again when it ends.
fn run_once(spec: &ScriptSpec, unstartable: &mut bool) -> Option<bool> {
    let exit = crate::exec::run(&spec.argv, spec.timeout, spec.run_as.as_ref());
    if let crate::exec::Exit::NotStarted(e) = &exit {
        if !*unstartable {
            tracing::error!(
                "Script `{}` cannot be started ({e}); its verdict stays as it was until it can",
                spec.name
            );
        }
        *unstartable = true;
        return None;
    }
    if std::mem::take(unstartable) {
        tracing::info!("Script `{}` can be started again", spec.name);
    }
    Some(match exit {
        crate::exec::Exit::Success => true,
        crate::exec::Exit::Failure | crate::exec::Exit::NotStarted(_) => false,
        crate::exec::Exit::TimedOut => {
            tracing::warn!("Script `{}` timed out after {:?}", spec.name, spec.timeout);
            false
        }
    })
}

/// A `vrrp_track_process`: how many processes match, and how many are enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The name in /proc/PID/comm, or argv[0] with `full_command`.
    pub name: String,
    /// Arguments that must follow (how: `param_match`).
    pub params: Vec<String>,
    pub param_match: ParamMatch,
    /// `fork_delay`: quorum gained must hold this long to count.
    pub fork_delay: Duration,
    /// `terminate_delay`: quorum lost must last this long to count.
    pub terminate_delay: Duration,
    pub full_command: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    pub weight: i64,
    pub reverse: bool,
}

/// How a process's arguments are compared with `process NAME PARAMS…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamMatch {
    /// No `param_match`: exactly these arguments (none given: any).
    Exact,
    /// `param_match partial`: the first arguments are these (none given:
    /// the process has no arguments).
    Partial,
    /// `param_match initial`: as `partial`, but the last one given may be
    /// the start of the process's argument.
    Initial,
}

/// A tracked process's quorum as the instances see it: a change counts only
/// once it has lasted `fork_delay` (gained) or `terminate_delay` (lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    pub up: bool,
    /// The state the counts show and since when, while it is not yet `up`.
    pending: Option<(bool, std::time::Instant)>,
}

impl Quorum {
    pub fn new(up: bool) -> Self {
        Self { up, pending: None }
    }

    /// Takes a count's verdict at `now`; true if `up` changed.
    pub fn observe(&mut self, counted: bool, now: std::time::Instant, spec: &ProcessSpec) -> bool {
        if counted == self.up {
            self.pending = None;
            return false;
        }
        let since = match self.pending {
            Some((state, since)) if state == counted => since,
            _ => {
                self.pending = Some((counted, now));
                now
            }
        };
        let delay = if counted {
            spec.fork_delay
        } else {
            spec.terminate_delay
        };
        if now.duration_since(since) >= delay {
            self.up = counted;
            self.pending = None;
            true
        } else {
            false
        }
    }
}

/// keepalived's defaults for a `vrrp_track_process` block.
pub fn process_spec(
    p: &kaconf::section::Named<kaconf::model::TrackProcess>,
) -> Option<ProcessSpec> {
    let b = &p.body;
    let words = &b.process.as_ref()?.0;
    let (name, params) = words.split_first()?;
    let count =
        |c: Option<kaconf::value::Count>| c.map(|c| u32::try_from(c.get()).unwrap_or(u32::MAX));
    let secs = |d: Option<kaconf::value::Seconds>| d.map(kaconf::value::Seconds::duration);
    let both = secs(b.delay);
    let param_match = match b
        .param_match
        .as_ref()
        .and_then(|w| w.0.first())
        .map(String::as_str)
    {
        Some("initial") => ParamMatch::Initial,
        Some(_) => ParamMatch::Partial,
        None => ParamMatch::Exact,
    };
    Some(ProcessSpec {
        name: name.clone(),
        params: params.to_vec(),
        param_match,
        fork_delay: secs(b.fork_delay).or(both).unwrap_or_default(),
        terminate_delay: secs(b.terminate_delay).or(both).unwrap_or_default(),
        full_command: b.full_command,
        quorum: count(b.quorum).unwrap_or(1),
        quorum_max: count(b.quorum_max).unwrap_or(u32::MAX),
        weight: b.weight.map_or(0, |w| w.weight),
        reverse: b.weight.is_some_and(|w| w.reverse),
    })
}

impl ProcessSpec {
    /// Whether the process with this comm and command line matches.
    pub fn matches(&self, comm: &str, argv: &[&str]) -> bool {
        let name_ok = if self.full_command {
            argv.first().is_some_and(|a| *a == self.name)
        } else {
            // The kernel keeps 15 bytes of the name (which may cut a
            // character in two, so the comparison is of bytes).
            let want = &self.name.as_bytes()[..self.name.len().min(15)];
            comm.as_bytes() == want
        };
        let rest = argv.get(1..).unwrap_or_default();
        name_ok && self.params_match(rest)
    }

    fn params_match(&self, rest: &[&str]) -> bool {
        let want = self.params.as_slice();
        match self.param_match {
            ParamMatch::Exact => want.is_empty() || rest == want,
            ParamMatch::Partial => {
                if want.is_empty() {
                    return rest.is_empty();
                }
                rest.len() >= want.len() && rest[..want.len()] == *want
            }
            ParamMatch::Initial => {
                let Some((last, init)) = want.split_last() else {
                    return rest.is_empty();
                };
                rest.len() >= want.len()
                    && rest[..init.len()] == *init
                    && rest[init.len()].starts_with(last.as_str())
            }
        }
    }

    /// Whether `count` running processes satisfy the quorum.
    pub fn satisfied(&self, count: u32) -> bool {
        count >= self.quorum && count <= self.quorum_max
    }
}

/// Counts, for each spec, the matching processes in /proc.
pub fn count_processes(specs: &[&ProcessSpec]) -> Vec<u32> {
    let mut counts = vec![0u32; specs.len()];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let argv: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
        for (i, s) in specs.iter().enumerate() {
            if s.matches(comm.trim_end(), &argv) {
                counts[i] += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process spec with keepalived's defaults.
    fn process(name: &str) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            params: vec![],
            param_match: ParamMatch::Exact,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
            full_command: false,
            quorum: 1,
            quorum_max: u32::MAX,
            weight: 0,
            reverse: false,
        }
    }

    #[test]
    fn param_match_modes() {
        let with = |params: &[&str], m: ParamMatch| ProcessSpec {
            params: params.iter().map(|p| (*p).to_owned()).collect(),
            param_match: m,
            ..process("haproxy")
        };
        let argv = ["haproxy", "-f", "/etc/haproxy/haproxy.cfg", "-Ws"];
        assert!(with(&[], ParamMatch::Exact).matches("haproxy", &argv));
        assert!(!with(&["-f"], ParamMatch::Exact).matches("haproxy", &argv));
        assert!(
            with(&["-f", "/etc/haproxy/haproxy.cfg"], ParamMatch::Partial)
                .matches("haproxy", &argv)
        );
        assert!(!with(&["-f", "/etc/haproxy"], ParamMatch::Partial).matches("haproxy", &argv));
        assert!(with(&["-f", "/etc/haproxy"], ParamMatch::Initial).matches("haproxy", &argv));
        assert!(!with(&["-x"], ParamMatch::Initial).matches("haproxy", &argv));
        // param_match without parameters: the process must have none.
        assert!(!with(&[], ParamMatch::Partial).matches("haproxy", &argv));
        assert!(with(&[], ParamMatch::Partial).matches("haproxy", &["haproxy"]));
    }

    #[test]
    fn quorum_changes_wait_for_their_delay() {
        let spec = ProcessSpec {
            fork_delay: Duration::from_millis(500),
            terminate_delay: Duration::from_secs(2),
            ..process("nginx")
        };
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = Quorum::new(true);
        // Lost for 1.5 s, back: never counted as down.
        assert!(!q.observe(false, at(0), &spec));
        assert!(!q.observe(false, at(1500), &spec));
        assert!(!q.observe(true, at(1600), &spec));
        assert!(q.up);
        // Lost for 2 s: down.
        assert!(!q.observe(false, at(2000), &spec));
        assert!(q.observe(false, at(4000), &spec));
        assert!(!q.up);
        // Regained: up after fork_delay.
        assert!(!q.observe(true, at(4100), &spec));
        assert!(q.observe(true, at(4600), &spec));
        assert!(q.up);
        // No delay: at once.
        let mut q = Quorum::new(true);
        assert!(q.observe(false, at(0), &process("nginx")));
    }

    #[test]
    fn processes_match_by_comm_or_command_and_params() {
        let p = process("nginx");
        assert!(p.matches("nginx", &["nginx: master process /usr/sbin/nginx"]));
        assert!(!p.matches("nginx-debug", &["nginx-debug"]));
        let full = ProcessSpec {
            name: "/usr/bin/sleep".into(),
            params: vec!["100".into()],
            full_command: true,
            ..p.clone()
        };
        assert!(full.matches("sleep", &["/usr/bin/sleep", "100"]));
        assert!(!full.matches("sleep", &["/usr/bin/sleep", "101"]));
        assert!(p.satisfied(1) && !p.satisfied(0));
        let q = ProcessSpec {
            quorum: 2,
            quorum_max: 3,
            ..p
        };
        assert!(!q.satisfied(1) && q.satisfied(2) && q.satisfied(3) && !q.satisfied(4));
    }

    #[test]
    fn a_long_name_is_cut_at_15_bytes_even_inside_a_character() {
        // 'é' is two bytes: byte 15 falls inside the last one.
        let p = process("aaaaaaaaaaaaaaé");
        assert!(!p.matches("aaaaaaaaaaaaaa", &[]));
        assert!(!p.matches("nginx", &["nginx"]));
    }

    #[test]
    fn this_process_is_counted() {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let me = process(comm.trim_end());
        assert!(count_processes(&[&me])[0] >= 1);
    }

    #[test]
    fn rise_and_fall_need_streaks() {
        let mut d = Debounce::new(true, 2, 3);
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(true), None, "a success breaks the failure streak");
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(false), None);
        assert_eq!(d.record(false), Some(false));
        assert_eq!(d.record(true), None);
        assert_eq!(d.record(true), Some(true));
        assert_eq!(d.record(true), None, "already good");
    }

    #[test]
    fn weights_as_keepalived() {
        let w = |weight, reverse| Weighting { weight, reverse };
        assert_eq!(w(0, false).effect(true), (0, false));
        assert_eq!(
            w(0, false).effect(false),
            (0, true),
            "weight 0: failure is FAULT"
        );
        assert_eq!(
            w(1, false).effect(true),
            (1, false),
            "the seed: weight 1 while nginx runs"
        );
        assert_eq!(w(1, false).effect(false), (0, false));
        assert_eq!(w(-20, false).effect(false), (-20, false));
        assert_eq!(w(-20, false).effect(true), (0, false));
        assert_eq!(w(-20, true).effect(true), (-20, false), "reverse");
    }

    #[test]
    fn a_script_that_exits_0_succeeds_and_a_slow_one_times_out() {
        let spec = |argv: &[&str], timeout_ms| ScriptSpec {
            name: "t".into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(timeout_ms),
            weight: 0,
            reverse: false,
            rise: 1,
            fall: 1,
            init_fail: false,
            run_as: None,
        };
        let mut unstartable = false;
        let mut once = |s: &ScriptSpec| run_once(s, &mut unstartable);
        assert_eq!(once(&spec(&["true"], 1000)), Some(true));
        assert_eq!(once(&spec(&["false"], 1000)), Some(false));
        let t = Instant::now();
        assert_eq!(once(&spec(&["sleep", "5"], 100)), Some(false));
        assert!(t.elapsed() < Duration::from_secs(2));
        // A script that cannot be started is no verdict, and said once.
        assert_eq!(once(&spec(&["/nonexistent/script"], 1000)), None);
        assert_eq!(once(&spec(&["/nonexistent/script"], 1000)), None);
        assert!(unstartable);
        assert_eq!(
            run_once(&spec(&["true"], 1000), &mut unstartable),
            Some(true)
        );
        assert!(!unstartable, "started again");
    }
}
