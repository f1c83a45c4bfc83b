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

/// Builds the statement tree; brace errors go to `diags`.
pub fn build(lines: Vec<Line>, diags: &mut Diagnostics) -> Vec<Stmt> {
    // Each level: the statements gathered so far, and where its `{` was
    // (`None` for the top level). A level opened by a `{` that has no keyword
    // before it collects its statements but throws them away.
    struct Level {
        stmts: Vec<Stmt>,
        open: Option<Loc>,
        orphan: bool,
    }
    let mut stack = vec![Level {
        stmts: Vec::new(),
        open: None,
        orphan: false,
    }];
    for line in lines {
        let depth = stack.len();
        match line.kind {
            LineKind::Words(words) => {
                if let Some(level) = stack.last_mut() {
                    level.stmts.push(Stmt {
                        loc: line.loc,
                        words,
                        raw: line.raw,
                        block: None,
                    });
                }
            }
            LineKind::Open => {
                let owner_free = stack
                    .last()
                    .and_then(|l| l.stmts.last())
                    .is_some_and(|s| s.block.is_none());
                if !owner_free {
                    diags.error(
                        line.loc,
                        "`{` with no keyword before it (a block must follow the keyword it belongs to)",
                    );
                }
                stack.push(Level {
                    stmts: Vec::new(),
                    open: Some(line.loc),
                    orphan: !owner_free,
                });
            }
            LineKind::Close => {
                if depth == 1 {
                    diags.error(line.loc, "unbalanced braces: `}` has no matching `{`");
                    continue;
                }
                let Some(level) = stack.pop() else { continue };
                if level.orphan {
                    continue;
                }
                if let Some(owner) = stack.last_mut().and_then(|l| l.stmts.last_mut()) {
                    owner.block = Some(Block {
                        open: level.open.unwrap_or(line.loc),
                        stmts: level.stmts,
                    });
                }
            }
        }
    }
    // Close what was left open, innermost first, so the tree is still usable.
    while stack.len() > 1 {
        let Some(level) = stack.pop() else { break };
        let open = level.open.unwrap_or_default();
        let owner = stack.last_mut().and_then(|l| l.stmts.last_mut());
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
    stack.pop().map(|l| l.stmts).unwrap_or_default()
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
