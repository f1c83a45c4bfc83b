//! Logging: to the console with `-l`, to syslog otherwise (as keepalived does;
//! journald reads `/dev/log`). `-D` adds debug detail. Message texts follow
//! keepalived's ("(VI_1) Entering MASTER STATE") so operators' greps still work.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, Layer};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Console,
    Syslog,
}

/// Installs the global subscriber. Falls back to the console when `/dev/log`
/// cannot be reached, and says so.
pub fn init(target: Target, detail: bool) {
    let level = if detail {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let syslog = match target {
        Target::Syslog => match Syslog::connect("/dev/log") {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("keepalived-rs: cannot open /dev/log ({e}); logging to the console");
                None
            }
        },
        Target::Console => None,
    };
    let registry = tracing_subscriber::registry();
    let result = if let Some(syslog) = syslog {
        registry.with(syslog.with_filter(level)).try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(false)
                    .with_filter(level),
            )
            .try_init()
    };
    // A second init (tests) keeps the first subscriber; nothing to do.
    let _ = result;
}

/// A tracing layer that writes RFC 3164 lines, facility daemon, to a local socket.
struct Syslog {
    socket: UnixDatagram,
    pid: u32,
}

impl Syslog {
    fn connect(path: &str) -> std::io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Self {
            socket,
            pid: std::process::id(),
        })
    }
}

/// Facility `daemon` (3) shifted, plus the severity.
fn priority(level: Level) -> u8 {
    const DAEMON: u8 = 3 << 3;
    DAEMON
        + match level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        }
}

/// The text of a syslog datagram for one event.
fn syslog_line(level: Level, pid: u32, message: &str) -> String {
    format!("<{}>Keepalived-rs[{pid}]: {message}", priority(level))
}

impl<S: Subscriber> Layer<S> for Syslog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = MessageText::default();
        event.record(&mut text);
        let line = syslog_line(*event.metadata().level(), self.pid, &text.0);
        // Logging must never take the daemon down: a full or absent syslog drops the line.
        let _ = self.socket.send(line.as_bytes());
    }
}

#[derive(Default)]
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_carry_facility_daemon_and_severity() {
        assert_eq!(
            syslog_line(Level::INFO, 42, "(VI_1) Entering MASTER STATE"),
            "<30>Keepalived-rs[42]: (VI_1) Entering MASTER STATE"
        );
        assert_eq!(priority(Level::ERROR), 27);
        assert_eq!(priority(Level::WARN), 28);
        assert_eq!(priority(Level::DEBUG), 31);
    }

    #[test]
    fn syslog_layer_sends_one_datagram_per_event() {
        let dir = std::env::temp_dir().join(format!("krs-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let layer = Syslog::connect(path.to_str().unwrap()).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(instance = "VI_1", "Entering FAULT STATE");
        });
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.starts_with("<28>Keepalived-rs["), "{got}");
        assert!(
            got.ends_with("]: Entering FAULT STATE instance=VI_1"),
            "{got}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
