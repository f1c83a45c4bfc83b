//! The `auth_hmac` block read as keepalived 2.4.3 reads it: keys (`hex:…`,
//! a passphrase used as its bytes, or `file:PATH` holding either), the active
//! key, `mode`, `anti_replay`, `time_window`, with keepalived's limits.
//! Key bytes live in `Zeroizing` buffers and are never part of a message.

use std::path::Path;

use zeroize::Zeroizing;

use crate::diag::Loc;
use crate::model::AuthHmac;

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HmacMode {
    #[default]
    Enforce,
    Permissive,
    ReceiveOnly,
}

/// `anti_replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HmacAntiReplay {
    #[default]
    Time,
    Monotonic,
}

/// A key ready for use.
pub struct HmacKey {
    pub id: u8,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKey({}, {} bytes)", self.id, self.bytes.len())
    }
}

/// An `auth_hmac` block, checked.
#[derive(Debug)]
pub struct Hmac {
    pub keys: Vec<HmacKey>,
    pub active_key: u8,
    pub mode: HmacMode,
    pub anti_replay: HmacAntiReplay,
    /// `time_window` in seconds (`None`: keepalived's default from the
    /// advert interval).
    pub time_window: Option<u32>,
}

/// The longest key file keepalived reads.
const MAX_KEY_FILE: u64 = 139;

/// `hex:…` or a passphrase taken as its bytes. Hex digits are read as
/// keepalived's `read_hex_str` reads them: blanks between bytes are skipped,
/// and a digit followed by a space or the end is a byte of its own
/// (`hex:1 23` is 01 23).
fn decode(value: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let Some(hex) = value.strip_prefix(b"hex:") else {
        return Ok(Zeroizing::new(value.to_vec()));
    };
    read_hex_str(hex)
}

/// Hex digits as keepalived's `read_hex_str` reads them (UDP_CHECK
/// payloads, `hex:` keys): blanks between bytes are skipped, and a digit
/// followed by a space or the end is a byte of its own (`1 23` is 01 23).
pub fn read_hex_str(hex: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let nibble = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bad = || "a character that is not a hex digit".to_owned();
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2 + 1));
    let mut i = 0;
    loop {
        while hex.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        let Some(&first) = hex.get(i) else { break };
        let mut v = nibble(first).ok_or_else(bad)?;
        i += 1;
        if let Some(&next) = hex.get(i).filter(|b| **b != b' ') {
            v = v << 4 | nibble(next).ok_or_else(bad)?;
            i += 1;
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err("no hex digits".into());
    }
    Ok(out)
}

/// A key's bytes from its configured value; `warn` hears about a key file
/// that group or others may read.
fn key_bytes(value: &str, warn: &mut dyn FnMut(String)) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    let Some(path) = value.strip_prefix("file:") else {
        return decode(value.as_bytes());
    };
    let path = Path::new(path);
    // O_NONBLOCK: a FIFO at the path must not hang the daemon (or `-t`)
    // until a writer comes; it is refused below as not a regular file.
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(|e| format!("key file {}: {e}", path.display()))?
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("key file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("key file {} is not a regular file", path.display()));
    }
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
        warn(format!(
            "key file {} is readable by group or others",
            path.display()
        ));
    }
    // Never more than keepalived reads, whatever the file claims.
    let mut text = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("key file {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(format!(
            "key file {} is too large (over {MAX_KEY_FILE} bytes)",
            path.display()
        ));
    }
    let end = text
        .iter()
        .rposition(|b| *b != b'\r' && *b != b'\n')
        .map_or(0, |p| p + 1);
    decode(&text[..end])
}

/// The `key` lines, each checked; `ok` turns false on an error.
fn keys(h: &AuthHmac, report: &mut dyn FnMut(Loc, bool, String), ok: &mut bool) -> Vec<HmacKey> {
    let mut keys: Vec<HmacKey> = Vec::new();
    for line in &h.key {
        let loc = line.origin.0;
        let (Some(id), Some(value)) = (line.value.0.first(), line.value.0.get(1)) else {
            report(
                loc,
                true,
                "`key` needs an id and a value: key ID VALUE".into(),
            );
            *ok = false;
            continue;
        };
        let Some(id) = id.parse::<u8>().ok().filter(|i| *i >= 1) else {
            report(loc, true, format!("key id `{id}` must be 1-255"));
            *ok = false;
            continue;
        };
        if keys.iter().any(|k| k.id == id) {
            report(loc, true, format!("key {id} is defined twice"));
            *ok = false;
            continue;
        }
        match key_bytes(value, &mut |w| report(loc, false, w)) {
            Ok(bytes) if (32..=64).contains(&bytes.len()) => keys.push(HmacKey { id, bytes }),
            Ok(bytes) => {
                report(
                    loc,
                    true,
                    format!("key {id} is {} bytes; it must be 32 to 64", bytes.len()),
                );
                *ok = false;
            }
            Err(e) => {
                report(loc, true, e);
                *ok = false;
            }
        }
    }
    keys
}

/// One of `choices` for a one-word keyword (the first if it is absent).
fn choice<T: Copy>(
    w: Option<&crate::value::At<crate::value::Words>>,
    keyword: &str,
    choices: &[(&str, T)],
    report: &mut dyn FnMut(Loc, bool, String),
    ok: &mut bool,
) -> T {
    let Some(w) = w else {
        return choices[0].1;
    };
    let word = w.value.0.first().map_or("", String::as_str);
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == word) {
        return *v;
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    report(
        w.origin.0,
        true,
        format!("{keyword} `{word}`: one of {}", names.join(", ")),
    );
    *ok = false;
    choices[0].1
}

/// Reads and checks `h` (at `at`); errors and warnings go to `report` as
/// `(is_error, message)`. `None` if the block cannot be used.
pub fn resolve(h: &AuthHmac, at: Loc, report: &mut dyn FnMut(Loc, bool, String)) -> Option<Hmac> {
    let mut ok = true;
    let keys = keys(h, report, &mut ok);
    let mode = choice(
        h.mode.as_ref(),
        "mode",
        &[
            ("enforce", HmacMode::Enforce),
            ("permissive", HmacMode::Permissive),
            ("receive-only", HmacMode::ReceiveOnly),
        ],
        report,
        &mut ok,
    );
    let anti_replay = choice(
        h.anti_replay.as_ref(),
        "anti_replay",
        &[
            ("time", HmacAntiReplay::Time),
            ("monotonic", HmacAntiReplay::Monotonic),
        ],
        report,
        &mut ok,
    );
    let time_window = h.time_window.as_ref().map(|w| {
        let secs = w.value.duration().as_secs_f64();
        if !(1.0..=300.0).contains(&secs) || secs.fract() != 0.0 {
            report(w.origin.0, true, "time_window must be 1-300 seconds".into());
            ok = false;
        }
        u32::try_from(w.value.duration().as_secs()).unwrap_or(300)
    });
    // keepalived turns the whole extension off when the active key is
    // missing, leaving the instance unauthenticated; we refuse instead.
    let active_key = match &h.active_key {
        None => {
            report(at, true, "auth_hmac needs `active_key ID`".into());
            ok = false;
            0
        }
        Some(a) => {
            let id = u8::try_from(a.value.get()).unwrap_or(0);
            if id == 0 || !keys.iter().any(|k| k.id == id) {
                report(
                    a.origin.0,
                    true,
                    format!(
                        "active_key {} is not one of the keys defined",
                        a.value.get()
                    ),
                );
                ok = false;
            }
            id
        }
    };
    ok.then_some(Hmac {
        keys,
        active_key,
        mode,
        anti_replay,
        time_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_as_keepalived_reads_them() {
        let b = decode(b"hex:000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f")
            .unwrap();
        assert_eq!(b.as_slice(), (0u8..32).collect::<Vec<_>>().as_slice());
        assert_eq!(decode(b"a passphrase taken as bytes").unwrap().len(), 27);
        // keepalived's tokenising: a digit before a blank or the end is a byte.
        assert_eq!(
            decode(b"hex:123 456").unwrap().as_slice(),
            &[0x12, 0x03, 0x45, 0x06]
        );
        assert_eq!(decode(b"hex:abc").unwrap().as_slice(), &[0xab, 0x0c]);
        assert!(decode(b"hex:0g").is_err());
        assert!(decode(b"hex:").is_err());
        // A passphrase need not be UTF-8.
        assert_eq!(decode(&[0xff; 40]).unwrap().len(), 40);
    }

    fn load(text: &str) -> (crate::Config, Vec<String>) {
        let l = crate::parse_str(
            std::path::Path::new("k.conf"),
            text,
            &crate::Options::default(),
        );
        let r = l.rendered();
        (l.config, r)
    }

    #[test]
    fn a_systemd_credential_through_env_and_dash_t_errors_at_their_lines() {
        let dir = std::env::temp_dir().join(format!("kaconf-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("vrrp_hmac");
        std::fs::write(&f, "a passphrase of at least thirty-two bytes\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        // The variable is this test's own; no other test reads it.
        std::env::set_var("KACONF_TEST_CREDENTIALS_DIRECTORY", &dir);
        let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n version 3\n virtual_ipaddress {\n 198.51.100.250\n }\n auth_hmac {\n key 1 file:${_ENV KACONF_TEST_CREDENTIALS_DIRECTORY}/vrrp_hmac\n active_key 1\n mode permissive\n }\n}\n";
        let (config, diags) = load(text);
        assert!(diags.is_empty(), "{diags:?}");
        let h = config.instances[0].body.auth_hmac.as_ref().unwrap();
        let r = resolve(h, crate::diag::Loc::default(), &mut |_, _, m| panic!("{m}")).unwrap();
        assert_eq!(r.keys[0].bytes.len(), 41);
        assert_eq!(r.mode, HmacMode::Permissive);
        // Errors name the line: a short key, an undefined active key, a bad
        // mode, a window out of range.
        let bad = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n version 3\n virtual_ipaddress {\n 198.51.100.250\n }\n auth_hmac {\n key 1 hex:0011\n active_key 2\n mode strict\n time_window 400\n }\n}\n";
        let (_, diags) = load(bad);
        let all = diags.join("\n");
        assert!(all.contains("k.conf:9:"), "{all}");
        assert!(
            all.contains("key 1 is 2 bytes; it must be 32 to 64"),
            "{all}"
        );
        assert!(
            all.contains("k.conf:10:") && all.contains("active_key 2 is not one of the keys"),
            "{all}"
        );
        assert!(
            all.contains("k.conf:11:") && all.contains("mode `strict`"),
            "{all}"
        );
        assert!(
            all.contains("k.conf:12:") && all.contains("time_window must be 1-300"),
            "{all}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_files_warn_when_others_may_read_them() {
        let dir = std::env::temp_dir().join(format!("kaconf-hmac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k");
        std::fs::write(
            &f,
            "hex:0001020304050607080910111213141516171819202122232425262728293031\n",
        )
        .unwrap();
        let set = |mode| {
            std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        };
        set(0o600);
        let mut warnings = Vec::new();
        let b = key_bytes(&format!("file:{}", f.display()), &mut |w| warnings.push(w)).unwrap();
        assert_eq!(b.len(), 32);
        assert!(warnings.is_empty());
        set(0o644);
        key_bytes(&format!("file:{}", f.display()), &mut |w| warnings.push(w)).unwrap();
        assert!(
            warnings[0].contains("readable by group or others"),
            "{warnings:?}"
        );
        std::fs::write(&f, "x".repeat(200)).unwrap();
        assert!(key_bytes(&format!("file:{}", f.display()), &mut |_| {})
            .unwrap_err()
            .contains("too large"));
        assert!(key_bytes("file:/nonexistent/k", &mut |_| {}).is_err());
        // Not a regular file (a device would be read forever).
        assert!(key_bytes("file:/dev/zero", &mut |_| {})
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
