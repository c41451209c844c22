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

use std::fmt;
use std::path::{Component, Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The keys a session (or `defaults`) may have.
pub const SESSION_KEYS: [&str; 6] = [
    "paths",
    "env",
    "keep_global",
    "inherit_env",
    "inherit_paths",
    "startup",
];
const TOP_KEYS: [&str; 3] = ["defaults", "sessions", "host_modules"];

// ---------------------------------------------------------------------------------------
// Results and errors
// ---------------------------------------------------------------------------------------

/// A config error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
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
pub struct SessionSpec {
    /// Absolute, normalised import paths.
    pub paths: Vec<String>,
    /// Environment overrides in definition order; `None` unsets the variable.
    pub env: Vec<(String, Option<String>)>,
    pub keep_global: Vec<String>,
    pub inherit_env: bool,
    pub inherit_paths: bool,
    /// A module to import in the session once it is configured.
    pub startup: Option<String>,
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
        }
    }
}

/// A whole layered config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub host_modules: Vec<String>,
    /// Sessions in order of first definition.
    pub sessions: Vec<(String, SessionSpec)>,
}

/// Whether `name` is a valid session name (docs/contract.md §3.3).
pub fn is_valid_session_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

/// Reads, validates and layers config files (studio first, user last). `${VAR}`
/// takes its values from `env`, a copy of the process environment.
pub fn parse_files<P: AsRef<Path>>(paths: &[P], env: &EnvSnapshot) -> Result<Config, ConfigError> {
    parse_files_with(paths, env)
}

/// One session's settings from a JSON object (the C ABI's create call). `origin` labels
/// the text in errors; relative paths resolve against the working directory.
pub fn parse_session_json(
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
pub fn check_session_json(text: &str, origin: &str) -> Result<(), ConfigError> {
    struct AnyVars;
    impl Vars for AnyVars {
        fn var(&self, _name: &str) -> Option<String> {
            Some("set".to_owned())
        }
    }
    parse_session_json_with(text, origin, Path::new("/"), &AnyVars).map(drop)
}

/// Where `${VAR}` and `~` get their values; the process environment outside tests.
trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment, copied while the GIL is held.
///
/// Python code on other threads changes the environment (`os.environ[k] = v` calls
/// `putenv`) only while holding the GIL, and glibc frees the old variable array on
/// such a change: reading it without the GIL can crash the process. So the copy is
/// taken under the GIL, and parsing (which may read files on a slow share) can then
/// run without it.
pub struct EnvSnapshot(std::collections::HashMap<String, String>);

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

fn parse_files_with<P: AsRef<Path>>(paths: &[P], vars: &dyn Vars) -> Result<Config, ConfigError> {
    // Read and check every file before layering, so a bad user file never yields a
    // half-applied config.
    let mut layers = Vec::with_capacity(paths.len());
    for path in paths {
        layers.push(read_file(path.as_ref(), vars)?);
    }
    Ok(layer(layers))
}

fn parse_session_json_with(
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
    };
    let root = src.parse()?;
    let partial = src.session(&root, "")?;
    Ok(Partial::default().overlay(partial).resolve())
}

fn read_file(path: &Path, vars: &dyn Vars) -> Result<Layer, ConfigError> {
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
    };
    let root = src.parse()?;
    src.layer(&root)
}

fn strip_bom(text: &str) -> &str {
    // Notepad writes one; neither parser accepts it.
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

// ---------------------------------------------------------------------------------------
// Layering
// ---------------------------------------------------------------------------------------

/// One file's content, validated and expanded.
#[derive(Debug, Default)]
struct Layer {
    host_modules: Vec<String>,
    defaults: Partial,
    sessions: Vec<(String, Partial)>,
}

/// Session keys as one layer sets them (`None`: not set there).
#[derive(Debug, Default, Clone)]
struct Partial {
    paths: Option<Vec<String>>,
    env: Vec<(String, Option<String>)>,
    keep_global: Option<Vec<String>>,
    inherit_env: Option<bool>,
    inherit_paths: Option<bool>,
    startup: Option<String>,
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
        }
    }
}

/// Sets `key` keeping the first definition's position, so the order stays readable.
fn set_env(env: &mut Vec<(String, Option<String>)>, key: String, value: Option<String>) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

fn layer(layers: Vec<Layer>) -> Config {
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

// ---------------------------------------------------------------------------------------
// A positioned tree, common to TOML and JSON
// ---------------------------------------------------------------------------------------

/// A parsed value with the byte offset where it starts.
#[derive(Debug)]
struct Node {
    pos: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Str(String),
    Bool(bool),
    Null,
    /// A value no key accepts (number, datetime); holds its type's name.
    Other(&'static str),
    List(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_pos: usize,
    value: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
}

fn toml_node(value: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let kind = match value.get_ref() {
        DeValue::String(s) => Kind::Str(s.to_string()),
        DeValue::Boolean(b) => Kind::Bool(*b),
        DeValue::Integer(_) => Kind::Other("an integer"),
        DeValue::Float(_) => Kind::Other("a float"),
        DeValue::Datetime(_) => Kind::Other("a datetime"),
        DeValue::Array(items) => Kind::List(items.iter().map(toml_node).collect()),
        DeValue::Table(table) => Kind::Table(toml_entries(table)),
    };
    Node {
        pos: value.span().start,
        kind,
    }
}

fn toml_entries(table: &toml::de::DeTable<'_>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_pos: key.span().start,
            value: toml_node(value),
        })
        .collect();
    // The map is sorted by key; document order keeps sessions in the order written.
    entries.sort_by_key(|e| e.key_pos);
    entries
}

/// An object's members in document order, each value still unparsed.
struct JsonMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for JsonMembers<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = JsonMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(JsonMembers(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Deepest nesting of arrays and objects a config may have. The schema needs 4
/// (`{"sessions": {"a": {"env": {...}}}}`); the margin only keeps errors about
/// wrong types readable instead of reporting depth.
const MAX_DEPTH: usize = 32;

/// Byte offset of the bracket that opens level `MAX_DEPTH + 1`, if any. A plain
/// scan (strings skipped), so its own cost is flat whatever the input.
fn json_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Byte offset of `slice` in `text` (0 if it is not a slice of it).
fn offset_in(text: &str, slice: &str) -> usize {
    (slice.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .filter(|p| *p <= text.len())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Validation and expansion
// ---------------------------------------------------------------------------------------

/// One config text being checked.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
    format: Format,
    /// Folder relative paths resolve against.
    dir: PathBuf,
    vars: &'a dyn Vars,
}

impl Source<'_> {
    fn error(&self, pos: usize, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            position: Some(line_column(self.text, pos)),
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: message.to_string(),
        }
    }

    fn parse(&self) -> Result<Node, ConfigError> {
        match self.format {
            Format::Toml => match toml::de::DeTable::parse(self.text) {
                Ok(table) => Ok(Node {
                    pos: 0,
                    kind: Kind::Table(toml_entries(table.get_ref())),
                }),
                Err(e) => {
                    let pos = e.span().map_or(0, |s| s.start);
                    Err(self.error(pos, "", format!("invalid TOML: {}", e.message())))
                }
            },
            Format::Json => {
                // The tree is built recursively: refuse deep nesting before any
                // recursion, so no input can exhaust a small thread stack.
                if let Some(pos) = json_too_deep(self.text) {
                    return Err(self.error(
                        pos,
                        "",
                        format!(
                            "invalid JSON: nested deeper than {MAX_DEPTH} levels \
                             (a config needs at most 4)"
                        ),
                    ));
                }
                serde_json::from_str::<&RawValue>(self.text)
                    .map_err(|e| self.json_error(&e, self.text))
                    .and_then(|raw| self.json_node(raw))
            }
        }
    }

    /// Builds the tree from raw slices of `text`: serde_json has no spans, but a borrowed
    /// `RawValue` is a slice of the input, so its address gives the value's offset.
    fn json_node(&self, raw: &RawValue) -> Result<Node, ConfigError> {
        let text = self.text;
        let slice = raw.get();
        let syntax = |e: serde_json::Error| self.json_error(&e, slice);
        let pos = offset_in(text, slice);
        let kind = match slice.as_bytes().first() {
            Some(b'{') => {
                let JsonMembers(members) = serde_json::from_str(slice).map_err(syntax)?;
                let mut entries = Vec::with_capacity(members.len());
                // Between `{` (or the previous value) and a key there is only whitespace
                // and a comma, so the key's quote is the next other byte.
                let mut cursor = pos + 1;
                for (key, value) in members {
                    let key_pos = text
                        .as_bytes()
                        .get(cursor..)
                        .and_then(|rest| {
                            rest.iter()
                                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b','))
                        })
                        .map_or(cursor, |skip| cursor + skip);
                    cursor = offset_in(text, value.get()) + value.get().len();
                    entries.push(Entry {
                        key,
                        key_pos,
                        value: self.json_node(value)?,
                    });
                }
                Kind::Table(entries)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(slice).map_err(syntax)?;
                Kind::List(
                    items
                        .into_iter()
                        .map(|item| self.json_node(item))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => match serde_json::from_str::<serde_json::Value>(slice).map_err(syntax)? {
                serde_json::Value::String(s) => Kind::Str(s),
                serde_json::Value::Bool(b) => Kind::Bool(b),
                serde_json::Value::Null => Kind::Null,
                serde_json::Value::Number(_) => Kind::Other("a number"),
                serde_json::Value::Array(_) => Kind::Other("an array"),
                serde_json::Value::Object(_) => Kind::Other("an object"),
            },
        };
        Ok(Node { pos, kind })
    }

    /// `e` came from parsing `within`, a slice of the text.
    fn json_error(&self, e: &serde_json::Error, within: &str) -> ConfigError {
        // serde_json counts columns in bytes and appends its own position; report in
        // characters like every other error.
        let full = e.to_string();
        let message = full
            .rsplit_once(" at line ")
            .map_or(full.as_str(), |(m, _)| m);
        let line_start: usize = within
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum();
        let pos = offset_in(self.text, within) + line_start + e.column().saturating_sub(1);
        self.error(pos, "", format!("invalid JSON: {message}"))
    }

    fn kind_name(&self, kind: &Kind) -> &'static str {
        match (kind, self.format) {
            (Kind::Str(_), _) => "a string",
            (Kind::Bool(_), _) => "a boolean",
            (Kind::Null, _) => "null",
            (Kind::Other(name), _) => name,
            (Kind::List(_), _) => "an array",
            (Kind::Table(_), Format::Toml) => "a table",
            (Kind::Table(_), Format::Json) => "an object",
        }
    }

    fn table_word(&self) -> &'static str {
        match self.format {
            Format::Toml => "a table",
            Format::Json => "an object",
        }
    }

    fn table<'n>(&self, node: &'n Node, key: &str) -> Result<&'n [Entry], ConfigError> {
        match &node.kind {
            Kind::Table(entries) => {
                // Only JSON can get here with duplicates: the TOML parser rejects them.
                for (i, entry) in entries.iter().enumerate() {
                    if entries[..i].iter().any(|e| e.key == entry.key) {
                        let path = join_key(key, &entry.key);
                        return Err(self.error(entry.key_pos, &path, "duplicate key"));
                    }
                }
                Ok(entries)
            }
            other => Err(self.error(
                node.pos,
                key,
                format!(
                    "expected {}, found {}",
                    self.table_word(),
                    self.kind_name(other)
                ),
            )),
        }
    }

    fn unknown_key(&self, entry: &Entry, key: &str, expected: &[&str]) -> ConfigError {
        let hint = expected
            .iter()
            .find(|e| edit_distance(e, &entry.key.to_ascii_lowercase()) <= 2)
            .map(|e| format!("; did you mean {e}?"))
            .unwrap_or_default();
        self.error(
            entry.key_pos,
            key,
            format!(
                "unknown key (expected one of: {}){hint}",
                expected.join(", ")
            ),
        )
    }

    fn layer(&self, root: &Node) -> Result<Layer, ConfigError> {
        let mut layer = Layer::default();
        for entry in self.table(root, "")? {
            let key = entry.key.as_str();
            match key {
                "host_modules" => {
                    for (pos, name) in self.strings(&entry.value, key)? {
                        self.module_name(pos, key, &name)?;
                        if !layer.host_modules.contains(&name) {
                            layer.host_modules.push(name);
                        }
                    }
                }
                "defaults" => layer.defaults = self.session(&entry.value, key)?,
                "sessions" => {
                    for session in self.table(&entry.value, key)? {
                        let path = join_key(key, &session.key);
                        if !is_valid_session_name(&session.key) {
                            return Err(self.error(
                                session.key_pos,
                                &path,
                                "invalid session name: use 1-64 ASCII letters, digits, \
                                 '_', '-' or '.'",
                            ));
                        }
                        let partial = self.session(&session.value, &path)?;
                        layer.sessions.push((session.key.clone(), partial));
                    }
                }
                _ => return Err(self.unknown_key(entry, key, &TOP_KEYS)),
            }
        }
        Ok(layer)
    }

    /// A session (or `defaults`) table at key path `at` (empty for a JSON root).
    fn session(&self, node: &Node, at: &str) -> Result<Partial, ConfigError> {
        let mut partial = Partial::default();
        for entry in self.table(node, at)? {
            let key = join_key(at, &entry.key);
            let value = &entry.value;
            match entry.key.as_str() {
                "paths" => {
                    let mut paths = Vec::new();
                    for (pos, raw) in self.strings(value, &key)? {
                        paths.push(self.path(pos, &key, &raw)?);
                    }
                    partial.paths = Some(paths);
                }
                "keep_global" => {
                    partial.keep_global = Some(
                        self.strings(value, &key)?
                            .into_iter()
                            .map(|s| s.1)
                            .collect(),
                    );
                }
                "env" => {
                    for var in self.table(value, &key)? {
                        let var_key = join_key(&key, &var.key);
                        if var.key.is_empty() || var.key.contains(['=', '\0']) {
                            return Err(self.error(
                                var.key_pos,
                                &var_key,
                                "invalid environment variable name",
                            ));
                        }
                        let setting = match &var.value.kind {
                            Kind::Str(s) => Some(self.env_value(var.value.pos, &var_key, s)?),
                            Kind::Bool(false) | Kind::Null => None,
                            other => {
                                return Err(self.error(
                                    var.value.pos,
                                    &var_key,
                                    format!(
                                        "expected a string, or false to unset it, found {}",
                                        self.kind_name(other)
                                    ),
                                ));
                            }
                        };
                        set_env(&mut partial.env, var.key.clone(), setting);
                    }
                }
                "inherit_env" => partial.inherit_env = Some(self.boolean(value, &key)?),
                "inherit_paths" => partial.inherit_paths = Some(self.boolean(value, &key)?),
                "startup" => {
                    let name = self.string(value, &key)?;
                    self.module_name(value.pos, &key, &name)?;
                    partial.startup = Some(name);
                }
                _ => return Err(self.unknown_key(entry, &key, &SESSION_KEYS)),
            }
        }
        Ok(partial)
    }

    fn string(&self, node: &Node, key: &str) -> Result<String, ConfigError> {
        match &node.kind {
            Kind::Str(s) => self.checked(node.pos, key, s),
            other => Err(self.error(
                node.pos,
                key,
                format!("expected a string, found {}", self.kind_name(other)),
            )),
        }
    }

    fn boolean(&self, node: &Node, key: &str) -> Result<bool, ConfigError> {
        match &node.kind {
            Kind::Bool(b) => Ok(*b),
            other => Err(self.error(
                node.pos,
                key,
                format!("expected true or false, found {}", self.kind_name(other)),
            )),
        }
    }

    /// A list of non-empty strings, each with its position.
    fn strings(&self, node: &Node, key: &str) -> Result<Vec<(usize, String)>, ConfigError> {
        let Kind::List(items) = &node.kind else {
            return Err(self.error(
                node.pos,
                key,
                format!(
                    "expected a list of strings, found {}",
                    self.kind_name(&node.kind)
                ),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match &item.kind {
                Kind::Str(s) => Ok((item.pos, self.checked(item.pos, key, s)?)),
                other => Err(self.error(
                    item.pos,
                    key,
                    format!(
                        "expected a list of strings, item {} is {}",
                        i + 1,
                        self.kind_name(other)
                    ),
                )),
            })
            .collect()
    }

    fn checked(&self, pos: usize, key: &str, s: &str) -> Result<String, ConfigError> {
        if s.is_empty() {
            Err(self.error(pos, key, "empty string"))
        } else if s.contains('\0') {
            Err(self.error(pos, key, "string contains a NUL character"))
        } else {
            Ok(s.to_owned())
        }
    }

    fn module_name(&self, pos: usize, key: &str, name: &str) -> Result<(), ConfigError> {
        let ok = name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        });
        if ok {
            Ok(())
        } else {
            Err(self.error(
                pos,
                key,
                format!("{name:?} is not a module name (e.g. \"toolA.startup\")"),
            ))
        }
    }

    fn path(&self, pos: usize, key: &str, raw: &str) -> Result<String, ConfigError> {
        let fail = |m: String| self.error(pos, key, m);
        let expanded = expand_vars(raw, self.vars).map_err(fail)?;
        let expanded = expand_tilde(&expanded, self.vars, true)
            .map_err(fail)?
            .unwrap_or(expanded);
        if expanded.is_empty() {
            return Err(fail(format!("{raw:?} expands to an empty path")));
        }
        let path = normalize(&self.dir.join(&expanded));
        Ok(path.to_string_lossy().into_owned())
    }

    fn env_value(&self, pos: usize, key: &str, raw: &str) -> Result<String, ConfigError> {
        let fail = |m: String| self.error(pos, key, m);
        let expanded = expand_vars(raw, self.vars).map_err(fail)?;
        let sep = if cfg!(windows) { ";" } else { ":" };
        let items = expanded
            .split(sep)
            .map(
                |item| Ok(expand_tilde(item, self.vars, false)?.unwrap_or_else(|| item.to_owned())),
            )
            .collect::<Result<Vec<String>, String>>()
            .map_err(fail)?;
        let value = items.join(sep);
        if value.contains('\0') {
            return Err(fail(
                "value contains a NUL character, which the environment cannot hold".to_owned(),
            ));
        }
        Ok(value)
    }
}

/// Key path text, quoting parts that are not TOML bare keys (`sessions."tool.a"`).
fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let part = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        part
    } else {
        format!("{prefix}.{part}")
    }
}

/// 1-based line and character column of byte offset `pos`.
fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Replaces `${VAR}` / `${VAR:-default}`; `$$` is a literal `$`.
fn expand_vars(s: &str, vars: &dyn Vars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err(format!(
                    "unterminated ${{ in {s:?} (write $$ for a literal $)"
                ));
            };
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid {
                // Debug-quoted: a newline or control character in the reference must
                // not break the one-line error.
                return Err(format!(
                    "invalid variable reference {:?}: write ${{NAME}} or ${{NAME:-default}}",
                    format!("${{{inner}}}")
                ));
            }
            match (vars.var(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (used as ${{{name}}}; \
                         set it or write ${{{name}:-default}})"
                    ));
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands a leading `~` (alone or before a separator) to the home directory:
/// `Ok(None)` when `s` has none. `~user` is an error when `strict`, kept otherwise.
fn expand_tilde(s: &str, vars: &dyn Vars, strict: bool) -> Result<Option<String>, String> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(None);
    };
    let separated =
        rest.is_empty() || rest.starts_with('/') || (cfg!(windows) && rest.starts_with('\\'));
    if !separated {
        return if strict {
            Err(format!(
                "{s:?}: ~user is not supported; write the full path"
            ))
        } else {
            Ok(None)
        };
    }
    // Same order as Python's os.path.expanduser: HOME, then USERPROFILE on Windows.
    let home = vars
        .var("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| cfg!(windows).then(|| vars.var("USERPROFILE")).flatten())
        .filter(|h| !h.is_empty());
    match home {
        Some(home) => Ok(Some(format!(
            "{}{rest}",
            home.trim_end_matches(['/', '\\'])
        ))),
        None => Err(format!("{s:?}: cannot expand ~, HOME is not set")),
    }
}

/// Removes `.` and `..` without touching the file system (like `os.path.normpath`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Python layer
// ---------------------------------------------------------------------------------------

/// The Python exception for a [`ConfigError`]: `subsession.ConfigError`, a
/// `SessionError` and a `ValueError` (made in `errors`).
fn to_py_err(py: Python<'_>, e: &ConfigError) -> PyErr {
    let err = match crate::errors::config_error(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), e.to_string()),
        Err(failed) => return failed,
    };
    // Attributes let a UI highlight the spot; failures to set them only lose detail.
    let value = err.value(py);
    let (line, column) = e.position.unzip();
    let _ = value.setattr("file", &e.file);
    let _ = value.setattr("line", line);
    let _ = value.setattr("column", column);
    let _ = value.setattr("key", e.key.as_deref());
    err
}

fn spec_to_dict<'py>(py: Python<'py>, spec: &SessionSpec) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("paths", &spec.paths)?;
    let env = PyDict::new(py);
    for (key, value) in &spec.env {
        env.set_item(key, value.as_deref())?;
    }
    dict.set_item("env", env)?;
    dict.set_item("keep_global", &spec.keep_global)?;
    dict.set_item("inherit_env", spec.inherit_env)?;
    dict.set_item("inherit_paths", spec.inherit_paths)?;
    dict.set_item("startup", spec.startup.as_deref())?;
    Ok(dict)
}

/// parse_config(paths: list[str | os.PathLike]) -> dict
///
/// Reads and layers config files (first = studio, last = user). Returns
/// ``{"host_modules": [...], "sessions": {name: {paths, env, keep_global, inherit_env,
/// inherit_paths, startup}}}``. Raises ConfigError naming file, line, column and key.
#[pyfunction]
fn parse_config<'py>(py: Python<'py>, paths: Vec<PathBuf>) -> PyResult<Bound<'py, PyDict>> {
    // Studio configs often live on network shares: do not hold the GIL while reading,
    // but copy the environment before letting it go.
    let env = EnvSnapshot::capture(py);
    let config = py
        .detach(|| parse_files(&paths, &env))
        .map_err(|e| to_py_err(py, &e))?;
    let sessions = PyDict::new(py);
    for (name, spec) in &config.sessions {
        sessions.set_item(name, spec_to_dict(py, spec)?)?;
    }
    let result = PyDict::new(py);
    result.set_item("host_modules", &config.host_modules)?;
    result.set_item("sessions", sessions)?;
    Ok(result)
}

/// parse_session_json(text: str, origin: str) -> dict
///
/// One session's settings from a JSON object with the per-session keys; ``origin``
/// names the text in errors. Relative paths resolve against the working directory.
#[pyfunction]
#[pyo3(name = "parse_session_json")]
fn py_parse_session_json<'py>(
    py: Python<'py>,
    text: &str,
    origin: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = parse_session_json(text, origin, &EnvSnapshot::capture(py))
        .map_err(|e| to_py_err(py, &e))?;
    spec_to_dict(py, &spec)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_config, m)?)?;
    m.add_function(wrap_pyfunction!(py_parse_session_json, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, &'static str>);

    impl Vars for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
    }

    fn env() -> FakeEnv {
        FakeEnv(HashMap::from([
            ("HOME", "/home/td"),
            ("TOOLS", "/studio/tools"),
            ("EMPTY", ""),
        ]))
    }

    fn base() -> PathBuf {
        if cfg!(windows) {
            PathBuf::from(r"C:\cfg")
        } else {
            PathBuf::from("/cfg")
        }
    }

    fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        parse_many(&[(file, text)])
    }

    fn parse_many(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = env();
        let mut layers = Vec::new();
        for (file, text) in files {
            let src = Source {
                file,
                text,
                format: if file.ends_with(".json") {
                    Format::Json
                } else {
                    Format::Toml
                },
                dir: base(),
                vars: &vars,
            };
            layers.push(src.layer(&src.parse()?)?);
        }
        Ok(layer(layers))
    }

    fn err(file: &str, text: &str) -> String {
        match parse(file, text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn session<'c>(config: &'c Config, name: &str) -> &'c SessionSpec {
        match config.sessions.iter().find(|(n, _)| n == name) {
            Some((_, spec)) => spec,
            None => panic!("no session {name} in {config:?}"),
        }
    }

    fn abs(p: &str) -> String {
        normalize(&base().join(p)).to_string_lossy().into_owned()
    }

    fn env_of(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    const FULL_TOML: &str = r#"
host_modules = ["studio_qt"]

[defaults]
keep_global = ["studio_core"]
env = { STUDIO = "1" }

[sessions.toolA]
paths = ["lib", "${TOOLS}/toolA", "~/dev/toolA", "../shared"]
env = { TOOLA_MODE = "prod", PYTHONWARNINGS = false }
inherit_env = false
startup = "toolA.boot"

[sessions."tool-b.v2"]
inherit_paths = false
"#;

    const FULL_JSON: &str = r#"{
  "host_modules": ["studio_qt"],
  "defaults": {"keep_global": ["studio_core"], "env": {"STUDIO": "1"}},
  "sessions": {
    "toolA": {
      "paths": ["lib", "${TOOLS}/toolA", "~/dev/toolA", "../shared"],
      "env": {"TOOLA_MODE": "prod", "PYTHONWARNINGS": null},
      "inherit_env": false,
      "startup": "toolA.boot"
    },
    "tool-b.v2": {"inherit_paths": false}
  }
}"#;

    #[test]
    fn full_toml() {
        let config = parse("studio.toml", FULL_TOML).unwrap();
        assert_eq!(config.host_modules, ["studio_qt"]);
        let names: Vec<&str> = config.sessions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["toolA", "tool-b.v2"]);
        let a = session(&config, "toolA");
        let home = normalize(Path::new("/home/td/dev/toolA"));
        let shared = normalize(&base().join("../shared"));
        assert_eq!(
            a.paths,
            [
                abs("lib"),
                normalize(Path::new("/studio/tools/toolA"))
                    .to_string_lossy()
                    .into_owned(),
                home.to_string_lossy().into_owned(),
                shared.to_string_lossy().into_owned(),
            ]
        );
        assert_eq!(
            a.env,
            env_of(&[
                ("STUDIO", Some("1")),
                ("TOOLA_MODE", Some("prod")),
                ("PYTHONWARNINGS", None)
            ])
        );
        assert_eq!(a.keep_global, ["studio_core"]);
        assert!(!a.inherit_env);
        assert!(a.inherit_paths);
        assert_eq!(a.startup.as_deref(), Some("toolA.boot"));
        let b = session(&config, "tool-b.v2");
        assert!(b.paths.is_empty());
        assert!(b.inherit_env);
        assert!(!b.inherit_paths);
        assert_eq!(b.startup, None);
        assert_eq!(b.keep_global, ["studio_core"]);
    }

    #[test]
    fn json_equals_toml() {
        assert_eq!(
            parse("studio.json", FULL_JSON).unwrap(),
            parse("studio.toml", FULL_TOML).unwrap()
        );
    }

    #[test]
    fn empty_files_are_fine() {
        assert_eq!(parse("a.toml", "").unwrap(), Config::default());
        assert_eq!(parse("a.json", "{}").unwrap(), Config::default());
        assert_eq!(
            parse("a.json", "{\"sessions\": {}}").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn layering_studio_show_user() {
        let studio = r#"
host_modules = ["studio_qt"]
[defaults]
env = { STUDIO = "1", LEVEL = "studio" }
keep_global = ["studio_core"]
[sessions.toolA]
paths = ["/studio/toolA"]
env = { A = "studio", KEEP = "yes" }
startup = "toolA.boot"
[sessions.toolB]
paths = ["/studio/toolB"]
"#;
        let show = r#"{
  "host_modules": ["show_lib", "studio_qt"],
  "defaults": {"env": {"LEVEL": "show"}},
  "sessions": {
    "toolA": {"paths": ["/show/toolA"], "env": {"A": "show"}, "inherit_env": false},
    "toolC": {}
  }
}"#;
        let user = r#"
[sessions.toolA]
env = { KEEP = false }
inherit_env = true
keep_global = []
"#;
        let config = parse_many(&[
            ("studio.toml", studio),
            ("show.json", show),
            ("user.toml", user),
        ])
        .unwrap();
        assert_eq!(config.host_modules, ["studio_qt", "show_lib"]);
        let names: Vec<&str> = config.sessions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["toolA", "toolB", "toolC"]);
        let a = session(&config, "toolA");
        assert_eq!(a.paths, [abs("/show/toolA")], "later paths replace");
        assert_eq!(
            a.env,
            env_of(&[
                ("STUDIO", Some("1")),
                ("LEVEL", Some("show")),
                ("A", Some("show")),
                ("KEEP", None),
            ]),
            "env merges per variable; false unsets"
        );
        assert!(a.keep_global.is_empty(), "an empty list replaces too");
        assert!(a.inherit_env, "user's scalar wins");
        assert_eq!(
            a.startup.as_deref(),
            Some("toolA.boot"),
            "kept when not overridden"
        );
        let b = session(&config, "toolB");
        assert_eq!(b.paths, [abs("/studio/toolB")]);
        assert_eq!(b.keep_global, ["studio_core"]);
        assert_eq!(
            b.env,
            env_of(&[("STUDIO", Some("1")), ("LEVEL", Some("show"))])
        );
        let c = session(&config, "toolC");
        assert_eq!(
            c.keep_global,
            ["studio_core"],
            "studio defaults reach show sessions"
        );
    }

    #[test]
    fn session_key_beats_later_defaults() {
        let studio = "[sessions.a]\ninherit_paths = false\n";
        let show = "[defaults]\ninherit_paths = true\nstartup = \"studio_boot\"\n";
        let config = parse_many(&[("studio.toml", studio), ("show.toml", show)]).unwrap();
        let a = session(&config, "a");
        assert!(!a.inherit_paths);
        assert_eq!(a.startup.as_deref(), Some("studio_boot"));
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = std::env::temp_dir().join(format!("subsession-cfg-{}", std::process::id()));
        let show = dir.join("show");
        std::fs::create_dir_all(&show).unwrap();
        let file = show.join("show.toml");
        std::fs::write(
            &file,
            "[sessions.t]\npaths = [\"lib\", \"./a/../b\", \"..\"]\n",
        )
        .unwrap();
        let config = parse_files_with(&[&file], &env()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let expected: Vec<String> = [show.join("lib"), show.join("b"), dir.clone()]
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(session(&config, "t").paths, expected);
    }

    #[test]
    fn expansion() {
        let sep = if cfg!(windows) { ";" } else { ":" };
        let text = format!(
            r#"
[sessions.t]
paths = ["~", "~/x", "${{TOOLS}}", "${{MISSING:-/fallback}}", "${{EMPTY:-/was_empty}}", "/a$$b/$x"]
env = {{ P = "~/a{sep}${{TOOLS}}/b{sep}~other", Q = "${{EMPTY}}", R = "cost $$5 and $HOME" }}
"#
        );
        let config = parse("s.toml", &text).unwrap();
        let t = session(&config, "t");
        let n = |p: &str| normalize(Path::new(p)).to_string_lossy().into_owned();
        assert_eq!(
            t.paths,
            [
                n("/home/td"),
                n("/home/td/x"),
                n("/studio/tools"),
                n("/fallback"),
                n("/was_empty"),
                n("/a$b/$x")
            ]
        );
        let p = ["/home/td/a", "/studio/tools/b", "~other"].join(sep);
        assert_eq!(
            t.env,
            env_of(&[
                ("P", Some(&p)),
                ("Q", Some("")),
                ("R", Some("cost $5 and $HOME"))
            ])
        );
    }

    #[test]
    fn error_unknown_key() {
        let text = "[sessions.toolA]\npaths = []\n    paht = [\"x\"]\n";
        assert_eq!(
            err("studio.toml", text),
            "studio.toml:3:5: sessions.toolA.paht: unknown key (expected one of: paths, env, \
             keep_global, inherit_env, inherit_paths, startup); did you mean paths?"
        );
        assert_eq!(
            err("studio.toml", "version = 2\n"),
            "studio.toml:1:1: version: unknown key (expected one of: defaults, sessions, \
             host_modules)"
        );
        assert_eq!(
            err(
                "a.json",
                "{\"sessions\": {\"t\": {\n  \"paths\": [],\n  \"colour\": 1}}}"
            ),
            "a.json:3:3: sessions.t.colour: unknown key (expected one of: paths, env, \
             keep_global, inherit_env, inherit_paths, startup)"
        );
    }

    #[test]
    fn error_wrong_type() {
        assert_eq!(
            err("s.toml", "[sessions.toolA]\npaths = \"lib\"\n"),
            "s.toml:2:9: sessions.toolA.paths: expected a list of strings, found a string"
        );
        assert_eq!(
            err("s.toml", "[sessions.toolA]\nkeep_global = [\"a\", 2]\n"),
            "s.toml:2:21: sessions.toolA.keep_global: expected a list of strings, item 2 is \
             an integer"
        );
        assert_eq!(
            err(
                "s.json",
                "{\"sessions\": {\"a\": {\"inherit_env\": \"no\"}}}"
            ),
            "s.json:1:36: sessions.a.inherit_env: expected true or false, found a string"
        );
        assert_eq!(
            err("s.toml", "[sessions.a]\nenv = { X = 1 }\n"),
            "s.toml:2:13: sessions.a.env.X: expected a string, or false to unset it, found \
             an integer"
        );
        assert_eq!(
            err("s.toml", "sessions = 3\n"),
            "s.toml:1:12: sessions: expected a table, found an integer"
        );
        assert_eq!(
            err("s.json", "[1]"),
            "s.json:1:1: expected an object, found an array"
        );
        assert_eq!(
            err("s.toml", "[sessions.a]\nstartup = \"tool a\"\n"),
            "s.toml:2:11: sessions.a.startup: \"tool a\" is not a module name (e.g. \
             \"toolA.startup\")"
        );
        assert_eq!(
            err("s.toml", "[sessions.a]\npaths = [\"\"]\n"),
            "s.toml:2:10: sessions.a.paths: empty string"
        );
    }

    #[test]
    fn error_syntax() {
        assert_eq!(
            err("s.toml", "[sessions.a]\npaths = [\"x\"\n"),
            "s.toml:2:13: invalid TOML: unclosed array, expected `]`"
        );
        let dup = err("s.toml", "[sessions.a]\nstartup = \"x\"\nstartup = \"y\"\n");
        assert!(
            dup.starts_with("s.toml:3:1: invalid TOML: duplicate key"),
            "{dup}"
        );
        assert_eq!(
            err("s.json", "{\n  \"sessions\": {\"é\": 1,}\n}"),
            "s.json:2:23: invalid JSON: key must be a string"
        );
        assert_eq!(
            err("s.json", "{\"sessions\": {}, \"sessions\": {}}"),
            "s.json:1:18: sessions: duplicate key"
        );
        assert_eq!(
            err(
                "s.json",
                "{\"sessions\": {\"a\": {\"env\": {\"X\": \"1\",\n \"X\": \"2\"}}}}"
            ),
            "s.json:2:2: sessions.a.env.X: duplicate key"
        );
    }

    #[test]
    fn error_session_name() {
        assert_eq!(
            err("s.toml", "[sessions]\nok = {}\n\"tool A\" = {}\n"),
            "s.toml:3:1: sessions.\"tool A\": invalid session name: use 1-64 ASCII letters, \
             digits, '_', '-' or '.'"
        );
        let long = format!("{{\"sessions\": {{\"{}\": {{}}}}}}", "x".repeat(65));
        assert!(err("s.json", &long).starts_with("s.json:1:15: sessions."));
    }

    #[test]
    fn error_undefined_var() {
        assert_eq!(
            err("s.toml", "[sessions.a]\nenv = { X = \"${NOPE}/x\" }\n"),
            "s.toml:2:13: sessions.a.env.X: environment variable NOPE is not set (used as \
             ${NOPE}; set it or write ${NOPE:-default})"
        );
        assert_eq!(
            err("s.toml", "[sessions.a]\npaths = [\"${TOOLS\"]\n"),
            "s.toml:2:10: sessions.a.paths: unterminated ${ in \"${TOOLS\" (write $$ for a \
             literal $)"
        );
        assert_eq!(
            err("s.toml", "[sessions.a]\npaths = [\"~bob/x\"]\n"),
            "s.toml:2:10: sessions.a.paths: \"~bob/x\": ~user is not supported; write the full \
             path"
        );
    }

    #[test]
    fn columns_count_characters() {
        let text = "[sessions.a]\nenv = { \"é\" = \"x\", \"Ü\" = 1 }\n";
        assert_eq!(
            err("s.toml", text),
            "s.toml:2:26: sessions.a.env.\"Ü\": expected a string, or false to unset it, \
             found an integer"
        );
        assert_eq!(line_column("aé\nxyz", 5), (2, 2));
        assert_eq!(
            line_column("aé", 2),
            (1, 2),
            "inside a character: its start"
        );
    }

    #[test]
    fn files_on_disk() {
        let missing = Path::new("/definitely/not/here/studio.toml");
        let e = parse_files_with(&[missing], &env()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: config file not found", missing.display())
        );
        let e = parse_files_with(&[Path::new("studio.yaml")], &env()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "studio.yaml: unknown config format: name the file *.toml or *.json"
        );
        let dir = std::env::temp_dir().join(format!("subsession-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("a.JSON");
        let bad = dir.join("b.toml");
        std::fs::write(&good, "\u{feff}{\"sessions\": {\"a\": {}}}").unwrap();
        std::fs::write(&bad, "[sessions.b]\nnope = 1\n").unwrap();
        let ok = parse_files_with(&[&good], &env());
        let fail = parse_files_with(&[&good, &bad], &env());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ok.unwrap().sessions.len(), 1);
        let fail = fail.unwrap_err();
        assert_eq!(fail.file, bad.display().to_string());
        assert_eq!(fail.position, Some((2, 1)));
        assert_eq!(fail.key.as_deref(), Some("sessions.b.nope"));
    }

    #[test]
    fn session_json() {
        let spec = parse_session_json_with(
            r#"{"paths": ["lib"], "env": {"A": "1"}, "keep_global": ["six"]}"#,
            "<C ABI>",
            &base(),
            &env(),
        )
        .unwrap();
        assert_eq!(spec.paths, [abs("lib")]);
        assert_eq!(spec.env, env_of(&[("A", Some("1"))]));
        assert_eq!(spec.keep_global, ["six"]);
        assert!(spec.inherit_env && spec.inherit_paths);
        let e = parse_session_json_with(r#"{"path": []}"#, "<C ABI>", &base(), &env())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "<C ABI>:1:2: path: unknown key (expected one of: paths, env, keep_global, \
             inherit_env, inherit_paths, startup); did you mean paths?"
        );
        let e = parse_session_json_with("", "<C ABI>", &base(), &env()).unwrap_err();
        assert!(
            e.to_string().starts_with("<C ABI>:1:1: invalid JSON: EOF"),
            "{e}"
        );
    }

    #[test]
    fn deep_json_is_refused_before_recursing() {
        // Run on a 256 KiB stack: the refusal must not depend on the caller's stack.
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let deep = format!(
                    r#"{{"paths": {}{}}}"#,
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                );
                parse_session_json_with(&deep, "deep", &base(), &env())
                    .unwrap_err()
                    .to_string()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.starts_with("deep:1:"), "{outcome}");
        assert!(
            outcome.contains("nested deeper than 32 levels"),
            "{outcome}"
        );
        // Brackets inside strings do not count.
        let text = format!(r#"{{"paths": ["{}"]}}"#, "[".repeat(100));
        assert!(parse_session_json_with(&text, "s", &base(), &env()).is_ok());
        assert!(json_too_deep(&format!("{}{}", "[".repeat(32), "]".repeat(32))).is_none());
        assert_eq!(json_too_deep(&"[".repeat(33)), Some(32));
    }

    #[test]
    fn env_values_and_references_stay_one_line() {
        let e = err("a.toml", "[sessions.a]\nenv = { A = \"a\\u0000b\" }\n");
        assert!(e.starts_with("a.toml:2:"), "{e}");
        assert!(e.contains("NUL"), "{e}");
        let e = err("a.toml", "[sessions.a]\npaths = [\"${UNDEF\\nX}\"]\n");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn check_session_json_needs_no_environment() {
        assert!(check_session_json(r#"{"paths": ["${NOT_SET_ANYWHERE}/x"]}"#, "c").is_ok());
        let e = check_session_json(r#"{"paths": 1}"#, "c").unwrap_err();
        assert!(e.to_string().starts_with("c:1:"), "{e}");
    }

    #[test]
    fn session_names() {
        assert!(is_valid_session_name("toolA"));
        assert!(is_valid_session_name("a-b.c_1"));
        assert!(is_valid_session_name(&"x".repeat(64)));
        assert!(!is_valid_session_name(&"x".repeat(65)));
        assert!(!is_valid_session_name(""));
        assert!(!is_valid_session_name("a b"));
        assert!(!is_valid_session_name("é"));
    }
}
