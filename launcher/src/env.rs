//! The launcher's view of the environment: the variables it reads (with the gateway's parsing
//! rules and the variable's name in every error) and hands to Envoy.

use crate::pyish::{py_int, py_repr};
use std::collections::BTreeMap;
use std::ffi::OsString;

/// A configuration error; its text names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// A snapshot of the process environment that the launcher may change (the offline demo sets
/// variables) before it renders and hands it to Envoy. Values that are not UTF-8 read lossily
/// but reach Envoy unchanged.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<OsString, OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        let v = self.vars.get(std::ffi::OsStr::new(name))?;
        (!v.is_empty()).then(|| v.to_string_lossy().into_owned())
    }

    pub fn get_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    /// The first of `names` that is set.
    pub fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.get(n))
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.into(), value.into());
    }

    /// Sets `name` unless it is set (and not empty).
    pub fn set_default(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.set(name, value);
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.vars.remove(std::ffi::OsStr::new(name));
    }

    pub fn vars(&self) -> impl Iterator<Item = (&OsString, &OsString)> {
        self.vars.iter()
    }

    /// `name` as a boolean (true/false, 1/0, yes/no).
    /// A boolean the way the AI gateway's settings (pydantic) read it: `1/true/yes/on/t/y` and
    /// `0/false/no/off/f/n`, any case (`AIGW_LOGGING__FORMAT_JSON`).
    pub fn pydantic_bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        match value.trim().to_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "t" | "y" => Ok(true),
            "0" | "false" | "no" | "off" | "f" | "n" => Ok(false),
            _ => err(format!(
                "{name}={}: expected true or false",
                py_repr(value.trim())
            )),
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        let value = self
            .get_or(name, if default { "true" } else { "false" })
            .trim()
            .to_lowercase();
        match value.as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => err(format!(
                "{name}={}: expected true or false",
                py_repr(&value)
            )),
        }
    }

    /// `name` as an integer in `low..=high`.
    pub fn int(
        &self,
        name: &str,
        default: i128,
        low: i128,
        high: i128,
    ) -> Result<i128, ConfigError> {
        let raw = self.get_or(name, &default.to_string());
        match py_int(&raw) {
            Ok(v) if (low..=high).contains(&v) => Ok(v),
            Ok(v) => err(format!("{name}={v}: expected {low}..{high}")),
            Err(Some(digits)) => err(format!("{name}={digits}: expected {low}..{high}")),
            Err(None) => err(format!("{name}={}: expected an integer", py_repr(&raw))),
        }
    }
}

/// The variable names only: the values hold AWS keys and tokens.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_never_values() {
        let mut env = Env::default();
        env.set("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG");
        let shown = format!("{env:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY"), "{shown}");
        assert!(!shown.contains("wJalr"), "{shown}");
    }
}
