//! The control file: TOML text -> [`file::File`] (serde, unknown keys denied) ->
//! [`model::Config`] (validated, defaults applied) -> [`table::RoutingTable`] (runtime objects:
//! balancers, counters), and [`diff`] between two configurations.
//!
//! Nothing here touches sockets or threads; reading the file and reporting is the control
//! plane's job (`control`). Errors always name the key and the reason, and never panic.

pub mod diff;
pub mod file;
mod health;
pub mod http;
pub mod model;
pub mod mysql;
pub mod table;
pub mod tls;
mod validate;

use std::fmt;
use std::path::Path;

pub use model::Config;

/// Why a control file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: String, reason: String },
    /// The TOML is malformed or does not fit the schema (unknown key, wrong type).
    Syntax { key: String, reason: String },
    /// A value is out of range, a reference does not resolve, or names collide.
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The key path the error is about (`listeners.web.cluster`), empty for the file itself.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Syntax { key, .. } | ConfigError::Invalid { key, .. } => key,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => write!(f, "cannot read {path}: {reason}"),
            ConfigError::Syntax { key, reason } | ConfigError::Invalid { key, reason } => {
                if key.is_empty() {
                    write!(f, "{reason}")
                } else {
                    write!(f, "{key}: {reason}")
                }
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the control file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config = parse(&text)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for l in &mut config.listeners {
        if let Some(t) = &mut l.tls {
            t.resolve(dir);
        }
    }
    for c in &mut config.clusters {
        if let Some(t) = &mut c.tls {
            t.resolve(dir);
        }
    }
    if let Some(p) = &mut config.log.access_log {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    Ok(config)
}

/// Parses and validates control-file text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax(text, String::new(), &e))?;
    let file: file::File = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        syntax(text, path, e.inner())
    })?;
    validate::validate(file)
}

/// A one-line error naming the key, the reason, and where in the file. When serde knows no
/// key path (a syntax error), the table header of the offending line names it.
fn syntax(text: &str, mut key: String, e: &toml::de::Error) -> ConfigError {
    let mut reason = e.message().trim().to_owned();
    if let Some(span) = e.span() {
        let start = span.start.min(text.len());
        let before = text.get(..start).unwrap_or("");
        let line_no = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
        if key.is_empty() && line.starts_with('[') {
            key = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        reason = format!("{reason} (line {line_no}, column {column}: {line})");
    }
    ConfigError::Syntax { key, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every control file shipped in config/ is valid (README points newcomers at them).
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut files = vec![root.join("quickstart.toml")];
        for e in std::fs::read_dir(root.join("examples")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
        assert!(files.len() >= 4, "{files:?}");
        for f in files {
            let c = load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(!c.listeners.is_empty(), "{}", f.display());
            // Certificate files load too.
            crate::tls::load(&c).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}
