//! Blocks of keywords: the [`section!`] macro declares a block's struct and its
//! keyword table in one place, and [`Section`] reads a block with it — known
//! keywords into typed fields, old names through aliases (with a note),
//! keywords keepalived has and we do not act on with a "not yet supported"
//! warning, and unknown ones with a "did you mean" warning.

use crate::diag::Loc;
use crate::tree::Stmt;
use crate::value::{Cx, Emitter, Value};

/// A block's keyword table and its typed fields.
pub trait Section: Default {
    /// The block's keyword, for messages (`vrrp_instance`).
    const NAME: &'static str;
    /// Keywords read into typed fields.
    fn keywords() -> Vec<&'static str>;
    /// keepalived keywords kept as written and not acted on (they warn).
    fn unsupported() -> Vec<&'static str>;
    /// Typed keywords that keepalived-rs has no plan to act on (they warn).
    fn not_planned() -> Vec<&'static str>;
    /// Old or alternative names: (alias, keyword, note).
    fn aliases() -> Vec<(&'static str, &'static str, &'static str)>;
    /// Whether `keyword` is in [`Section::not_planned`] (without allocating:
    /// this runs for every statement).
    fn is_not_planned(keyword: &str) -> bool;

    /// Reads `stmt` into the field for `keyword`; false if there is none.
    fn set(&mut self, keyword: &str, stmt: &Stmt, cx: &mut Cx) -> bool;
    /// Writes every field that is set.
    fn emit_body(&self, out: &mut Emitter);
    /// Where statements with unsupported keywords are kept.
    fn unsupported_mut(&mut self) -> &mut Extras;
    /// Gives back the spare capacity of every repeatable field.
    fn shrink(&mut self);

    /// Reads a whole block.
    fn read(stmts: &[Stmt], cx: &mut Cx) -> Self {
        let mut section = Self::default();
        for stmt in stmts {
            section.read_stmt(stmt, cx);
        }
        section.shrink();
        section
    }

    /// Reads one statement of the block.
    fn read_stmt(&mut self, stmt: &Stmt, cx: &mut Cx) {
        self.dispatch(stmt.keyword(), stmt, cx);
    }

    /// Reads `stmt` as keyword `keyword` (which differs for an alias).
    fn dispatch(&mut self, keyword: &str, stmt: &Stmt, cx: &mut Cx) {
        if self.set(keyword, stmt, cx) {
            if Self::is_not_planned(keyword) {
                cx.warn(
                    stmt.loc,
                    format!(
                        "`{keyword}` ({}) is not yet supported by keepalived-rs; read but ignored",
                        Self::NAME
                    ),
                );
            }
            return;
        }
        if let Some((_, target, note)) = Self::aliases().into_iter().find(|(a, _, _)| *a == keyword)
        {
            cx.warn(
                stmt.loc,
                format!("`{keyword}` is {note}; read as `{target}`"),
            );
            if target != keyword {
                self.dispatch(target, stmt, cx);
            }
            return;
        }
        if Self::unsupported().contains(&keyword) {
            cx.warn(
                stmt.loc,
                format!(
                    "`{keyword}` ({}) is not yet supported by keepalived-rs; ignored",
                    Self::NAME
                ),
            );
            self.unsupported_mut().push(RawStmt::from_stmt(stmt));
            return;
        }
        let aliases: Vec<&str> = Self::aliases().into_iter().map(|(a, _, _)| a).collect();
        let known: Vec<&str> = Self::keywords()
            .into_iter()
            .chain(Self::unsupported())
            .chain(aliases)
            .collect();
        let hint = match nearest(keyword, known.iter()) {
            Some(k) => format!("; did you mean `{k}`?"),
            None => String::new(),
        };
        let skipped = if stmt.block.is_some() {
            " (its block is skipped)"
        } else {
            ""
        };
        cx.warn(
            stmt.loc,
            format!(
                "unknown keyword `{keyword}` in {}{skipped}{hint}",
                Self::NAME
            ),
        );
    }
}

/// The statements of a block that keepalived-rs keeps but does not act on.
/// Almost always empty, so it costs one pointer, not a `Vec`'s three words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::box_collection)] // one pointer when empty, which it nearly always is
pub struct Extras(Option<Box<Vec<RawStmt>>>);

impl Extras {
    pub fn push(&mut self, stmt: RawStmt) {
        self.0.get_or_insert_with(Box::default).push(stmt);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, RawStmt> {
        self.0.as_deref().map_or([].iter(), |v| v.iter())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|v| v.is_empty())
    }

    pub fn shrink(&mut self) {
        if let Some(v) = &mut self.0 {
            v.shrink_to_fit();
        }
    }
}

impl<'a> IntoIterator for &'a Extras {
    type Item = &'a RawStmt;
    type IntoIter = std::slice::Iter<'a, RawStmt>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A statement kept as written, for keywords we read but do not interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStmt {
    pub words: Vec<String>,
    pub block: Option<Vec<RawStmt>>,
}

impl RawStmt {
    pub fn from_stmt(stmt: &Stmt) -> Self {
        Self {
            words: stmt.words.iter().map(|w| w.text.clone()).collect(),
            block: stmt
                .block
                .as_ref()
                .map(|b| b.stmts.iter().map(Self::from_stmt).collect()),
        }
    }

    pub fn emit(&self, out: &mut Emitter) {
        match &self.block {
            None => out.line(&self.words),
            Some(inner) => {
                out.open(&self.words);
                for s in inner {
                    s.emit(out);
                }
                out.close();
            }
        }
    }
}

/// Where something was written. Two origins always compare equal: where a
/// thing is written is not part of what it means (round-trip tests rely on it).
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Origin(pub Loc);

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// `KEYWORD NAME { … }`: a named block (`vrrp_instance VI_1 { … }`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named<T> {
    pub name: String,
    pub origin: Origin,
    pub body: T,
}

impl<T: Section> Value for Named<T> {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let Some(name) = stmt.args().first() else {
            cx.error(
                stmt.arg_loc(0),
                format!("`{}` needs a name", stmt.keyword()),
            );
            return None;
        };
        if let Some(extra) = stmt.args().get(1) {
            cx.warn(
                stmt.loc.at_col(extra.col),
                format!(
                    "`{} {}` takes one name; `{}` ignored",
                    stmt.keyword(),
                    name.text,
                    extra.text
                ),
            );
        }
        let Some(block) = &stmt.block else {
            cx.error(
                stmt.arg_loc(1),
                format!("`{} {}` needs a `{{ … }}` block", stmt.keyword(), name.text),
            );
            return None;
        };
        Some(Self {
            name: name.text.clone(),
            origin: Origin(stmt.loc),
            body: T::read(&block.stmts, cx),
        })
    }

    fn emit(&self, keyword: &str, out: &mut Emitter) {
        out.open(&[keyword, self.name.as_str()]);
        self.body.emit_body(out);
        out.close();
    }
}

/// Writes `keyword { … }` with the body of `section`.
pub fn emit_block<T: Section>(keyword: &str, section: &T, out: &mut Emitter) {
    out.open(&[keyword]);
    section.emit_body(out);
    out.close();
}

/// `KEYWORD { … }`: an unnamed sub-block (`global_defs`, `authentication`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sub<T>(pub T);

impl<T> std::ops::Deref for Sub<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Section> Value for Sub<T> {
    fn parse(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let Some(block) = &stmt.block else {
            cx.error(
                stmt.arg_loc(0),
                format!("`{}` needs a `{{ … }}` block, not a value", stmt.keyword()),
            );
            return None;
        };
        if let Some(extra) = stmt.args().first() {
            cx.warn(
                stmt.loc.at_col(extra.col),
                format!(
                    "`{}` takes a block; `{}` ignored",
                    stmt.keyword(),
                    extra.text
                ),
            );
        }
        Some(Self(T::read(&block.stmts, cx)))
    }

    fn emit(&self, keyword: &str, out: &mut Emitter) {
        emit_block(keyword, &self.0, out);
    }
}

/// Declares a block: its struct, and the keyword of each field. A block may
/// extend another (`extends base: Base`): the base's keywords are read into
/// the field `base` and written first. Several keywords may share a field
/// (`"A" | "B" => f: T`) when `T` records which one it was and writes it back.
macro_rules! section {
    (
        $(#[$m:meta])*
        pub struct $name:ident ($block:literal) $(extends $base:ident : $bty:ty)? {
            $( $(#[$fm:meta])* $kw:literal $(| $kw2:literal)* => $field:ident : $ty:ty, )*
        }
        aliases { $( $alias:literal => $target:literal : $note:literal, )* }
        unsupported [ $( $un:literal ),* $(,)? ]
        $( not_planned [ $( $np:literal ),* $(,)? ] )?
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( /// The keywords this block shares with others.
               pub $base: $bty, )?
            $( $(#[$fm])* pub $field: $ty, )*
            /// keepalived keywords of this block that keepalived-rs reads
            /// but does not act on.
            pub unsupported: $crate::section::Extras,
        }

        impl $crate::section::Section for $name {
            const NAME: &'static str = $block;
            fn keywords() -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut v: Vec<&'static str> = vec![$($kw, $($kw2,)*)*];
                $( v.extend(<$bty as $crate::section::Section>::keywords()); let _ = stringify!($base); )?
                v
            }
            fn unsupported() -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut v: Vec<&'static str> = vec![$($un),*];
                $( v.extend(<$bty as $crate::section::Section>::unsupported()); let _ = stringify!($base); )?
                v
            }
            fn not_planned() -> Vec<&'static str> {
                #[allow(unused_mut)]
                let mut v: Vec<&'static str> = vec![$($($np),*)?];
                $( v.extend(<$bty as $crate::section::Section>::not_planned()); let _ = stringify!($base); )?
                v
            }
            fn is_not_planned(keyword: &str) -> bool {
                let own: &[&str] = &[$($($np),*)?];
                own.contains(&keyword)
                    $( || <$bty as $crate::section::Section>::is_not_planned(keyword) )?
            }
            fn aliases() -> Vec<(&'static str, &'static str, &'static str)> {
                #[allow(unused_mut)]
                let mut v: Vec<(&'static str, &'static str, &'static str)> = vec![$(($alias, $target, $note)),*];
                $( v.extend(<$bty as $crate::section::Section>::aliases()); let _ = stringify!($base); )?
                v
            }

            fn set(
                &mut self,
                keyword: &str,
                stmt: &$crate::tree::Stmt,
                cx: &mut $crate::value::Cx,
            ) -> bool {
                match keyword {
                    $( $kw $(| $kw2)* => { $crate::value::Slot::set(&mut self.$field, stmt, cx); true } )*
                    _ => {
                        $( return $crate::section::Section::set(&mut self.$base, keyword, stmt, cx); )?
                        #[allow(unreachable_code)]
                        false
                    }
                }
            }

            fn emit_body(&self, out: &mut $crate::value::Emitter) {
                $( $crate::section::Section::emit_body(&self.$base, out); )?
                $( $crate::value::Slot::emit(&self.$field, $kw, out); )*
                for raw in self.unsupported.iter() {
                    raw.emit(out);
                }
            }

            fn unsupported_mut(&mut self) -> &mut $crate::section::Extras {
                &mut self.unsupported
            }

            fn shrink(&mut self) {
                $( $crate::section::Section::shrink(&mut self.$base); )?
                $( $crate::value::Slot::shrink(&mut self.$field); )*
                self.unsupported.shrink();
            }
        }
    };
}
pub(crate) use section;

/// The candidate closest to `word` by edit distance, if it is close enough to
/// be a likely typo (at most a third of the word's length, and at least 1).
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("mtp_server", "smtp_server"), 1);
        assert_eq!(edit_distance("cript", "script"), 1);
        assert_eq!(edit_distance("priorty", "priority"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn nearest_picks_the_seed_typos() {
        let kws = ["smtp_server", "smtp_helo_name", "router_id"];
        assert_eq!(nearest("mtp_server", kws.iter()), Some("smtp_server"));
        let kws = ["script", "interval", "weight"];
        assert_eq!(nearest("cript", kws.iter()), Some("script"));
        assert_eq!(nearest("zzzzzz", kws.iter()), None);
    }
}
