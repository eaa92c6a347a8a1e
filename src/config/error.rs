//! Config errors that point at the line to fix.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A config file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions).
    Io { file: PathBuf, message: String },
    /// The file was read but is wrong at `key` (dotted path, may be empty
    /// when the syntax is too broken to tell) on `line` (1-based).
    Invalid {
        file: PathBuf,
        key: String,
        line: usize,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { file, message } => {
                write!(f, "cannot read config {}: {message}", file.display())
            }
            ConfigError::Invalid {
                file,
                key,
                line,
                message,
            } if key.is_empty() => write!(f, "{}:{line}: {message}", file.display()),
            ConfigError::Invalid {
                file,
                key,
                line,
                message,
            } => write!(f, "{}:{line}: `{key}`: {message}", file.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(super) fn from_toml(file: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map(|s| s.start).unwrap_or(0);
        // The message of a serde error is one line already; a syntax error's
        // message can be several, and the caller wants one.
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key_at(text, offset).unwrap_or_default(),
            line: line_of(text, offset),
            message,
        }
    }

    pub(super) fn invalid(file: &Path, text: &str, key: &str, message: String) -> ConfigError {
        let line = span_of(text, key).map(|o| line_of(text, o)).unwrap_or(1);
        ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            line,
            message,
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key whose key or value covers byte `offset`; failing that,
/// the last key that starts before it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut entries = Vec::new();
    collect(root.get_ref(), &mut Vec::new(), &mut entries);
    let covers = |r: &std::ops::Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
    entries
        .iter()
        .filter(|(_, key, value)| covers(key) || covers(value))
        .max_by_key(|(path, _, _)| path.len())
        .or_else(|| {
            entries
                .iter()
                .filter(|(_, key, _)| key.start <= offset)
                .max_by_key(|(_, key, _)| key.start)
        })
        .map(|(path, _, _)| path.clone())
}

type Entry = (String, std::ops::Range<usize>, std::ops::Range<usize>);

/// Every key in the document with its dotted path, key span and value span.
fn collect(table: &DeTable<'_>, path: &mut Vec<String>, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        out.push((path.join("."), key.span(), value.span()));
        if let DeValue::Table(inner) = value.get_ref() {
            collect(inner, path, out);
        }
        path.pop();
    }
}

/// Byte offset of the deepest existing part of dotted `key`.
fn span_of(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    for part in key.split('.') {
        // A missing key (a required one left out) points at its table.
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == part) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_key_lines() {
        let text = "[host]\nlisten = \"x\"\n\n[plugins.a]\ninterval_ms = 5\n";
        assert_eq!(
            span_of(text, "plugins.a.interval_ms").map(|o| line_of(text, o)),
            Some(5)
        );
        assert_eq!(
            key_at(text, text.find("5").unwrap()).as_deref(),
            Some("plugins.a.interval_ms")
        );
        // A key that is not there: the line of the table it belongs in.
        assert_eq!(
            span_of(text, "plugins.a.kind").map(|o| line_of(text, o)),
            Some(4)
        );
    }
}
