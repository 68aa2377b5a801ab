//! Stage one, the raw gather: Go `flag`-style arguments and the environment → raw strings.
//!
//! Flags win over the environment; values are trimmed and an empty one counts as
//! unset, as in the Go exporter. No I/O, and nothing is validated here beyond the
//! flags' syntax: every value stays the string the user gave, under the name they
//! gave it, so that the build stage can quote them.

use std::collections::HashMap;

use super::settings::{Setting, SETTINGS};
use super::ConfigError;

/// A raw value and the name it was given under, so errors can quote the user.
pub(crate) struct Raw {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl Raw {
    pub(crate) fn invalid(&self, reason: &str) -> ConfigError {
        ConfigError(format!(
            "{}={:?} is not valid: {reason}",
            self.name, self.value
        ))
    }

    pub(crate) fn invalid_secret(&self, reason: &str) -> ConfigError {
        ConfigError(format!(
            "{}=\"<redacted>\" is not valid: {reason}",
            self.name
        ))
    }
}

/// The raw string of each setting that was given, keyed by its env name.
pub(crate) struct RawArgs {
    /// The `healthcheck` subcommand was given.
    pub(crate) healthcheck: bool,
    values: HashMap<&'static str, Raw>,
}

pub(crate) enum Gathered {
    Help,
    Version,
    Raw(RawArgs),
}

/// Reads Go `flag`-style arguments, then fills what they left unset from the environment.
pub(crate) fn gather(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Gathered, ConfigError> {
    let mut values = HashMap::new();
    let mut positionals = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            positionals.extend(rest.by_ref());
            break;
        }
        let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) else {
            positionals.push(arg);
            continue;
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if name.is_empty() || name.starts_with('-') {
            // Only up to '=': what follows may be a secret.
            let shown = arg.split('=').next().unwrap_or_default();
            return Err(ConfigError(format!(
                "bad flag syntax: {} (see --help)",
                shown.escape_debug()
            )));
        }
        let written = &arg[..arg.len() - body.len() + name.len()];
        match name {
            "h" | "help" => return Ok(Gathered::Help),
            "version" => return Ok(Gathered::Version),
            _ => {}
        }
        let Some(setting) = SETTINGS.iter().find(|s| s.flag == Some(name)) else {
            // Escaped: the error is one line even for an argument that is not.
            return Err(ConfigError(format!(
                "unknown flag {} (see --help)",
                written.escape_debug()
            )));
        };
        let value = match inline {
            Some(value) => value,
            None if setting.arg.is_empty() => "true",
            None => rest
                .next()
                .map(String::as_str)
                .ok_or_else(|| ConfigError(format!("flag {written} needs a value (see --help)")))?,
        };
        insert(&mut values, setting.env, written, value);
    }
    for setting in SETTINGS {
        for name in std::iter::once(&setting.env).chain(setting.aliases) {
            if values.contains_key(setting.env) {
                break;
            }
            if let Some(value) = env(name) {
                insert(&mut values, setting.env, name, &value);
            }
        }
    }
    let healthcheck = match positionals.split_first() {
        None => false,
        Some((first, extra)) => {
            let unexpected = if first.as_str() == "healthcheck" {
                extra.first()
            } else {
                Some(first)
            };
            if let Some(arg) = unexpected {
                return Err(ConfigError(format!(
                    "unexpected argument {arg:?} (see --help)"
                )));
            }
            true
        }
    };
    Ok(Gathered::Raw(RawArgs {
        healthcheck,
        values,
    }))
}

/// Records a trimmed value; an empty one unsets the setting instead.
fn insert(values: &mut HashMap<&'static str, Raw>, key: &'static str, name: &str, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        values.remove(key);
    } else {
        values.insert(
            key,
            Raw {
                name: name.to_string(),
                value: value.to_string(),
            },
        );
    }
}

impl RawArgs {
    pub(crate) fn get(&self, setting: &Setting) -> Option<&Raw> {
        self.values.get(setting.env)
    }

    /// [`Self::parse`], with `default` when the setting was not given.
    pub(crate) fn parse_or<T>(
        &self,
        setting: &Setting,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.parse(setting, f)?.unwrap_or(default))
    }

    /// Parses the setting when it was given; the error names it as the user wrote it.
    pub(crate) fn parse<T>(
        &self,
        setting: &Setting,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(setting)
            .map(|raw| f(&raw.value).map_err(|reason| raw.invalid(&reason)))
            .transpose()
    }

    pub(crate) fn string(&self, setting: &Setting) -> Option<String> {
        self.get(setting).map(|raw| raw.value.clone())
    }

    pub(crate) fn required(&self, setting: &Setting) -> Result<String, ConfigError> {
        self.string(setting).ok_or_else(|| {
            let flag = setting.flag.unwrap_or_default();
            ConfigError(format!(
                "{0} is required: set {0} or pass -{flag}",
                setting.env
            ))
        })
    }
}
