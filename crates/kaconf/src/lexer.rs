//! From files to logical lines, with keepalived's preprocessing: comments,
//! `include` (globs, relative to the including file), `@id` / `@^id` conditional
//! lines, `$NAME=value` definitions (multi-line with `\`, built-ins such as
//! `${_ENV HOME}`), `~SEQ(...)` / `~LST(...)` repetition, and braces split into
//! lines of their own — the rules of keepalived's `lib/parser.c`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostics, FileId, Loc, Sources};

/// How deep includes, definitions and `~SEQ`s may nest before we call it a loop.
const MAX_DEPTH: usize = 32;
/// How many lines one `~SEQ`/`~LST` may produce.
const MAX_REPEAT: i64 = 1_000_000;
/// How many lines all `~SEQ`/`~LST`/definition expansions together may produce.
pub const MAX_EXPANDED_LINES: usize = 2_000_000;
/// The longest a line may grow by substituting definitions (keepalived's own
/// limit is smaller still).
const MAX_LINE: usize = 64 * 1024;

/// Lexer settings that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-i/--config-id`: selects `@ID` lines. keepalived defaults it to the
    /// host name up to the first dot; so does [`default_config_id`].
    pub config_id: Option<String>,
    /// How many lines expansion may produce in all (default
    /// [`MAX_EXPANDED_LINES`]); a guard against configs that would never end.
    pub max_expanded_lines: Option<usize>,
}

/// The host name up to the first dot, keepalived's default config id.
pub fn default_config_id() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    Some(name.split('.').next().unwrap_or(name).to_owned())
}

/// One word of a line; `col` is its 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub col: u32,
    /// The word was written in double quotes.
    pub quoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// `{`
    Open,
    /// `}`
    Close,
    /// A keyword or value line, split into words.
    Words(Vec<Word>),
}

/// One logical line: what is left after preprocessing, one brace per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub loc: Loc,
    pub kind: LineKind,
    /// The line's text after preprocessing (for keywords that re-split their
    /// arguments with quotes and escapes, such as `script` and `notify`).
    pub raw: String,
}

/// The result of lexing a configuration.
#[derive(Debug)]
pub struct Lexed {
    pub lines: Vec<Line>,
    pub sources: Sources,
}

/// Where logical lines go as they are made (with the diagnostics, so the
/// consumer can report too).
pub type Sink<'s> = dyn FnMut(Line, &mut Diagnostics) + 's;

/// Reads `path` and everything it includes, handing each logical line to
/// `sink` as soon as it is made: nothing is held but the current line.
pub fn lex_file_into(
    path: &Path,
    opts: &Options,
    diags: &mut Diagnostics,
    sink: &mut Sink,
) -> Sources {
    let mut lexer = Lexer::new(opts, diags, sink);
    lexer.file(path, Loc::default(), true);
    lexer.sources
}

/// Like [`lex_file_into`] for text read as if from a file called `name`
/// (includes are resolved relative to the current directory).
pub fn lex_str_into(
    name: &Path,
    text: &str,
    opts: &Options,
    diags: &mut Diagnostics,
    sink: &mut Sink,
) -> Sources {
    let mut lexer = Lexer::new(opts, diags, sink);
    let id = lexer.sources.add(name);
    lexer.text(id, Path::new("."), text);
    lexer.sources
}

/// Reads `path` and everything it includes into logical lines.
pub fn lex_file(path: &Path, opts: &Options, diags: &mut Diagnostics) -> Lexed {
    let mut lines = Vec::new();
    let sources = lex_file_into(path, opts, diags, &mut |l, _| lines.push(l));
    Lexed { lines, sources }
}

/// Lexes text as if read from a file called `name`.
pub fn lex_str(name: &Path, text: &str, opts: &Options, diags: &mut Diagnostics) -> Lexed {
    let mut lines = Vec::new();
    let sources = lex_str_into(name, text, opts, diags, &mut |l, _| lines.push(l));
    Lexed { lines, sources }
}

#[derive(Debug, Clone)]
struct Def {
    /// One entry per line; more than one only for multi-line definitions.
    lines: Vec<String>,
    multiline: bool,
}

struct Lexer<'a, 's> {
    opts: &'a Options,
    diags: &'a mut Diagnostics,
    sources: Sources,
    defs: HashMap<String, Def>,
    sink: &'a mut Sink<'s>,
    /// Canonical paths of the files being read, outermost first, and the
    /// paths as they were named (for messages).
    stack: Vec<(PathBuf, PathBuf)>,
    /// The directory of the file being read (for relative includes and `$_PWD`).
    dir: PathBuf,
    /// A multi-line definition still collecting lines.
    pending_def: Option<String>,
    depth: usize,
    /// Lines produced by expansion so far (see [`MAX_EXPANDED_LINES`]).
    expanded: usize,
    /// Whether the expansion budget ran out (reported once).
    over_budget: bool,
}

impl<'a, 's> Lexer<'a, 's> {
    fn new(opts: &'a Options, diags: &'a mut Diagnostics, sink: &'a mut Sink<'s>) -> Self {
        Self {
            opts,
            diags,
            sources: Sources::default(),
            defs: HashMap::new(),
            sink,
            stack: Vec::new(),
            dir: PathBuf::from("."),
            pending_def: None,
            depth: 0,
            expanded: 0,
            over_budget: false,
        }
    }

    /// Reads one file. `required`: a missing file is an error (else a warning).
    fn file(&mut self, path: &Path, from: Loc, required: bool) {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if self.stack.iter().any(|(c, _)| *c == canonical) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .skip_while(|(c, _)| *c != canonical)
                .map(|(_, shown)| shown.display().to_string())
                .chain(std::iter::once(path.display().to_string()))
                .collect();
            self.diags
                .error(from, format!("include loop: {}", chain.join(" -> ")));
            return;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.diags.error(
                from,
                format!(
                    "includes nest deeper than {MAX_DEPTH} files at {}",
                    path.display()
                ),
            );
            return;
        }
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.cannot_read(path, from, required, &e);
                return;
            }
        };
        let id = self.sources.add(path);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        self.stack.push((canonical, path.to_owned()));
        let saved_dir = std::mem::replace(&mut self.dir, dir);
        let result = self.stream(id, file);
        self.dir = saved_dir;
        self.stack.pop();
        if let Err(e) = result {
            self.cannot_read(path, from, required, &e);
        }
        // A definition whose last line ends in `\` ends with its file.
        self.pending_def = None;
    }

    fn cannot_read(&mut self, path: &Path, from: Loc, required: bool, e: &std::io::Error) {
        let what = if self.stack.is_empty() {
            "cannot read configuration file"
        } else {
            "cannot read included file"
        };
        let msg = format!("{what} {}: {}", path.display(), io_reason(e));
        if required {
            self.diags.error(from, msg);
        } else {
            self.diags.warn(from, msg);
        }
    }

    fn text(&mut self, id: FileId, dir: &Path, text: &str) {
        dir.clone_into(&mut self.dir);
        for (n, line) in text.split('\n').enumerate() {
            self.numbered(id, n, line);
        }
    }

    /// Reads lines from `reader` one at a time: a file is never held whole.
    fn stream(&mut self, id: FileId, reader: impl std::io::Read) -> std::io::Result<()> {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, reader);
        let mut buf = Vec::with_capacity(256);
        let mut n = 0;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = String::from_utf8_lossy(bytes);
            self.numbered(id, n, &line);
            n += 1;
        }
    }

    /// Line `n` (0-based) of file `id`.
    fn numbered(&mut self, id: FileId, n: usize, line: &str) {
        let loc = Loc::new(id, u32::try_from(n + 1).unwrap_or(u32::MAX), 1);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\0') {
            self.diags
                .error(loc, "line contains a NUL byte; the line is ignored");
            return;
        }
        self.physical(loc, line);
    }

    fn physical(&mut self, loc: Loc, line: &str) {
        let Decommented {
            text,
            col,
            continued,
            unterminated_quote,
        } = decomment(line);
        if unterminated_quote {
            self.diags.error(
                loc.at_col(col),
                "unterminated quote: a `\"` is missing on this line (the line is ignored)",
            );
            return;
        }
        if let Some(name) = self.pending_def.clone() {
            if let Some(def) = self.defs.get_mut(&name) {
                if !text.is_empty() {
                    def.lines.push(text);
                }
            }
            if !continued {
                self.pending_def = None;
            }
            return;
        }
        if text.is_empty() {
            return;
        }
        self.logical(loc.at_col(col), text, continued);
    }

    /// Counts one line made by expansion; false once the budget is spent.
    fn spend(&mut self, loc: Loc) -> bool {
        self.expanded += 1;
        let max = self.opts.max_expanded_lines.unwrap_or(MAX_EXPANDED_LINES);
        if self.expanded <= max {
            return true;
        }
        if !self.over_budget {
            self.over_budget = true;
            self.diags.error(
                loc,
                format!("~SEQ, ~LST and definitions expand to more than {max} lines; the rest is ignored"),
            );
        }
        false
    }

    /// Processes one line of text (from a file, a definition or a `~SEQ`).
    fn logical(&mut self, loc: Loc, mut text: String, continued: bool) {
        if self.depth > MAX_DEPTH {
            self.diags.error(
                loc,
                "definitions or ~SEQ expand deeper than 32 levels (a definition that uses itself?)",
            );
            return;
        }
        let mut loc = loc;
        if text.starts_with('@') {
            match self.conditional(&text) {
                Some(rest) => {
                    let skipped = text.len() - rest.len();
                    loc.col += u32::try_from(skipped).unwrap_or(0);
                    text = rest.to_owned();
                }
                None => return,
            }
        }
        if text.starts_with('$') {
            if let Some((name, value)) = definition(&text) {
                self.define(name, value, continued);
                return;
            }
        }
        if text.starts_with("~SEQ") || text.starts_with("~LST") {
            self.repeat(loc, &text);
            return;
        }
        // Definitions of the file, or built-ins (`${_ENV NAME}`, `${_HASH}`…)
        // which exist without any definition.
        let builtin = text.contains("${_") || text.contains("$_");
        if (!self.defs.is_empty() || builtin) && text.contains('$') {
            match self.substitute(loc, &text) {
                Substituted::Unchanged => {}
                Substituted::Lines(lines) => {
                    self.depth += 1;
                    for l in lines {
                        if !self.spend(loc) {
                            break;
                        }
                        let d = decomment(&l);
                        if !d.text.is_empty() {
                            self.logical(loc, d.text, false);
                        }
                    }
                    self.depth -= 1;
                    return;
                }
            }
        }
        if let Some((kind, rest)) = include_directive(&text) {
            self.include(loc, kind, rest.trim());
            return;
        }
        self.split_braces(loc, &text);
    }

    /// `@ID rest` / `@^ID rest`: returns `rest` if the line applies to us.
    fn conditional<'t>(&self, text: &'t str) -> Option<&'t str> {
        let (negate, body) = match text.strip_prefix("@^") {
            Some(b) => (true, b),
            None => (false, &text[1..]),
        };
        let end = body.find([' ', '\t'])?;
        let id = &body[..end];
        let matches = self.opts.config_id.as_deref() == Some(id);
        if matches == negate {
            return None;
        }
        Some(body[end..].trim_start_matches([' ', '\t']))
    }

    fn define(&mut self, name: &str, value: &str, continued: bool) {
        let mut def = Def {
            lines: Vec::new(),
            multiline: continued,
        };
        if !value.is_empty() {
            def.lines.push(value.to_owned());
        }
        self.defs.insert(name.to_owned(), def);
        if continued {
            self.pending_def = Some(name.to_owned());
        }
    }

    /// `~SEQ(var, start, step, end) text` and `~LST(vars, values…) text`.
    fn repeat(&mut self, loc: Loc, text: &str) {
        let parsed = if text.starts_with("~SEQ") {
            self.parse_seq(text)
        } else {
            parse_lst(text).map(|(sets, body)| (Box::new(sets.into_iter()) as Repetitions, body))
        };
        let (sets, body) = match parsed {
            Ok(p) => p,
            Err(why) => {
                let which = &text[..4];
                self.diags
                    .error(loc, format!("invalid {which} specification: {why}"));
                return;
            }
        };
        self.depth += 1;
        for set in sets {
            for (var, value) in set {
                self.defs.insert(
                    var,
                    Def {
                        lines: vec![value],
                        multiline: false,
                    },
                );
            }
            if !self.spend(loc) {
                break;
            }
            self.logical(loc, body.clone(), false);
        }
        self.depth -= 1;
    }

    fn parse_seq(&mut self, text: &str) -> Result<(Repetitions, String), String> {
        let mut p = &text[4..];
        let hex = p.starts_with('x');
        if hex {
            p = &p[1..];
        }
        let p = p.trim_start();
        let p = p.strip_prefix('(').ok_or("expected `(` after ~SEQ")?;
        let close = p.find(')').ok_or("missing `)`")?;
        let (inside, body) = (&p[..close], p[close + 1..].trim_start());
        let mut parts = inside.split(',').map(str::trim);
        let var = parts
            .next()
            .filter(|v| !v.is_empty())
            .ok_or("missing variable name")?;
        let nums: Vec<String> = parts.map(str::to_owned).collect();
        let mut values = Vec::new();
        for n in &nums {
            // Parameters may themselves be definitions.
            let n = match self.substitute(Loc::default(), n) {
                Substituted::Lines(l) => l.join(" "),
                Substituted::Unchanged => n.clone(),
            };
            values.push(parse_c_long(n.trim()).ok_or_else(|| format!("`{n}` is not a number"))?);
        }
        let (start, step, end) = match values.as_slice() {
            [end] => (
                if *end < 0 { -1 } else { 1 },
                if *end < 1 { -1 } else { 1 },
                *end,
            ),
            [start, end] => (*start, if start <= end { 1 } else { -1 }, *end),
            [start, step, end] => (*start, *step, *end),
            _ => return Err("expected 1 to 3 numbers".into()),
        };
        if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
            return Err(format!("the step {step} never gets from {start} to {end}"));
        }
        if hex && (start < 0 || end < 0) {
            return Err("~SEQx is only valid for positive numbers".into());
        }
        if (end - start) / step >= MAX_REPEAT {
            return Err(format!("more than {MAX_REPEAT} repetitions"));
        }
        let count = (end - start) / step + 1;
        let var = var.to_owned();
        let sets = (0..count).map(move |n| {
            let i = start + n * step;
            let v = if hex { format!("{i:x}") } else { i.to_string() };
            vec![(var.clone(), v)]
        });
        Ok((Box::new(sets), body.to_owned()))
    }

    fn substitute(&mut self, loc: Loc, text: &str) -> Substituted {
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            match self.reference(after, text) {
                Some((consumed, Replacement::Text(value))) => {
                    if out.len() + value.len() + rest.len() > MAX_LINE {
                        self.diags.error(
                            loc,
                            format!("substituting definitions makes this line longer than {MAX_LINE} bytes; the line is ignored"),
                        );
                        return Substituted::Lines(Vec::new());
                    }
                    out.push_str(&value);
                    rest = &after[consumed..];
                    changed = true;
                }
                Some((_, Replacement::Lines(lines))) => return Substituted::Lines(lines),
                None => {
                    if let Some(err) = Self::bad_reference(after) {
                        self.diags.error(loc, err);
                    }
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        if changed {
            Substituted::Lines(vec![out])
        } else {
            Substituted::Unchanged
        }
    }

    /// A use of a definition at the start of `after` (the text after `$`):
    /// how many bytes it spans and what replaces it.
    fn reference(&self, after: &str, whole_line: &str) -> Option<(usize, Replacement)> {
        if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find('}')?;
            let body = &inner[..close];
            let mut words = body.split_whitespace();
            let name = words.next()?;
            if !is_name(name) || body.starts_with([' ', '\t']) {
                return None;
            }
            let params: Vec<&str> = words.collect();
            let value = self.value_of(name, &params, whole_line == format!("${{{body}}}"))?;
            return Some((close + 2, value));
        }
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let name = &after[..len];
        if !is_name(name) {
            return None;
        }
        match after[len..].chars().next() {
            None | Some(' ' | '\t' | ',' | ')') => {}
            Some(_) => return None,
        }
        let value = self.value_of(name, &[], whole_line == format!("${name}"))?;
        Some((len, value))
    }

    fn bad_reference(after: &str) -> Option<String> {
        let inner = after.strip_prefix('{')?;
        let body = &inner[..inner.find('}')?];
        let mut words = body.split_whitespace();
        let name = words.next()?;
        let params: Vec<&str> = words.collect();
        match (name, params.len()) {
            ("_RANDOM", n) if n > 2 || params.iter().any(|p| p.parse::<u64>().is_err()) => {
                Some("${_RANDOM} takes at most two numbers: ${_RANDOM MIN MAX}".to_owned())
            }
            ("_ENV", n) if n != 1 => Some("${_ENV} takes one name: ${_ENV NAME}".to_owned()),
            _ => None,
        }
    }

    fn value_of(&self, name: &str, params: &[&str], whole_line: bool) -> Option<Replacement> {
        if let Some(def) = self.defs.get(name) {
            if !params.is_empty() {
                return None;
            }
            if def.multiline {
                // Multi-line definitions only expand when they are the whole line.
                return whole_line.then(|| Replacement::Lines(def.lines.clone()));
            }
            return Some(Replacement::Text(def.lines.concat()));
        }
        let text = match (name, params) {
            ("_PWD", []) => std::fs::canonicalize(&self.dir)
                .unwrap_or_else(|_| self.dir.clone())
                .display()
                .to_string(),
            ("_INSTANCE", []) => self.opts.config_id.clone().unwrap_or_default(),
            ("_HASH", []) => "#".to_owned(),
            ("_BANG", []) => "!".to_owned(),
            ("_ENV", [var]) => std::env::var(var).unwrap_or_default(),
            ("_RANDOM", p) if p.len() <= 2 => {
                let nums: Option<Vec<u64>> = p.iter().map(|s| s.parse().ok()).collect();
                let nums = nums?;
                let min = nums.first().copied().unwrap_or(0);
                let max = nums.get(1).copied().unwrap_or(32767).max(min);
                (min + pseudo_random() % (max - min + 1)).to_string()
            }
            _ => return None,
        };
        Some(Replacement::Text(text))
    }

    fn include(&mut self, loc: Loc, kind: char, pattern: &str) {
        if pattern.is_empty() {
            self.diags
                .error(loc, "include needs a file name or pattern");
            return;
        }
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.dir.join(pattern)
        };
        let is_glob = pattern.contains(['*', '?', '[']);
        if !is_glob {
            self.depth += 1;
            self.file(&full, loc, true);
            self.depth -= 1;
            return;
        }
        let matches: Vec<PathBuf> = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect(),
            Err(e) => {
                self.diags.error(
                    loc,
                    format!("invalid include pattern `{pattern}`: {}", e.msg),
                );
                return;
            }
        };
        if matches.is_empty() {
            // `includew`/`includea` make an empty glob an error, as keepalived's do.
            let msg = format!("no files match include pattern `{pattern}`");
            if matches!(kind, 'w' | 'a') {
                self.diags.error(loc, msg);
            } else {
                self.diags.warn(loc, msg);
            }
        }
        let mut matches = matches;
        matches.sort();
        self.depth += 1;
        for path in matches {
            self.file(&path, loc, true);
        }
        self.depth -= 1;
    }

    /// Emits `text` as lines, each brace (outside quotes) on a line of its own.
    fn split_braces(&mut self, loc: Loc, text: &str) {
        let mut rest = text;
        let mut col = loc.col;
        loop {
            let trimmed = rest.trim_start_matches([' ', '\t']);
            col += u32::try_from(rest.len() - trimmed.len()).unwrap_or(0);
            rest = trimmed.trim_end_matches([' ', '\t']);
            if rest.is_empty() {
                return;
            }
            let at = loc.at_col(col);
            match find_brace(rest) {
                Some(0) => {
                    let kind = if rest.starts_with('{') {
                        LineKind::Open
                    } else {
                        LineKind::Close
                    };
                    (self.sink)(
                        Line {
                            loc: at,
                            kind,
                            raw: rest[..1].to_owned(),
                        },
                        self.diags,
                    );
                    rest = &rest[1..];
                    col += 1;
                }
                Some(i) => {
                    self.words(at, &rest[..i]);
                    col += u32::try_from(i).unwrap_or(0);
                    rest = &rest[i..];
                }
                None => {
                    self.words(at, rest);
                    return;
                }
            }
        }
    }

    fn words(&mut self, loc: Loc, text: &str) {
        let text = text.trim_end_matches([' ', '\t']);
        let (words, unmatched) = split_words(text, loc.col);
        if let Some(col) = unmatched {
            self.diags.error(loc.at_col(col), "unmatched quote");
        }
        if !words.is_empty() {
            (self.sink)(
                Line {
                    loc,
                    kind: LineKind::Words(words),
                    raw: text.to_owned(),
                },
                self.diags,
            );
        }
    }
}

/// The variable settings of each repetition of a `~SEQ`/`~LST` line.
type Repetitions = Box<dyn Iterator<Item = Vec<(String, String)>>>;

enum Substituted {
    Unchanged,
    Lines(Vec<String>),
}

enum Replacement {
    Text(String),
    Lines(Vec<String>),
}

fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `$NAME=value` (spaces allowed before `=`): the name and the value.
fn definition(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix('$')?;
    let len = body
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let name = &body[..len];
    if !is_name(name) {
        return None;
    }
    let rest = body[len..].trim_start_matches([' ', '\t']);
    let value = rest.strip_prefix('=')?;
    Some((name, value.trim_matches([' ', '\t'])))
}

/// `include`, `includer`, `includem`, `includew`, `includeb`, `includea`
/// followed by white space: the variant letter (`' '` for plain) and the rest.
fn include_directive(text: &str) -> Option<(char, &str)> {
    let rest = text.strip_prefix("include")?;
    let mut chars = rest.chars();
    match chars.next()? {
        ' ' | '\t' => Some((' ', rest)),
        c @ ('r' | 'm' | 'w' | 'b' | 'a') if matches!(chars.next(), Some(' ' | '\t')) => {
            Some((c, &rest[2..]))
        }
        _ => None,
    }
}

struct Decommented {
    text: String,
    /// 1-based column of the first character kept.
    col: u32,
    /// The line ended in `\` (outside quotes).
    continued: bool,
    unterminated_quote: bool,
}

/// keepalived's `decomment()`: drops leading white space, a comment from an
/// unquoted `#` or `!`, trailing white space, and notes a trailing `\`. `\#` and
/// `\!` outside quotes stand for the characters themselves.
fn decomment(line: &str) -> Decommented {
    let start = line.len() - line.trim_start_matches([' ', '\t']).len();
    let body = &line[start..];
    let mut out = String::with_capacity(body.len());
    let mut quote = false;
    let mut continued = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' => match chars.peek() {
                None => {
                    continued = true;
                    break;
                }
                Some(&n @ ('#' | '!')) if !quote => {
                    out.push(n);
                    chars.next();
                }
                Some(&n) => {
                    out.push('\\');
                    out.push(n);
                    chars.next();
                }
            },
            '#' | '!' if !quote => break,
            _ => out.push(c),
        }
    }
    let trimmed = out.trim_end_matches([' ', '\t']).len();
    out.truncate(trimmed);
    Decommented {
        text: out,
        col: u32::try_from(start + 1).unwrap_or(1),
        continued,
        unterminated_quote: quote,
    }
}

/// The byte offset of the first `{` or `}` outside double quotes.
fn find_brace(text: &str) -> Option<usize> {
    let mut quote = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quote = !quote,
            b'{' | b'}' if !quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// keepalived's `alloc_strvec_r()`: words split on white space; a word that
/// starts with `"` runs to the next `"`. Returns the words and, if a quote was
/// left open, its column.
pub fn split_words(text: &str, base_col: u32) -> (Vec<Word>, Option<u32>) {
    let mut words = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let col = |i: usize| base_col + u32::try_from(i).unwrap_or(0);
    while i < bytes.len() {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        if bytes[i] == b'"' {
            match text[i + 1..].find('"') {
                Some(len) => {
                    words.push(Word {
                        text: text[i + 1..i + 1 + len].to_owned(),
                        col: col(start),
                        quoted: true,
                    });
                    i += len + 2;
                }
                None => return (words, Some(col(start))),
            }
        } else {
            while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'"') {
                i += 1;
            }
            words.push(Word {
                text: text[start..i].to_owned(),
                col: col(start),
                quoted: false,
            });
        }
    }
    (words, None)
}

/// keepalived's `alloc_strvec_quoted()`, its first pass over a notify
/// keyword's line: words split on white space, `"…"` and `'…'` group (the
/// quotes go), a backslash and the character after it are kept as written
/// (for [`split_quoted_escaped`] to decode in the second pass) and that
/// character neither opens nor closes a quote.
pub fn split_quoted(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, ' ' | '\t') => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    word.push('\\');
                    word.push(chars.next().ok_or("a `\\` ends the line")?);
                }
                (_, c) => word.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("missing terminating {q}"));
        }
        words.push(word);
    }
}

/// keepalived's `alloc_strvec_quoted_escaped()`, used by keywords such as
/// `script` and `notify`: words split on white space, `"…"` and `'…'` group,
/// backslash escapes (`\n`, `\t`, `\x41`, `\101`, `\"`…) are decoded.
pub fn split_quoted_escaped(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, ' ' | '\t') => break,
                (None, '"' | '\'') => {
                    quote = Some(c);
                    chars.next();
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    chars.next();
                }
                (_, '\\') => {
                    chars.next();
                    word.push(unescape(&mut chars).ok_or("a `\\` ends the line")?);
                }
                (_, c) => {
                    word.push(c);
                    chars.next();
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!("missing terminating {q}"));
        }
        words.push(word);
    }
}

fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let c = chars.next()?;
    Some(match c {
        'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
            let mut v = 0u32;
            for _ in 0..2 {
                match chars.peek().and_then(|c| c.to_digit(16)) {
                    Some(d) => {
                        v = v * 16 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            char::from_u32(v).unwrap_or('?')
        }
        'c' if chars.peek().is_some() => {
            let n = chars.next().map_or(0, |c| c as u32 & 0x1f);
            char::from_u32(n).unwrap_or('?')
        }
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            char::from_u32(v & 0xff).unwrap_or('?')
        }
        'a' => '\u{7}',
        'b' => '\u{8}',
        'E' => '\u{1b}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        other => other,
    })
}

#[allow(clippy::type_complexity)]
fn parse_lst(text: &str) -> Result<(Vec<Vec<(String, String)>>, String), String> {
    // ~LST(var, v1, v2, …) text   or   ~LST({a,b}, {1,2}, {3,4}) text
    let p = text[4..].trim_start();
    let p = p.strip_prefix('(').ok_or("expected `(` after ~LST")?;
    let close = matching_paren(p).ok_or("missing `)`")?;
    let (inside, body) = (&p[..close], p[close + 1..].trim_start());
    let groups = split_groups(inside)?;
    let (vars, values) = groups.split_first().ok_or("no variables")?;
    if vars.is_empty() || values.is_empty() {
        return Err("needs variables and at least one value".into());
    }
    let mut sets = Vec::new();
    for value in values {
        if value.len() > vars.len() {
            return Err("more values than variables".into());
        }
        let set = vars
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), value.get(i).cloned().unwrap_or_default()))
            .collect();
        sets.push(set);
    }
    Ok((sets, body.to_owned()))
}

fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ')' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a, b` → [[a], [b]];  `{a,b}, {1,2}` → [[a,b], [1,2]].
fn split_groups(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut groups = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').ok_or("missing `}`")?;
            groups.push(
                inner[..end]
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect(),
            );
            rest = inner[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            groups.push(vec![rest[..end].trim().to_owned()]);
            rest = &rest[end..];
        }
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(groups)
}

/// `strtol(s, …, 0)`: decimal, `0x` hex or leading-`0` octal, with a sign.
fn parse_c_long(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn pseudo_random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> (Vec<String>, Vec<String>) {
        lex_with(text, None)
    }

    fn lex_with(text: &str, id: Option<&str>) -> (Vec<String>, Vec<String>) {
        let mut diags = Diagnostics::default();
        let opts = Options {
            config_id: id.map(str::to_owned),
            ..Options::default()
        };
        let lexed = lex_str(Path::new("t.conf"), text, &opts, &mut diags);
        let lines = lexed
            .lines
            .iter()
            .map(|l| match &l.kind {
                LineKind::Open => format!("{}:{} {{", l.loc.line, l.loc.col),
                LineKind::Close => format!("{}:{} }}", l.loc.line, l.loc.col),
                LineKind::Words(w) => format!(
                    "{}:{} {}",
                    l.loc.line,
                    l.loc.col,
                    w.iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join("|")
                ),
            })
            .collect();
        let diags = diags
            .into_vec()
            .iter()
            .map(|d| format!("{}:{} {}", d.loc.line, d.loc.col, d.message))
            .collect();
        (lines, diags)
    }

    #[test]
    fn comments_braces_and_columns() {
        let (lines, diags) = lex("vrrp_instance VI_1 {  # hello\n  state MASTER ! bang\n}\n");
        assert_eq!(
            lines,
            [
                "1:1 vrrp_instance|VI_1",
                "1:20 {",
                "2:3 state|MASTER",
                "3:1 }"
            ]
        );
        assert!(diags.is_empty());
    }

    #[test]
    fn braces_on_one_line_split_into_lines() {
        let (lines, _) = lex("virtual_ipaddress { 198.51.100.250/24 dev eth0 }");
        assert_eq!(
            lines,
            [
                "1:1 virtual_ipaddress",
                "1:19 {",
                "1:21 198.51.100.250/24|dev|eth0",
                "1:48 }"
            ]
        );
    }

    #[test]
    fn quotes_keep_spaces_and_hide_comment_characters() {
        let (lines, _) = lex("script \"/bin/check # not a comment\" arg");
        assert_eq!(lines, ["1:1 script|/bin/check # not a comment|arg"]);
        let (lines, _) = lex("smtp_server 127.0.0.1\\#x");
        assert_eq!(lines, ["1:1 smtp_server|127.0.0.1#x"]);
    }

    #[test]
    fn unterminated_quote_is_an_error_with_a_column() {
        let (_, diags) = lex("  script \"/bin/true");
        assert!(
            diags.iter().any(|d| d.contains("unterminated quote")),
            "{diags:?}"
        );
    }

    #[test]
    fn conditional_lines_follow_the_config_id() {
        let text = "@lb1 priority 100\n@lb2 priority 90\n@^lb1 state BACKUP\n";
        let (lines, _) = lex_with(text, Some("lb1"));
        assert_eq!(lines, ["1:6 priority|100"]);
        let (lines, _) = lex_with(text, Some("lb2"));
        assert_eq!(lines, ["2:6 priority|90", "3:7 state|BACKUP"]);
        let (lines, _) = lex_with(text, None);
        assert_eq!(lines, ["3:7 state|BACKUP"]);
    }

    #[test]
    fn definitions_replace_plain_braced_and_multiline() {
        let text = "$IF=eth0\n$PRIO = 100\n$ADDRS=198.51.100.1 \\\n  198.51.100.2\ninterface $IF\npriority ${PRIO}\n$ADDRS\nx $UNKNOWN\n";
        let (lines, diags) = lex(text);
        assert_eq!(
            lines,
            [
                "5:1 interface|eth0",
                "6:1 priority|100",
                "7:1 198.51.100.1",
                "7:1 198.51.100.2",
                "8:1 x|$UNKNOWN"
            ]
        );
        assert!(diags.is_empty(), "{diags:?}");
    }

    #[test]
    fn builtin_definitions() {
        // As in keepalived, the text is decommented again after substitution,
        // so `#` and `!` survive only inside quotes.
        let (lines, _) = lex("$X=1\na \"${_HASH}${_BANG}\" ${_RANDOM 5 5} ${_BANG} gone\n");
        assert_eq!(lines, ["2:1 a|#!|5"]);
        let (lines, _) = lex_with("$X=1\nid ${_INSTANCE}\n", Some("lb9"));
        assert_eq!(lines, ["2:1 id|lb9"]);
    }

    #[test]
    fn seq_repeats_a_line() {
        let (lines, diags) =
            lex("~SEQ(n, 1, 2, 5) real_server 198.51.100.$n 80\n~SEQx(h, 9, 11) x $h\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            lines,
            [
                "1:1 real_server|198.51.100.1|80",
                "1:1 real_server|198.51.100.3|80",
                "1:1 real_server|198.51.100.5|80",
                "2:1 x|9",
                "2:1 x|a",
                "2:1 x|b"
            ]
        );
        let (_, diags) = lex("~SEQ(n, 1, -1, 5) x $n\n");
        assert!(diags[0].contains("invalid ~SEQ"), "{diags:?}");
    }

    #[test]
    fn lst_repeats_with_value_sets() {
        let (lines, diags) = lex("~LST({a,b}, {1,2}, {3,4}) v $a $b\n~LST(x, p, q) w $x\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(lines, ["1:1 v|1|2", "1:1 v|3|4", "2:1 w|p", "2:1 w|q"]);
    }

    #[test]
    fn self_referencing_definition_is_caught() {
        let (_, diags) = lex("$A=$A x\ny $A\n");
        assert!(diags.iter().any(|d| d.contains("deeper than")), "{diags:?}");
    }

    #[test]
    fn expansion_bombs_are_stopped() {
        use std::fmt::Write as _;
        let mut text = String::from("$A=xxxx\n");
        for (prev, name) in ["A", "B", "C", "D", "E", "F", "G", "H", "I"]
            .iter()
            .zip(["B", "C", "D", "E", "F", "G", "H", "I", "J"])
        {
            let _ = writeln!(text, "${name}=${{{prev}}}${{{prev}}}${{{prev}}}${{{prev}}}");
        }
        text.push_str("y $J\n");
        let (_, diags) = lex(&text);
        assert!(diags.iter().any(|d| d.contains("longer than")), "{diags:?}");
        let mut diags = Diagnostics::default();
        let opts = Options {
            max_expanded_lines: Some(5000),
            ..Options::default()
        };
        let text = "~SEQ(a, 1000000) ~SEQ(b, 1000000) x $a $b\n";
        let lexed = lex_str(Path::new("t"), text, &opts, &mut diags);
        let diags: Vec<String> = diags.into_vec().into_iter().map(|d| d.message).collect();
        assert_eq!(
            diags,
            ["~SEQ, ~LST and definitions expand to more than 5000 lines; the rest is ignored"]
        );
        assert!(lexed.lines.len() < 5000);
    }

    #[test]
    fn escaped_split_decodes_like_keepalived() {
        assert_eq!(
            split_quoted_escaped(r#"/bin/n "a b" 'c d' e\ f \x41\101\n"#).unwrap(),
            ["/bin/n", "a b", "c d", "e f", "AA\n"]
        );
        assert!(split_quoted_escaped("\"open").is_err());
    }

    #[test]
    fn include_directive_variants() {
        assert_eq!(include_directive("include /x").map(|x| x.0), Some(' '));
        assert_eq!(include_directive("includew /x").map(|x| x.0), Some('w'));
        assert_eq!(include_directive("includex /x"), None);
        assert_eq!(include_directive("include_check"), None);
    }

    #[test]
    fn c_numbers() {
        assert_eq!(parse_c_long("0x10"), Some(16));
        assert_eq!(parse_c_long("010"), Some(8));
        assert_eq!(parse_c_long("-3"), Some(-3));
        assert_eq!(parse_c_long("z"), None);
    }
}
