//! Configuration (SPEC §2): a TOML file read into the raw structures of [`raw`], then checked
//! as a whole by `check` into a [`Config`] that holds only valid, resolved data.
//!
//! Every mistake is reported, not just the first: syntax errors (all that the TOML parser can
//! recover from), unknown keys (all of them), then every semantic error, each with the file,
//! line and column, and the tenant and object it belongs to.
//!
//! The checks, by module: `check` runs the stages and puts the errors in file order;
//! `checker` collects errors and warnings with their positions; `types` reports wrong types
//! and unknown keys; `server` checks `[server]`, `[limits]` and `[pin]`; `tenant` a
//! `[[tenant]]`, with its Call ACL patterns and ACLs in `acl` and its call permissions in
//! `permission`; `auth` checks digest credentials and who can reach each tenant; `tls` reads
//! the certificates and keys of `[tls]`; `names` and
//! `values` are what they all share: names and references, and single values read into
//! policy types.

mod acl;
mod admin;
mod auth;
mod check;
mod checker;
mod names;
mod permission;
pub mod raw;
mod server;
mod tenant;
mod tls;
mod types;
mod values;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use admin::AdminSettings;

use crate::policy::Policy;
use crate::proxy::Settings;

pub use server::LogFormat;

/// A validated configuration: the settings of the proxy core and the policy it enforces.
#[derive(Debug)]
pub struct Config {
    pub proxy: Settings,
    pub policy: Arc<Policy>,
    /// `[admin]`, when the file has it.
    pub admin: Option<AdminSettings>,
    /// `[tls]` made into rustls configurations, when anything uses TLS; the transport
    /// takes it at start and at every reload.
    pub tls: Option<Arc<crate::transport::tls::TlsSettings>>,
    /// `server.log_format`: how `run` logs, unless the command line says otherwise.
    pub log_format: LogFormat,
    /// Things that are valid but probably not what was meant (printed by `validate`).
    pub warnings: Vec<String>,
}

/// One configuration mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the position is known.
    pub position: Option<(usize, usize)>,
    /// The object at fault, e.g. `tenant "acme", user "alice"`; empty for the file as a whole.
    pub context: String,
    pub message: String,
    /// Where the value at fault is in the file, as a key path
    /// (`tenant[0].call_permissions[2].extensions[0]`), when the error points at one: the
    /// admin API names the field of the object it was given from it.
    pub field: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.context.is_empty() {
            write!(f, ": {}", self.context)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every mistake of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The text of the configuration file, or the error that says why it cannot be read.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            position: None,
            context: String::new(),
            message: format!("cannot read the configuration: {e}"),
            field: None,
        }])
    })
}

impl Config {
    /// Reads and checks the file at `path`. Relative paths inside it (a WAV prompt) are taken
    /// from the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        Self::load_with_text(path).map(|(c, _)| c)
    }

    /// [`load`](Self::load), also giving the text that was checked: what the admin API edits,
    /// and compares with the file to see whether someone else changed it meanwhile.
    pub fn load_with_text(path: &Path) -> Result<(Self, String), ConfigErrors> {
        let text = read(path)?;
        let config = Self::from_toml(&text, &path.display().to_string(), path.parent())?;
        Ok((config, text))
    }

    /// Checks a configuration given as text; `file` names it in errors and `base` is where
    /// relative paths start (the current folder when `None`).
    pub fn from_toml(text: &str, file: &str, base: Option<&Path>) -> Result<Self, ConfigErrors> {
        check::check(text, file, base.unwrap_or(Path::new("")))
    }
}
