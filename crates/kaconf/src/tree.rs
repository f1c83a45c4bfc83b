//! Logical lines into a tree of statements: a statement is a line of words,
//! and a `{ … }` that follows it (on the same line or the next) is its block.

use crate::diag::{Diagnostics, Loc};
use crate::lexer::{Line, LineKind, Word};

/// One keyword line and, if it has one, its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub loc: Loc,
    pub words: Vec<Word>,
    /// The line's text after preprocessing.
    pub raw: String,
    pub block: Option<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub open: Loc,
    pub stmts: Vec<Stmt>,
}

impl Stmt {
    /// The first word.
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    /// The words after the keyword.
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The location of argument `i` (0-based), or the line's end if absent.
    pub fn arg_loc(&self, i: usize) -> Loc {
        if let Some(w) = self.words.get(i + 1) {
            return self.loc.at_col(w.col);
        }
        let end = self.words.last().map_or(self.loc.col, |w| {
            w.col + u32::try_from(w.text.len()).unwrap_or(0)
        });
        self.loc.at_col(end)
    }

    /// The raw text after the keyword (for keywords that split it themselves).
    pub fn raw_args(&self) -> &str {
        let kw = self.keyword();
        let raw = self.raw.trim_start();
        raw.strip_prefix(kw).unwrap_or(raw).trim_start()
    }
}

/// Builds statement trees from lines fed one at a time, handing back each
/// top-level statement as soon as it is complete, so a whole configuration is
/// never held as a tree.
#[derive(Debug)]
pub struct TreeBuilder {
    /// Open levels; `levels[0]` is the top level, holding at most the one
    /// top-level statement not yet known to be complete.
    levels: Vec<Level>,
}

#[derive(Debug)]
struct Level {
    stmts: Vec<Stmt>,
    /// Where its `{` was (`None` for the top level).
    open: Option<Loc>,
    /// Opened by a `{` with no keyword before it: its statements are dropped.
    orphan: bool,
}

impl Default for TreeBuilder {
    fn default() -> Self {
        Self {
            levels: vec![Level {
                stmts: Vec::new(),
                open: None,
                orphan: false,
            }],
        }
    }
}

impl TreeBuilder {
    /// Feeds one line; returns a top-level statement that is now complete.
    pub fn push(&mut self, line: Line, diags: &mut Diagnostics) -> Option<Stmt> {
        match line.kind {
            LineKind::Words(words) => {
                let stmt = Stmt {
                    loc: line.loc,
                    words,
                    raw: line.raw,
                    block: None,
                };
                let top = self.levels.len() == 1;
                let level = self.levels.last_mut()?;
                // At the top level a new statement completes the one before.
                let done = if top { level.stmts.pop() } else { None };
                level.stmts.push(stmt);
                done
            }
            LineKind::Open => {
                let owner_free = self
                    .levels
                    .last()
                    .and_then(|l| l.stmts.last())
                    .is_some_and(|s| s.block.is_none());
                if !owner_free {
                    diags.error(
                        line.loc,
                        "`{` with no keyword before it (a block must follow the keyword it belongs to)",
                    );
                }
                self.levels.push(Level {
                    stmts: Vec::new(),
                    open: Some(line.loc),
                    orphan: !owner_free,
                });
                None
            }
            LineKind::Close => {
                if self.levels.len() == 1 {
                    diags.error(line.loc, "unbalanced braces: `}` has no matching `{`");
                    return None;
                }
                let level = self.levels.pop()?;
                if level.orphan {
                    return None;
                }
                let parent = self.levels.last_mut()?;
                let owner = parent.stmts.last_mut()?;
                owner.block = Some(Block {
                    open: level.open.unwrap_or(line.loc),
                    stmts: level.stmts,
                });
                if self.levels.len() == 1 {
                    return self.levels[0].stmts.pop();
                }
                None
            }
        }
    }

    /// Ends the input: reports blocks left open (closing them so what they
    /// hold is still read) and returns the last top-level statement.
    pub fn finish(mut self, diags: &mut Diagnostics) -> Option<Stmt> {
        while self.levels.len() > 1 {
            let level = self.levels.pop()?;
            let open = level.open.unwrap_or_default();
            let owner = self.levels.last_mut().and_then(|l| l.stmts.last_mut());
            let name = owner
                .as_ref()
                .map_or_else(String::new, |o| format!(" for `{}`", o.keyword()));
            diags.error(
                open,
                format!("unbalanced braces: this `{{`{name} is never closed"),
            );
            if let Some(owner) = owner {
                if !level.orphan {
                    owner.block = Some(Block {
                        open,
                        stmts: level.stmts,
                    });
                }
            }
        }
        self.levels.pop().and_then(|mut l| l.stmts.pop())
    }
}

/// Builds the statement trees of all `lines`; brace errors go to `diags`.
pub fn build(lines: Vec<Line>, diags: &mut Diagnostics) -> Vec<Stmt> {
    let mut builder = TreeBuilder::default();
    let mut out = Vec::new();
    for line in lines {
        out.extend(builder.push(line, diags));
    }
    out.extend(builder.finish(diags));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::{lex_str, Options};
    use std::path::Path;

    fn tree(text: &str) -> (Vec<Stmt>, Vec<String>) {
        let mut diags = Diagnostics::default();
        let lexed = lex_str(Path::new("t"), text, &Options::default(), &mut diags);
        let stmts = build(lexed.lines, &mut diags);
        let msgs = diags
            .into_vec()
            .into_iter()
            .map(|d| format!("{}:{} {}", d.loc.line, d.loc.col, d.message))
            .collect();
        (stmts, msgs)
    }

    #[test]
    fn blocks_attach_to_the_keyword_before_them() {
        let (stmts, diags) = tree("a x {\n b 1\n c\n {\n  d\n }\n}\ne\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(stmts.len(), 2);
        let a = &stmts[0];
        assert_eq!((a.keyword(), a.args().len()), ("a", 1));
        let inner = &a.block.as_ref().unwrap().stmts;
        assert_eq!(inner.len(), 2);
        assert_eq!(inner[1].block.as_ref().unwrap().stmts[0].keyword(), "d");
        assert!(stmts[1].block.is_none());
    }

    #[test]
    fn unbalanced_braces_are_reported_where_they_are() {
        let (_, diags) = tree("a {\n b\n");
        assert_eq!(
            diags,
            ["1:3 unbalanced braces: this `{` for `a` is never closed"]
        );
        let (_, diags) = tree("a\n}\n");
        assert_eq!(diags, ["2:1 unbalanced braces: `}` has no matching `{`"]);
        let (_, diags) = tree("{\n}\n");
        assert!(diags[0].starts_with("1:1 `{` with no keyword"), "{diags:?}");
    }
}
