//! Parsing and validation of the TOML text, reporting every problem with its line.

use super::Config;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// Path given.
        path: String,
        /// OS error text.
        message: String,
    },
    /// The file was read but is invalid.
    #[error("invalid configuration: {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

pub(super) fn parse_and_validate(text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| {
        ConfigError::Invalid(vec![Problem {
            line: None,
            message: e.to_string(),
        }])
    })
}
