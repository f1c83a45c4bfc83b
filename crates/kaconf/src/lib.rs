//! `keepalived.conf`, read as keepalived reads it.
//!
//! Four stages, one module each:
//! 1. [`lexer`] — files to logical lines: comments, includes, `@id`
//!    conditionals, `$NAME` definitions, `~SEQ`/`~LST`, one brace per line;
//! 2. [`tree`] — lines to statements with blocks;
//! 3. [`model`] — statements to typed structs ([`section`] holds the keyword
//!    tables, [`value`] the value types);
//! 4. [`validate`] — checks across keywords and blocks.
//!
//! Every problem is a [`Diagnostic`] with a `file:line:col`; nothing panics on
//! any input. [`to_text`] writes a model back as configuration text.

#![forbid(unsafe_code)]

pub mod diag;
pub mod hmac;
pub mod lexer;
pub mod model;
pub mod route;
pub mod section;
pub mod tree;
pub mod validate;
pub mod value;

use std::path::Path;

pub use diag::{Diagnostic, Loc, Severity, Sources};
pub use lexer::{default_config_id, Options as LexOptions};
pub use model::Config;

use section::Section;

/// How to read a configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-i/--config-id`, for `@ID` lines.
    pub config_id: Option<String>,
    /// Check against this machine: warn about interfaces it does not have,
    /// and check the users and groups scripts run as (NSS lookups).
    pub check_interfaces: bool,
}

/// A configuration as read, with everything said about it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: Sources,
    /// In file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Whether any diagnostic is an error (`-t` exits 1).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// Every diagnostic as a `FILE:LINE:COL: error: …` line.
    pub fn rendered(&self) -> Vec<String> {
        self.diagnostics
            .iter()
            .map(|d| d.render(&self.sources))
            .collect()
    }
}

/// Reads the configuration at `path` and everything it includes.
pub fn load(path: &Path, opts: &Options) -> Loaded {
    read(opts, |lex_opts, diags, sink| {
        lexer::lex_file_into(path, lex_opts, diags, sink)
    })
}

/// Reads configuration text as if it were the file `name`.
pub fn parse_str(name: &Path, text: &str, opts: &Options) -> Loaded {
    read(opts, |lex_opts, diags, sink| {
        lexer::lex_str_into(name, text, lex_opts, diags, sink)
    })
}

/// Writes `config` as configuration text that reads back to the same model.
pub fn to_text(config: &Config) -> String {
    let mut out = value::Emitter::default();
    config.emit_body(&mut out);
    out.text
}

fn lex_options(opts: &Options) -> lexer::Options {
    lexer::Options {
        config_id: opts.config_id.clone(),
        max_expanded_lines: None,
    }
}

/// Streams lines from `lex` through the tree builder into the model, one
/// top-level statement at a time, then validates.
fn read(
    opts: &Options,
    lex: impl FnOnce(&lexer::Options, &mut diag::Diagnostics, &mut lexer::Sink) -> Sources,
) -> Loaded {
    let mut diags = diag::Diagnostics::default();
    let mut failed = Vec::new();
    let mut config = Config::default();
    let mut builder = tree::TreeBuilder::default();
    let sources = lex(&lex_options(opts), &mut diags, &mut |line, diags| {
        if let Some(stmt) = builder.push(line, diags) {
            let mut cx = value::Cx {
                diags,
                failed: &mut failed,
            };
            config.read_stmt(&stmt, &mut cx);
        }
    });
    let mut cx = value::Cx {
        diags: &mut diags,
        failed: &mut failed,
    };
    if let Some(stmt) = builder.finish(cx.diags) {
        config.read_stmt(&stmt, &mut cx);
    }
    validate::validate(&config, &sources, opts.check_interfaces, &mut cx);
    let mut diagnostics = diags.into_vec();
    diagnostics.sort_by_key(|d| d.loc);
    Loaded {
        config,
        sources,
        diagnostics,
    }
}
