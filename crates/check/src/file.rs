//! Tracked files (`track_file`, and `FILE_CHECK` on real servers): the
//! number a file holds and what it does to a real server, as keepalived
//! 2.4.3 reads and applies it (trackers/track_file.c).

/// The number at the start of a tracked file's contents, read as C's
/// `strtol(buf, NULL, 0)` reads it: leading blanks, a sign, `0x` hex or a
/// leading `0` octal or decimal, up to the first other character; no
/// digits at all is 0. `None` when it does not fit keepalived's range
/// (`INT32_MIN..=INT32_MAX + 1`): keepalived then ignores the new value.
/// keepalived reads at most 127 bytes; so do callers.
pub fn parse_value(bytes: &[u8]) -> Option<i64> {
    let mut rest = bytes;
    while let [b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, tail @ ..] = rest {
        rest = tail;
    }
    let negative = match rest {
        [b'-', tail @ ..] => {
            rest = tail;
            true
        }
        [b'+', tail @ ..] => {
            rest = tail;
            false
        }
        _ => false,
    };
    let radix = match rest {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => {
            rest = &rest[2..];
            16
        }
        [b'0', ..] => 8,
        _ => 10,
    };
    let mut value: i64 = 0;
    for &b in rest {
        let Some(d) = char::from(b).to_digit(radix) else {
            break;
        };
        // Beyond keepalived's range already: no need to go on.
        value = value
            .checked_mul(i64::from(radix))?
            .checked_add(i64::from(d))?;
        if value > i64::from(u32::MAX) {
            return None;
        }
    }
    let value = if negative { -value } else { value };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&value)
        .then_some(value)
}

/// The number in the file at `path` (0 when it is missing, empty or not a
/// number, as keepalived); `Ok(None)` when out of range (keep the last
/// value). `Err` when the path is not a regular file (a FIFO, a device, a
/// symlink): it is refused, never opened for reading, so that nothing
/// planted there can block the thread that reads it (keep the last value).
pub fn read_value(path: &std::path::Path) -> Result<Option<i64>, Refused> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut buf = [0u8; 127];
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    // O_NOFOLLOW: a symlink is refused (ELOOP) rather than followed.
    let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOFOLLOW;
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(Refused("a symbolic link".into()))
        }
        Err(_) => return Ok(Some(0)),
    };
    match f.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(m) => return Err(Refused(kind_of(m.file_type()).into())),
        Err(e) => return Err(Refused(format!("not inspectable: {e}"))),
    }
    let n = f.read(&mut buf).unwrap_or(0);
    Ok(parse_value(&buf[..n]))
}

/// Why a tracked path is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a regular file ({}): not read", self.0)
    }
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// What a `FILE_CHECK` with `weight` (`reverse`) makes of value `value`:
/// `None` — the real server is down (keepalived's FAULT); `Some(delta)` — it
/// is up with `delta` added to its weight. Weight 0: any non-zero value is
/// a fault (with `reverse`, zero is). Otherwise value × weight (negated
/// with `reverse`), a fault at or below `i32::MIN`.
pub fn effect(value: i64, weight: i64, reverse: bool) -> Option<i64> {
    if weight == 0 {
        return ((value == 0) != reverse).then_some(0);
    }
    let sign = if reverse { -1 } else { 1 };
    let status = value.saturating_mul(weight).saturating_mul(sign);
    (status > i64::from(i32::MIN)).then_some(status.min(i64::from(i32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_strtol_base_0() {
        assert_eq!(parse_value(b"42\n"), Some(42));
        assert_eq!(parse_value(b"  -7 trailing"), Some(-7));
        assert_eq!(parse_value(b"+3"), Some(3));
        assert_eq!(parse_value(b"0x1f"), Some(31));
        assert_eq!(parse_value(b"010"), Some(8));
        assert_eq!(parse_value(b"09"), Some(0), "octal stops at 9");
        assert_eq!(parse_value(b"0x"), Some(0));
        assert_eq!(parse_value(b""), Some(0));
        assert_eq!(parse_value(b"up"), Some(0));
        assert_eq!(parse_value(b"2147483648"), Some(2_147_483_648));
        assert_eq!(parse_value(b"-2147483648"), Some(-2_147_483_648));
        assert_eq!(parse_value(b"2147483649"), None);
        assert_eq!(parse_value(b"-2147483649"), None);
        assert_eq!(parse_value(b"99999999999999999999999999"), None);
    }

    #[test]
    fn effects_as_keepalived() {
        // weight 0: a flag file.
        assert_eq!(effect(0, 0, false), Some(0));
        assert_eq!(effect(1, 0, false), None);
        assert_eq!(effect(0, 0, true), None);
        assert_eq!(effect(5, 0, true), Some(0));
        // weighted: the value scales the weight change.
        assert_eq!(effect(3, 10, false), Some(30));
        assert_eq!(effect(3, 10, true), Some(-30));
        assert_eq!(effect(-5, 2, false), Some(-10));
        // a fault only at the bottom of the range.
        assert_eq!(effect(-2_147_483_648, 1, false), None);
        assert_eq!(effect(2_147_483_648, -1, false), None);
        assert_eq!(effect(2_147_483_648, 1, false), Some(2_147_483_647));
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("krs-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("value");
        std::fs::write(&file, "7\n").unwrap();
        assert_eq!(read_value(&file), Ok(Some(7)));
        assert_eq!(read_value(&dir.join("missing")), Ok(Some(0)));
        // A FIFO with no writer: refused at once (opening it blocking
        // would wait for a writer for ever).
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let started = std::time::Instant::now();
        let r = read_value(&fifo);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(r, Err(Refused("a FIFO".into())));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_value(&link), Err(Refused("a symbolic link".into())));
        assert!(read_value(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
