//! Stage one, the raw gather: Go `flag`-style arguments and the environment → raw strings.
//!
//! Flags win over the environment; values are trimmed and an empty one counts as
//! unset, as in the Go exporter. No I/O, and nothing is validated here beyond the
//! flags' syntax: every value stays the string the user gave, under the name they
//! gave it, so that the build stage can quote them.

use std::collections::HashMap;

use super::settings::{Setting, SETTINGS};
use super::{CheckOutput, ConfigError};

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
    pub(crate) subcommand: Subcommand,
    /// `-output`, an option of `check` alone: it has no environment variable,
    /// since a variable set for the server would change what `check` prints.
    pub(crate) output: Option<Raw>,
    values: HashMap<&'static str, Raw>,
}

/// The positional argument, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subcommand {
    /// None: serve.
    Run,
    Healthcheck,
    Check,
}

impl Subcommand {
    fn named(name: &str) -> Option<Subcommand> {
        match name {
            "healthcheck" => Some(Subcommand::Healthcheck),
            "check" => Some(Subcommand::Check),
            _ => None,
        }
    }
}

/// The flag of `check`'s output format (`-output text|json`).
pub(crate) const OUTPUT_FLAG: &str = "output";

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
    let mut output = None;
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
        // None: `-output`, which is not a setting (see `RawArgs::output`).
        let setting = match SETTINGS.iter().find(|s| s.flag == Some(name)) {
            Some(setting) => Some(setting),
            None if name == OUTPUT_FLAG => None,
            // Escaped: the error is one line even for an argument that is not.
            None => {
                return Err(ConfigError(format!(
                    "unknown flag {} (see --help)",
                    written.escape_debug()
                )))
            }
        };
        let value = match inline {
            Some(value) => value,
            None if setting.is_some_and(|s| s.arg.is_empty()) => "true",
            None => rest
                .next()
                .map(String::as_str)
                .ok_or_else(|| ConfigError(format!("flag {written} needs a value (see --help)")))?,
        };
        match setting {
            Some(setting) => insert(&mut values, setting.env, written, value),
            None => {
                output = Some(Raw {
                    name: written.to_string(),
                    value: value.trim().to_string(),
                })
            }
        }
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
    let unexpected =
        |arg: &String| ConfigError(format!("unexpected argument {arg:?} (see --help)"));
    let subcommand = match positionals.split_first() {
        None => Subcommand::Run,
        Some((first, extra)) => {
            let Some(subcommand) = Subcommand::named(first) else {
                return Err(unexpected(first));
            };
            if let Some(arg) = extra.first() {
                return Err(unexpected(arg));
            }
            subcommand
        }
    };
    if let Some(given) = output.as_ref().filter(|_| subcommand != Subcommand::Check) {
        return Err(ConfigError(format!(
            "flag {} is only for the check subcommand (see --help)",
            given.name
        )));
    }
    Ok(Gathered::Raw(RawArgs {
        subcommand,
        output,
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
    /// `check`'s `-output`, text when not given.
    pub(crate) fn parse_output(&self) -> Result<CheckOutput, ConfigError> {
        match &self.output {
            None => Ok(CheckOutput::Text),
            Some(raw) => CheckOutput::parse(&raw.value).map_err(|reason| raw.invalid(&reason)),
        }
    }

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
