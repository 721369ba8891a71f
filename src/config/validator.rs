//! Validation of many variables at once: each bad one is collected with its name, value and
//! problem, so that a bad deployment is told every mistake in one go.

use std::fmt;

/// One bad variable: its name, the value given, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.variable, self.value, self.problem)
    }
}

/// Collects the errors of every variable while parsing them one after the other. Files that
/// parse a group of settings take it and check each of their variables with it.
pub(super) struct Validator {
    pub(super) errors: Vec<ConfigError>,
}

impl Validator {
    pub(super) fn check<T>(
        &mut self,
        variable: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.trim()) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.errors.push(ConfigError {
                    variable,
                    value: value.to_owned(),
                    problem,
                });
                None
            }
        }
    }
}
