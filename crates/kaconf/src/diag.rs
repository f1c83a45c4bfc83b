//! Where things are (`Loc`) and what is wrong with them (`Diagnostic`), printed
//! the way a compiler prints: `FILE:LINE:COL: error: …`.

use std::fmt;
use std::path::{Path, PathBuf};

/// An index into [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A position in a configuration file: 1-based line and column (in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Loc {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(file: FileId, line: u32, col: u32) -> Self {
        Self { file, line, col }
    }

    /// The same line, another column.
    #[must_use]
    pub fn at_col(self, col: u32) -> Self {
        Self { col, ..self }
    }
}

/// The files a configuration was read from, in the order first opened.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    paths: Vec<PathBuf>,
}

impl Sources {
    /// Registers a file (once) and returns its id.
    pub fn add(&mut self, path: &Path) -> FileId {
        if let Some(i) = self.paths.iter().position(|p| p == path) {
            return FileId(u32::try_from(i).unwrap_or(u32::MAX));
        }
        self.paths.push(path.to_owned());
        FileId(u32::try_from(self.paths.len() - 1).unwrap_or(u32::MAX))
    }

    /// The path of file `id` (empty for an unknown id).
    pub fn path(&self, id: FileId) -> &Path {
        self.paths
            .get(id.0 as usize)
            .map_or(Path::new(""), PathBuf::as_path)
    }

    /// Every file read.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One message about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub loc: Loc,
    pub message: String,
}

impl Diagnostic {
    /// Renders as `FILE:LINE:COL: error: MESSAGE`.
    pub fn render(&self, sources: &Sources) -> String {
        let kind = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        format!(
            "{}:{}:{}: {kind}: {}",
            sources.path(self.loc.file).display(),
            self.loc.line,
            self.loc.col,
            self.message
        )
    }
}

/// Collects diagnostics while a configuration is read.
#[derive(Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, loc: Loc, message: impl fmt::Display) {
        self.list.push(Diagnostic {
            severity: Severity::Error,
            loc,
            message: message.to_string(),
        });
    }

    pub fn warn(&mut self, loc: Loc, message: impl fmt::Display) {
        self.list.push(Diagnostic {
            severity: Severity::Warning,
            loc,
            message: message.to_string(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }

    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.list
    }
}
