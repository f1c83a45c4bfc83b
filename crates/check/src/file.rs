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
/// number, as keepalived); `None` when out of range (keep the last value).
pub fn read_value(path: &std::path::Path) -> Option<i64> {
    use std::io::Read as _;
    let mut buf = [0u8; 127];
    let Ok(mut f) = std::fs::File::open(path) else {
        return Some(0);
    };
    let n = f.read(&mut buf).unwrap_or(0);
    parse_value(&buf[..n])
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
}
