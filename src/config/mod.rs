//! The studio config (docs/config.md): session definitions in TOML or JSON files, layered.
//!
//! # Format
//!
//! ```toml
//! host_modules = ["studio_qt"]        # extra host packages shared by every session
//!
//! [defaults]                          # applied to every session, under its own keys
//! keep_global = ["studio_core"]
//! env = { STUDIO = "1" }
//!
//! [sessions.toolA]                    # one named session
//! paths = ["lib", "${TOOLS}/toolA", "~/dev/toolA"]
//! env = { TOOLA_MODE = "prod", PYTHONWARNINGS = false }
//! keep_global = ["six"]
//! inherit_env = true
//! inherit_paths = true
//! startup = "toolA.boot"
//! ```
//!
//! The JSON form is the same tree (`{"sessions": {"toolA": {...}}}`); `null` is also
//! accepted where `false` unsets an env var.
//!
//! # Semantics (the choices a TD needs to know)
//!
//! - **Layering.** Files apply in order (studio → show → user); for each session, and
//!   for `defaults`, a later file overrides earlier ones *key by key*: lists (`paths`,
//!   `keep_global`) and scalars are replaced whole, `env` merges variable by variable.
//!   A session keeps the position of its first definition.
//! - **Defaults.** All files' `defaults` layer into one table first; then every session
//!   takes each key from its own (layered) definition if set there, else from
//!   `defaults` (`env`: defaults' variables, overridden one by one by the session's).
//!   So a session's own key always beats `defaults`, whichever file either comes from.
//! - **host_modules** accumulate across files (duplicates dropped): each layer can only
//!   add packages to the host's shared list.
//! - **env values** are strings; `false` (or JSON `null`) means "unset inside the
//!   session", so a later layer can also unset what an earlier one set.
//! - **Expansion.** In `paths` and `env` values, `${VAR}` is replaced from the process
//!   environment when the config is loaded; an undefined variable is an error unless a
//!   default is given as `${VAR:-default}` (used when unset or empty). `$$` is a
//!   literal `$`; a `$` not followed by `{` is kept as is. Then a leading `~` (alone or
//!   before a path separator) becomes the home directory (`HOME`, then `USERPROFILE` on
//!   Windows); in `env` values this applies to each `os.pathsep`-separated item, so
//!   `~/a:~/b` works. `~user` is an error in `paths` and kept as written in `env`.
//! - **Paths** are made absolute: relative ones resolve against the folder of the file
//!   that wrote them (against the working directory for [`parse_session_json`]), then
//!   `.` and `..` are removed lexically (symlinks are kept, like `os.path.abspath`).
//!   Paths need not exist when the config is read.
//! - **Strictness.** Unknown keys, wrong types, invalid session names (1–64 ASCII
//!   letters, digits, `_`, `-`, `.`), duplicate JSON keys and empty strings are errors.
//!   Every error is one line: `file:line:column: key.path: message` (columns count
//!   characters, both from 1).

mod expand;
mod requirement;
#[cfg(test)]
mod tests;
mod tree;
mod validate;

use std::fmt;
use std::path::Path;

use pyo3::prelude::*;

pub(crate) use expand::absolute_path;
use tree::*;
pub(crate) use validate::line_column;
use validate::*;

/// The keys a session (or `defaults`) may have.
pub(crate) const SESSION_KEYS: [&str; 11] = [
    "paths",
    "env",
    "keep_global",
    "inherit_env",
    "inherit_paths",
    "startup",
    "requirements",
    "index_url",
    "find_links",
    "pythons",
    "platforms",
];
/// The keys only `python -m subsession lock` reads (docs/config.md "Requirements").
pub(super) const LOCK_KEYS: [&str; 5] = [
    "requirements",
    "index_url",
    "find_links",
    "pythons",
    "platforms",
];
/// The Maya Pythons a lock serves, and the platforms, when the config names none.
pub(super) const PYTHONS: [&str; 5] = ["3.9", "3.10", "3.11", "3.12", "3.13"];
pub(super) const PLATFORMS: [&str; 4] = [
    "linux_x86_64",
    "windows_x86_64",
    "macos_arm64",
    "macos_x86_64",
];
pub(super) const TOP_KEYS: [&str; 3] = ["defaults", "sessions", "host_modules"];

// ---------------------------------------------------------------------------------------
// Results and errors
// ---------------------------------------------------------------------------------------

/// A config error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file as the caller named it (or the origin label of JSON text).
    pub file: String,
    /// 1-based line and column, when the error has a position in the text.
    pub position: Option<(usize, usize)>,
    /// Dotted key path of the offending key (`sessions.toolA.paths`), if any.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One session's settings after layering, defaults and expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionSpec {
    /// Absolute, normalised import paths.
    pub paths: Vec<String>,
    /// Environment overrides in definition order; `None` unsets the variable.
    pub env: Vec<(String, Option<String>)>,
    pub keep_global: Vec<String>,
    pub inherit_env: bool,
    pub inherit_paths: bool,
    /// A module to import in the session once it is configured.
    pub startup: Option<String>,
    /// PEP 508 requirements `python -m subsession lock` resolves for the session.
    pub requirements: Vec<String>,
    /// The package index to resolve against (`None`: uv's default, PyPI).
    pub index_url: Option<String>,
    /// Wheel folders (absolute) or URLs searched beside the index.
    pub find_links: Vec<String>,
    /// Target Pythons ("3.11") and platforms; empty means all of them.
    pub pythons: Vec<String>,
    pub platforms: Vec<String>,
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            env: Vec::new(),
            keep_global: Vec::new(),
            inherit_env: true,
            inherit_paths: true,
            startup: None,
            requirements: Vec::new(),
            index_url: None,
            find_links: Vec::new(),
            pythons: Vec::new(),
            platforms: Vec::new(),
        }
    }
}

/// A whole layered config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Config {
    pub host_modules: Vec<String>,
    /// Sessions in order of first definition.
    pub sessions: Vec<(String, SessionSpec)>,
}

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

/// Reads, validates and layers config files (studio first, user last). `${VAR}`
/// takes its values from `env`, a copy of the process environment.
pub(crate) fn parse_files<P: AsRef<Path>>(
    paths: &[P],
    env: &EnvSnapshot,
) -> Result<Config, ConfigError> {
    parse_files_with(paths, env)
}

/// One session's settings from a JSON object (the C ABI's create call). `origin` labels
/// the text in errors; relative paths resolve against the working directory.
pub(crate) fn parse_session_json(
    text: &str,
    origin: &str,
    env: &EnvSnapshot,
) -> Result<SessionSpec, ConfigError> {
    let base = std::env::current_dir().map_err(|e| ConfigError {
        file: origin.to_owned(),
        position: None,
        key: None,
        message: format!("cannot resolve relative paths: no working directory ({e})"),
    })?;
    parse_session_json_with(text, origin, &base, env)
}

/// Checks `text` as [`parse_session_json`] would, except that every `${VAR}` counts as
/// set: reports a malformed config before the environment can be read (the C ABI
/// checks its arguments before it attaches to the interpreter).
pub(crate) fn check_session_json(text: &str, origin: &str) -> Result<(), ConfigError> {
    struct AnyVars;
    impl Vars for AnyVars {
        fn var(&self, _name: &str) -> Option<String> {
            Some("set".to_owned())
        }
    }
    parse_session_json_with(text, origin, Path::new("/"), &AnyVars).map(drop)
}

/// Where `${VAR}` and `~` get their values; the process environment outside tests.
pub(super) trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment, copied while the GIL is held.
///
/// Python code on other threads changes the environment (`os.environ[k] = v` calls
/// `putenv`) only while holding the GIL, and glibc frees the old variable array on
/// such a change: reading it without the GIL can crash the process. So the copy is
/// taken under the GIL, and parsing (which may read files on a slow share) can then
/// run without it.
pub(crate) struct EnvSnapshot(pub(super) std::collections::HashMap<String, String>);

impl EnvSnapshot {
    /// Copies the environment; the `Python` token proves the GIL is held.
    pub fn capture(_py: Python<'_>) -> Self {
        EnvSnapshot(
            std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
        )
    }
}

impl Vars for EnvSnapshot {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

pub(super) fn parse_files_with<P: AsRef<Path>>(
    paths: &[P],
    vars: &dyn Vars,
) -> Result<Config, ConfigError> {
    // Read and check every file before layering, so a bad user file never yields a
    // half-applied config.
    let mut layers = Vec::with_capacity(paths.len());
    for path in paths {
        layers.push(read_file(path.as_ref(), vars)?);
    }
    Ok(layer(layers))
}

pub(super) fn parse_session_json_with(
    text: &str,
    origin: &str,
    base: &Path,
    vars: &dyn Vars,
) -> Result<SessionSpec, ConfigError> {
    let src = Source {
        file: origin,
        text: strip_bom(text),
        format: Format::Json,
        dir: base.to_path_buf(),
        vars,
        lock_keys: false,
    };
    let root = src.parse()?;
    let partial = src.session(&root, "")?;
    Ok(Partial::default().overlay(partial).resolve())
}

pub(super) fn read_file(path: &Path, vars: &dyn Vars) -> Result<Layer, ConfigError> {
    let file = path.display().to_string();
    let fail = |message: String| ConfigError {
        file: file.clone(),
        position: None,
        key: None,
        message,
    };
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let format = match ext.as_deref() {
        Some("toml") => Format::Toml,
        Some("json") => Format::Json,
        _ => {
            return Err(fail(
                "unknown config format: name the file *.toml or *.json".to_owned(),
            ));
        }
    };
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("config file not found".to_owned()),
        std::io::ErrorKind::InvalidData => fail("config file is not UTF-8 text".to_owned()),
        _ => fail(format!("cannot read config file: {e}")),
    })?;
    let absolute = std::path::absolute(path).map_err(|e| fail(format!("bad path: {e}")))?;
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| absolute.clone());
    let src = Source {
        file: &file,
        text: strip_bom(&text),
        format,
        dir,
        vars,
        lock_keys: true,
    };
    let root = src.parse()?;
    src.layer(&root)
}

pub(super) fn strip_bom(text: &str) -> &str {
    // Notepad writes one; neither parser accepts it.
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

// ---------------------------------------------------------------------------------------
// Layering
// ---------------------------------------------------------------------------------------

/// One file's content, validated and expanded.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub(super) host_modules: Vec<String>,
    pub(super) defaults: Partial,
    pub(super) sessions: Vec<(String, Partial)>,
}

/// Session keys as one layer sets them (`None`: not set there).
#[derive(Debug, Default, Clone)]
pub(super) struct Partial {
    pub(super) paths: Option<Vec<String>>,
    pub(super) env: Vec<(String, Option<String>)>,
    pub(super) keep_global: Option<Vec<String>>,
    pub(super) inherit_env: Option<bool>,
    pub(super) inherit_paths: Option<bool>,
    pub(super) startup: Option<String>,
    pub(super) requirements: Option<Vec<String>>,
    pub(super) index_url: Option<String>,
    pub(super) find_links: Option<Vec<String>>,
    pub(super) pythons: Option<Vec<String>>,
    pub(super) platforms: Option<Vec<String>>,
}

impl Partial {
    /// `self` with `later`'s keys on top.
    fn overlay(mut self, later: Partial) -> Partial {
        if later.paths.is_some() {
            self.paths = later.paths;
        }
        if later.keep_global.is_some() {
            self.keep_global = later.keep_global;
        }
        self.inherit_env = later.inherit_env.or(self.inherit_env);
        self.inherit_paths = later.inherit_paths.or(self.inherit_paths);
        self.startup = later.startup.or(self.startup);
        self.requirements = later.requirements.or(self.requirements);
        self.index_url = later.index_url.or(self.index_url);
        self.find_links = later.find_links.or(self.find_links);
        self.pythons = later.pythons.or(self.pythons);
        self.platforms = later.platforms.or(self.platforms);
        for (key, value) in later.env {
            set_env(&mut self.env, key, value);
        }
        self
    }

    fn resolve(self) -> SessionSpec {
        let base = SessionSpec::default();
        SessionSpec {
            paths: self.paths.unwrap_or(base.paths),
            env: self.env,
            keep_global: self.keep_global.unwrap_or(base.keep_global),
            inherit_env: self.inherit_env.unwrap_or(base.inherit_env),
            inherit_paths: self.inherit_paths.unwrap_or(base.inherit_paths),
            startup: self.startup,
            requirements: self.requirements.unwrap_or_default(),
            index_url: self.index_url,
            find_links: self.find_links.unwrap_or_default(),
            pythons: self.pythons.unwrap_or_default(),
            platforms: self.platforms.unwrap_or_default(),
        }
    }
}

/// Sets `key` keeping the first definition's position, so the order stays readable.
pub(super) fn set_env(env: &mut Vec<(String, Option<String>)>, key: String, value: Option<String>) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

pub(super) fn layer(layers: Vec<Layer>) -> Config {
    let mut host_modules: Vec<String> = Vec::new();
    let mut defaults = Partial::default();
    let mut sessions: Vec<(String, Partial)> = Vec::new();
    for layer in layers {
        for module in layer.host_modules {
            if !host_modules.contains(&module) {
                host_modules.push(module);
            }
        }
        defaults = defaults.overlay(layer.defaults);
        for (name, partial) in layer.sessions {
            match sessions.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = std::mem::take(&mut slot.1).overlay(partial),
                None => sessions.push((name, partial)),
            }
        }
    }
    let sessions = sessions
        .into_iter()
        .map(|(name, partial)| (name, defaults.clone().overlay(partial).resolve()))
        .collect();
    Config {
        host_modules,
        sessions,
    }
}
