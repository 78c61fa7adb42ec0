//! Problems found while reading rule files.

use std::fmt;

/// Which configuration file a diagnostic or rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFile {
    /// The `_redirects` file at the root of the publish directory.
    Redirects,
    /// The `_headers` file at the root of the publish directory.
    Headers,
    /// `netlify.toml`.
    NetlifyToml,
}

impl SourceFile {
    /// The file name as users write it.
    pub fn name(self) -> &'static str {
        match self {
            SourceFile::Redirects => "_redirects",
            SourceFile::Headers => "_headers",
            SourceFile::NetlifyToml => "netlify.toml",
        }
    }
}

impl fmt::Display for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The line, rule or file was dropped (Netlify drops it too).
    Error,
    /// Accepted, but probably not what the author meant, or not supported by
    /// Ledge yet.
    Warning,
}

/// One problem, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: SourceFile,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// Whether the offending item was dropped.
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn error(file: SourceFile, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            file,
            line,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub(crate) fn warning(file: SourceFile, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            file,
            line,
            severity: Severity::Warning,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, sev, self.message),
            None => write!(f, "{}: {}: {}", self.file, sev, self.message),
        }
    }
}

/// Converts a 0-based line index to a 1-based line number.
pub(crate) fn line_no(index: usize) -> Option<u32> {
    u32::try_from(index + 1).ok()
}
