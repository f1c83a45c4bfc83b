//! Typed values of keywords: how each is read from a statement and written back.
//!
//! [`Value`] is one keyword's argument(s); [`Slot`] is how a field holds it
//! (`Option` — once, the last one wins as in keepalived; `Vec` — repeatable;
//! `bool` — a flag). [`Lines`] is a `{ … }` block of value lines such as
//! `virtual_ipaddress`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::diag::{Diagnostics, Loc};
use crate::lexer::split_quoted_escaped;
use crate::tree::Stmt;

/// What parsing needs besides the statement.
#[derive(Debug)]
pub struct Cx<'a> {
    pub diags: &'a mut Diagnostics,
    /// Statements whose value could not be read: (where, keyword). Lets later
    /// checks tell "missing" from "present but wrong".
    pub failed: &'a mut Vec<(Loc, String)>,
}

impl Cx<'_> {
    pub fn error(&mut self, loc: Loc, msg: impl std::fmt::Display) {
        self.diags.error(loc, msg);
    }
    pub fn warn(&mut self, loc: Loc, msg: impl std::fmt::Display) {
        self.diags.warn(loc, msg);
    }
}

/// Writes configuration text with keepalived's usual indentation.
#[derive(Debug, Default)]
pub struct Emitter {
    pub text: String,
    depth: usize,
}

impl Emitter {
    /// One line of words, quoted where needed.
    pub fn line<S: AsRef<str>>(&mut self, words: &[S]) {
        self.indent();
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.text.push(' ');
            }
            push_word(&mut self.text, w.as_ref());
        }
        self.text.push('\n');
    }

    /// `words… {` and one level deeper.
    pub fn open<S: AsRef<str>>(&mut self, words: &[S]) {
        self.indent();
        for w in words {
            push_word(&mut self.text, w.as_ref());
            self.text.push(' ');
        }
        self.text.push_str("{\n");
        self.depth += 1;
    }

    /// `}` and one level up.
    pub fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.text.push_str("}\n");
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.text.push_str("    ");
        }
    }
}

/// Quotes a word that would not survive as a bare word.
fn push_word(out: &mut String, w: &str) {
    let bare = !w.is_empty()
        && !w.chars().any(|c| {
            c.is_whitespace() || matches!(c, '"' | '#' | '!' | '{' | '}' | '\\' | '$' | '\'')
        })
        && !w.starts_with(['@', '~']);
    if bare {
        out.push_str(w);
    } else {
        let _ = write!(out, "\"{w}\"");
    }
}

/// A keyword's value.
pub trait Value: Sized {
    /// Reads the value from `stmt`; on error reports it and returns `None`.
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self>;
    /// Writes `keyword value…` (and a block if the value has one).
    fn emit(&self, keyword: &str, out: &mut Emitter);
}

/// How a struct field holds a keyword's value.
pub trait Slot {
    fn set(&mut self, stmt: &Stmt, cx: &mut Cx);
    fn emit(&self, keyword: &str, out: &mut Emitter);
    /// Gives back spare capacity once the block is read (a model of 37,000
    /// real servers should not carry 37,000 half-empty vectors).
    fn shrink(&mut self) {}
}

impl<T: Value> Slot for Option<T> {
    fn set(&mut self, stmt: &Stmt, cx: &mut Cx) {
        match T::parse(stmt, cx) {
            Some(v) => *self = Some(v),
            None => cx.failed.push((stmt.loc, stmt.keyword().to_owned())),
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        if let Some(v) = self {
            v.emit(keyword, out);
        }
    }
}

impl<T: Value> Slot for Vec<T> {
    fn set(&mut self, stmt: &Stmt, cx: &mut Cx) {
        if let Some(v) = T::parse(stmt, cx) {
            self.push(v);
        }
    }
    fn shrink(&mut self) {
        self.shrink_to_fit();
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        for v in self {
            v.emit(keyword, out);
        }
    }
}

/// A flag: the keyword alone.
impl Slot for bool {
    fn set(&mut self, stmt: &Stmt, cx: &mut Cx) {
        no_block(stmt, cx);
        if let Some(extra) = stmt.args().first() {
            cx.warn(
                stmt.loc.at_col(extra.col),
                format!(
                    "`{}` takes no value; `{}` ignored",
                    stmt.keyword(),
                    extra.text
                ),
            );
        }
        *self = true;
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        if *self {
            out.line(&[keyword]);
        }
    }
}

/// Reports a block after a keyword that takes values.
pub fn no_block(stmt: &Stmt, cx: &mut Cx) -> bool {
    if let Some(b) = &stmt.block {
        cx.error(
            b.open,
            format!("`{}` takes a value, not a `{{ … }}` block", stmt.keyword()),
        );
        return false;
    }
    true
}

/// The single argument of `stmt`, reporting if it is missing.
pub fn one_arg<'s>(stmt: &'s Stmt, cx: &mut Cx, what: &str) -> Option<&'s str> {
    if !no_block(stmt, cx) {
        return None;
    }
    match stmt.args() {
        [] => {
            cx.error(
                stmt.arg_loc(0),
                format!("`{}` needs {what}", stmt.keyword()),
            );
            None
        }
        [a, rest @ ..] => {
            if let Some(extra) = rest.first() {
                cx.warn(
                    stmt.loc.at_col(extra.col),
                    format!(
                        "`{}` takes one value; extra `{}` ignored",
                        stmt.keyword(),
                        extra.text
                    ),
                );
            }
            Some(a.text.as_str())
        }
    }
}

/// An integer in `MIN..=MAX` (a range inside `i32`: stored in 4 bytes, as
/// a model of tens of thousands of real servers holds many of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Int<const MIN: i64, const MAX: i64>(i32);

impl<const MIN: i64, const MAX: i64> Int<MIN, MAX> {
    /// `v` if it is in range.
    pub fn new(v: i64) -> Option<Self> {
        if (MIN..=MAX).contains(&v) {
            i32::try_from(v).ok().map(Self)
        } else {
            None
        }
    }
    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
    /// Parses text as keepalived does (decimal).
    pub fn from_text(text: &str) -> Result<Self, BadValue> {
        let v: i64 = text
            .parse()
            .map_err(|_| BadValue::NotANumber(text.to_owned()))?;
        Self::new(v).ok_or(BadValue::OutOfRange {
            value: v,
            min: MIN,
            max: MAX,
        })
    }
}

impl<const MIN: i64, const MAX: i64> Value for Int<MIN, MAX> {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let text = one_arg(stmt, cx, &format!("a number ({MIN}..={MAX})"))?;
        match Self::from_text(text) {
            Ok(v) => Some(v),
            Err(e) => {
                cx.error(stmt.arg_loc(0), format!("{} {e}", stmt.keyword()));
                None
            }
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword.to_owned(), self.0.to_string()]);
    }
}

/// VRRP virtual router id.
pub type Vrid = Int<1, 255>;
/// VRRP priority as configured (255 = address owner).
pub type Priority = Int<1, 255>;
/// A TCP/UDP port.
pub type Port = Int<0, 65535>;
/// Any count (retries, rise, fall, …).
pub type Count = Int<0, { i32::MAX as i64 }>;

/// A time in seconds with up to microsecond precision (`1`, `0.5`, `2.25`).
/// Stored as microseconds + 1 in a `NonZeroU64`, so `Option<Seconds>` is 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(std::num::NonZeroU64);

impl Default for Seconds {
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl std::fmt::Debug for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seconds({})", self.to_text())
    }
}

impl Seconds {
    /// `d`, truncated to whole microseconds.
    pub fn new(d: Duration) -> Self {
        let micros = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1);
        Self(std::num::NonZeroU64::MIN.saturating_add(micros))
    }

    /// The time as a `Duration`.
    pub fn duration(self) -> Duration {
        Duration::from_micros(self.0.get() - 1)
    }

    pub fn from_text(text: &str) -> Result<Self, BadValue> {
        let bad = || BadValue::NotSeconds(text.to_owned());
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let secs: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        if secs > 60 * 60 * 24 * 365 * 100 {
            return Err(BadValue::TooLong(text.to_owned()));
        }
        let mut micros = 0u32;
        for (i, b) in frac.bytes().take(6).enumerate() {
            let exp = 5 - u32::try_from(i).unwrap_or(5);
            micros += u32::from(b - b'0') * 10u32.pow(exp);
        }
        Ok(Self::new(Duration::new(secs, micros * 1000)))
    }

    /// Seconds as keepalived writes them: `3`, `0.5`, `1.000001`.
    pub fn to_text(self) -> String {
        let d = self.duration();
        let micros = d.subsec_micros();
        if micros == 0 {
            d.as_secs().to_string()
        } else {
            let frac = format!("{micros:06}");
            format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
        }
    }
}

impl Value for Seconds {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let text = one_arg(stmt, cx, "a time in seconds")?;
        match Self::from_text(text) {
            Ok(v) => Some(v),
            Err(e) => {
                cx.error(stmt.arg_loc(0), format!("{}: {e}", stmt.keyword()));
                None
            }
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword.to_owned(), self.to_text()]);
    }
}

/// One word (a name, a path, an interface).
impl Value for String {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        one_arg(stmt, cx, "a value").map(str::to_owned)
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword, self.as_str()]);
    }
}

/// All the words after the keyword, as written (e.g. `notification_email_from`
/// with spaces, `lvs_id`, `url path`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Words(pub Vec<String>);

impl Value for Words {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        Some(Self(stmt.args().iter().map(|w| w.text.clone()).collect()))
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut words = vec![keyword.to_owned()];
        words.extend(self.0.iter().cloned());
        out.line(&words);
    }
}

/// A command line (`script`, `notify_master`…): split with quotes and
/// escapes as keepalived's quoted keywords are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command(pub Box<[String]>);

impl Value for Command {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        // `script "/bin/check arg"`: the quotes make one word, which keepalived
        // then splits again into the program and its arguments.
        let argv = split_quoted_escaped(stmt.raw_args()).and_then(|argv| match argv.as_slice() {
            [one] if one.contains([' ', '\t']) => split_quoted_escaped(one),
            _ => Ok(argv),
        });
        match argv {
            Ok(argv) if argv.is_empty() => {
                cx.error(
                    stmt.arg_loc(0),
                    format!("`{}` needs a command", stmt.keyword()),
                );
                None
            }
            Ok(argv) => Some(Self(argv.into_boxed_slice())),
            Err(e) => {
                cx.error(stmt.arg_loc(0), format!("{}: {e}", stmt.keyword()));
                None
            }
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword.to_owned(), self.quoted()]);
    }
}

impl Command {
    /// The command as one string, with the words inside quoted as needed.
    fn quoted(&self) -> String {
        let inner: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                if w.is_empty() || w.contains([' ', '\t', '\'', '\\']) {
                    format!("'{}'", w.replace('\\', "\\\\").replace('\'', "\\'"))
                } else {
                    w.clone()
                }
            })
            .collect();
        inner.join(" ")
    }
}

/// A script that names who runs it, as keepalived's notify keywords do
/// (`notify_master SCRIPT [USERNAME [GROUPNAME]]`, `notify_up`,
/// `quorum_up`, `notify_fifo_script`…). keepalived reads the line twice:
/// first split with quotes only, where the first word is the script and
/// the next two are the user and group; then the script alone, with quotes
/// and escapes, into the program and its arguments. So arguments need
/// quotes: `notify_master "/bin/notify.sh master"`, while
/// `notify_master /bin/notify.sh master` runs `/bin/notify.sh` as the user
/// `master`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    pub command: Command,
    /// Who runs it (else `script_user`, else `keepalived_script`, else root).
    pub user: Option<String>,
    /// Its group (else the user's).
    pub group: Option<String>,
    /// Where the line's first argument was written.
    pub origin: crate::section::Origin,
}

impl Value for Script {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        let kw = stmt.keyword();
        let words = match crate::lexer::split_quoted(stmt.raw_args()) {
            Ok(w) => w,
            Err(e) => {
                cx.error(stmt.arg_loc(0), format!("{kw}: {e}"));
                return None;
            }
        };
        let Some(first) = words.first() else {
            cx.error(stmt.arg_loc(0), format!("`{kw}` needs a command"));
            return None;
        };
        let argv = match split_quoted_escaped(first) {
            Ok(argv) if !argv.is_empty() => argv,
            Ok(_) => {
                cx.error(stmt.arg_loc(0), format!("`{kw}` needs a command"));
                return None;
            }
            Err(e) => {
                cx.error(stmt.arg_loc(0), format!("{kw}: {e}"));
                return None;
            }
        };
        if words.len() > 3 {
            cx.warn(
                stmt.arg_loc(3),
                format!(
                    "`{kw}` takes SCRIPT [USERNAME [GROUPNAME]]; `{}` is ignored (to pass \
                     arguments, quote the script and them together: {kw} \"{}\")",
                    words[3..].join(" "),
                    words.join(" ")
                ),
            );
        }
        Some(Self {
            command: Command(argv.into_boxed_slice()),
            user: words.get(1).cloned(),
            group: words.get(2).cloned(),
            origin: crate::section::Origin(stmt.arg_loc(0)),
        })
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        let mut words = vec![keyword.to_owned(), self.command.quoted()];
        words.extend(self.user.iter().chain(&self.group).cloned());
        out.line(&words);
    }
}

/// A time in milliseconds with up to microsecond precision (`10`,
/// `3.312`), as keepalived writes BFD's timers; held in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u32);

impl Millis {
    pub fn from_text(text: &str) -> Result<Self, BadValue> {
        let bad = || BadValue::NotMillis(text.to_owned());
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if (whole.is_empty() && frac.is_empty())
            || frac.len() > 3
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let ms: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut us = ms.checked_mul(1000).ok_or_else(bad)?;
        for (i, b) in frac.bytes().enumerate() {
            let exp = 2 - u32::try_from(i).unwrap_or(2);
            us = us
                .checked_add(u64::from(b - b'0') * 10u64.pow(exp))
                .ok_or_else(bad)?;
        }
        u32::try_from(us).map(Self).map_err(|_| bad())
    }

    /// Milliseconds as keepalived writes them: `10`, `3.312`.
    pub fn to_text(self) -> String {
        let (ms, us) = (self.0 / 1000, self.0 % 1000);
        if us == 0 {
            ms.to_string()
        } else {
            format!("{ms}.{}", format!("{us:03}").trim_end_matches('0'))
        }
    }
}

impl Value for Millis {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let text = one_arg(stmt, cx, "a time in milliseconds")?;
        match Self::from_text(text) {
            Ok(v) => Some(v),
            Err(e) => {
                cx.error(stmt.arg_loc(0), format!("{}: {e}", stmt.keyword()));
                None
            }
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword.to_owned(), self.to_text()]);
    }
}

/// `on`/`off`, `true`/`false`, `yes`/`no`; the keyword alone means on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Switch(pub bool);

impl Value for Switch {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        if !no_block(stmt, cx) {
            return None;
        }
        match stmt.args().first().map(|w| w.text.as_str()) {
            None | Some("on" | "true" | "yes") => Some(Self(true)),
            Some("off" | "false" | "no") => Some(Self(false)),
            Some(other) => {
                cx.error(
                    stmt.arg_loc(0),
                    format!(
                        "`{}` takes on/off (or true/false, yes/no), not `{other}`",
                        stmt.keyword()
                    ),
                );
                None
            }
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword, if self.0 { "on" } else { "off" }]);
    }
}

impl Value for IpAddr {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let text = one_arg(stmt, cx, "an IP address")?;
        match parse_ip(text) {
            Ok(a) => Some(a),
            Err(e) => {
                cx.error(stmt.arg_loc(0), e);
                None
            }
        }
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword.to_owned(), self.to_string()]);
    }
}

/// A value that cannot be read, and what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("`{0}` is not a whole number")]
    NotANumber(String),
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("`{0}` is not a time in seconds")]
    NotSeconds(String),
    #[error("`{0}` is not a time in milliseconds (up to 3 decimals)")]
    NotMillis(String),
    #[error("{0} seconds is too long")]
    TooLong(String),
    #[error("`{0}` is not a valid IP address")]
    NotAnAddress(String),
    #[error("`{text}`: prefix length must be 0..={max}")]
    PrefixLength { text: String, max: u8 },
}

/// Parses an IPv4 or IPv6 address with a clear message.
pub fn parse_ip(text: &str) -> Result<IpAddr, BadValue> {
    text.parse()
        .map_err(|_| BadValue::NotAnAddress(text.to_owned()))
}

/// An address with an optional prefix length (`198.51.100.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: Option<u8>,
}

impl Prefix {
    pub fn from_text(text: &str) -> Result<Self, BadValue> {
        let (a, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr = parse_ip(a)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => None,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => Some(n),
                _ => {
                    return Err(BadValue::PrefixLength {
                        text: text.to_owned(),
                        max,
                    })
                }
            },
        };
        Ok(Self { addr, len })
    }

    pub fn to_text(&self) -> String {
        match self.len {
            Some(l) => format!("{}/{l}", self.addr),
            None => self.addr.to_string(),
        }
    }
}

/// A line inside a value block (`virtual_ipaddress { … }` and the like).
pub trait LineValue: Sized {
    fn parse_line(stmt: &Stmt, cx: &mut Cx) -> Option<Self>;
    fn emit_line(&self, out: &mut Emitter);
}

/// A `{ … }` block of value lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lines<T>(pub Vec<T>);

impl<T: LineValue> Value for Lines<T> {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let Some(block) = &stmt.block else {
            cx.error(
                stmt.arg_loc(0),
                format!(
                    "`{}` needs a `{{ … }}` block, not a value on its line",
                    stmt.keyword()
                ),
            );
            return None;
        };
        if let Some(extra) = stmt.args().first() {
            cx.warn(
                stmt.loc.at_col(extra.col),
                format!(
                    "`{}` takes a block; `{}` before it ignored",
                    stmt.keyword(),
                    extra.text
                ),
            );
        }
        let mut items = Vec::new();
        for line in &block.stmts {
            if let Some(b) = &line.block {
                cx.error(b.open, "a value line cannot have a `{ … }` block");
                continue;
            }
            if let Some(v) = T::parse_line(line, cx) {
                items.push(v);
            }
        }
        Some(Self(items))
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.open(&[keyword]);
        for v in &self.0 {
            v.emit_line(out);
        }
        out.close();
    }
}

/// A value line kept as its words (for blocks we read but do not interpret).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawLine(pub Vec<String>);

impl LineValue for RawLine {
    fn parse_line(stmt: &Stmt, _cx: &mut Cx) -> Option<Self> {
        Some(Self(stmt.words.iter().map(|w| w.text.clone()).collect()))
    }
    fn emit_line(&self, out: &mut Emitter) {
        out.line(&self.0);
    }
}

/// Defines an enum read from one word, case-insensitively.
macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn from_text(text: &str) -> Option<Self> {
                $(if text.eq_ignore_ascii_case($text) { return Some($name::$variant); })+
                None
            }
        }

        impl $crate::value::Value for $name {
            fn parse(stmt: &$crate::tree::Stmt, cx: &mut $crate::value::Cx) -> Option<Self> {
                let text = $crate::value::one_arg(stmt, cx, "a value")?;
                match Self::from_text(text) {
                    Some(v) => Some(v),
                    None => {
                        let choices: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        cx.error(
                            stmt.arg_loc(0),
                            format!("`{}` must be one of {}, not `{text}`", stmt.keyword(), choices.join(", ")),
                        );
                        None
                    }
                }
            }
            fn emit(&self, keyword: &str, out: &mut $crate::value::Emitter) {
                out.line(&[keyword, self.as_str()]);
            }
        }
    };
}
pub(crate) use keyword_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_and_write_like_keepalived() {
        for (text, micros, back) in [
            ("3", 3_000_000, "3"),
            ("0.5", 500_000, "0.5"),
            ("1.000001", 1_000_001, "1.000001"),
            (".25", 250_000, "0.25"),
            ("2.1234569", 2_123_456, "2.123456"),
        ] {
            let s = Seconds::from_text(text).unwrap();
            assert_eq!(s.duration().as_micros(), micros, "{text}");
            assert_eq!(s.to_text(), back);
        }
        for bad in ["", ".", "-1", "1s", "x", "1.2.3"] {
            assert!(Seconds::from_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn millis_read_and_write_like_keepalived() {
        for (text, micros, back) in [
            ("10", 10_000, "10"),
            ("3.312", 3_312, "3.312"),
            (".5", 500, "0.5"),
        ] {
            let m = Millis::from_text(text).unwrap();
            assert_eq!(m.0, micros, "{text}");
            assert_eq!(m.to_text(), back);
        }
        // The last one fits u64 as milliseconds x 1000 but not with its
        // fraction: an error, not an overflow.
        for bad in ["", ".", "1.2345", "-1", "4294968", "18446744073709551.999"] {
            assert!(Millis::from_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(Vrid::from_text("255").unwrap().get(), 255);
        assert!(Vrid::from_text("0").is_err());
        assert!(Vrid::from_text("300")
            .unwrap_err()
            .to_string()
            .contains("out of range 1..=255"));
        assert!(Priority::from_text("abc").is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(Prefix::from_text("198.51.100.1/24").unwrap().len, Some(24));
        assert!(Prefix::from_text("198.51.100.1/33").is_err());
        assert!(Prefix::from_text("2001:db8::1/129").is_err());
        assert!(Prefix::from_text("198.51.100.300").is_err());
        assert_eq!(
            Prefix::from_text("2001:db8::1").unwrap().to_text(),
            "2001:db8::1"
        );
    }

    #[test]
    fn words_that_need_quotes_get_them() {
        let mut e = Emitter::default();
        e.line(&["a", "b c", "", "x#y", "plain"]);
        assert_eq!(e.text, "a \"b c\" \"\" \"x#y\" plain\n");
    }
}

/// A value and where it was written, for checks that look at several
/// keywords together (the version decides what `advert_int` may be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct At<T> {
    pub value: T,
    /// The location of the value (its first argument).
    pub origin: crate::section::Origin,
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Value> Value for At<T> {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        Some(Self {
            value: T::parse(stmt, cx)?,
            origin: crate::section::Origin(stmt.arg_loc(0)),
        })
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        self.value.emit(keyword, out);
    }
}

/// A keyword that takes no value, as a [`Value`] (so it can be wrapped in [`At`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag;

impl Value for Flag {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let mut set = false;
        Slot::set(&mut set, stmt, cx);
        Some(Self)
    }
    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.line(&[keyword]);
    }
}
