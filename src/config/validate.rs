//! Validation: walking the positioned tree into sessions, with errors that name
//! the spot and say what to write instead.

use std::path::PathBuf;

use serde_json::value::RawValue;

use super::expand::*;
use super::requirement::check_requirement;
use super::tree::*;
use super::*;
use crate::base::names::is_valid_session_name;

/// One config text being checked.
pub(super) struct Source<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) format: Format,
    /// Folder relative paths resolve against.
    pub(super) dir: PathBuf,
    pub(super) vars: &'a dyn Vars,
    /// Whether the lock keys (`requirements`...) are allowed: in config files, not in
    /// the C ABI's one-session JSON, which has no lock to read them.
    pub(super) lock_keys: bool,
}

impl Source<'_> {
    pub(super) fn error(&self, pos: usize, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            position: Some(line_column(self.text, pos)),
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: message.to_string(),
        }
    }

    pub(super) fn parse(&self) -> Result<Node, ConfigError> {
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
    pub(super) fn json_node(&self, raw: &RawValue) -> Result<Node, ConfigError> {
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
    pub(super) fn json_error(&self, e: &serde_json::Error, within: &str) -> ConfigError {
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

    pub(super) fn kind_name(&self, kind: &Kind) -> &'static str {
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

    pub(super) fn table_word(&self) -> &'static str {
        match self.format {
            Format::Toml => "a table",
            Format::Json => "an object",
        }
    }

    pub(super) fn table<'n>(&self, node: &'n Node, key: &str) -> Result<&'n [Entry], ConfigError> {
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

    pub(super) fn unknown_key(&self, entry: &Entry, key: &str, expected: &[&str]) -> ConfigError {
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

    pub(super) fn layer(&self, root: &Node) -> Result<Layer, ConfigError> {
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
    pub(super) fn session(&self, node: &Node, at: &str) -> Result<Partial, ConfigError> {
        let mut partial = Partial::default();
        for entry in self.table(node, at)? {
            let key = join_key(at, &entry.key);
            let value = &entry.value;
            if !self.lock_keys && LOCK_KEYS.contains(&entry.key.as_str()) {
                return Err(self.error(
                    entry.key_pos,
                    &key,
                    "only a config file may name requirements: `python -m subsession lock` \
                     reads them from there",
                ));
            }
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
                "requirements" => {
                    let mut requirements = Vec::new();
                    for (pos, raw) in self.strings(value, &key)? {
                        check_requirement(&raw).map_err(|m| {
                            self.error(
                                pos,
                                &key,
                                format!("{raw:?} is not a PEP 508 requirement: {m}"),
                            )
                        })?;
                        requirements.push(raw.trim().to_owned());
                    }
                    partial.requirements = Some(requirements);
                }
                "index_url" => {
                    let raw = self.string(value, &key)?;
                    partial.index_url = Some(self.location(value.pos, &key, &raw)?);
                }
                "find_links" => {
                    let mut links = Vec::new();
                    for (pos, raw) in self.strings(value, &key)? {
                        links.push(self.location(pos, &key, &raw)?);
                    }
                    partial.find_links = Some(links);
                }
                "pythons" => partial.pythons = Some(self.one_of(value, &key, &PYTHONS)?),
                "platforms" => partial.platforms = Some(self.one_of(value, &key, &PLATFORMS)?),
                _ => return Err(self.unknown_key(entry, &key, &SESSION_KEYS)),
            }
        }
        Ok(partial)
    }

    pub(super) fn string(&self, node: &Node, key: &str) -> Result<String, ConfigError> {
        match &node.kind {
            Kind::Str(s) => self.checked(node.pos, key, s),
            other => Err(self.error(
                node.pos,
                key,
                format!("expected a string, found {}", self.kind_name(other)),
            )),
        }
    }

    /// A URL as written (after `${VAR}`), or a folder made absolute like `paths`.
    pub(super) fn location(&self, pos: usize, key: &str, raw: &str) -> Result<String, ConfigError> {
        let lower = raw.to_ascii_lowercase();
        if ["http://", "https://", "file://"]
            .iter()
            .any(|scheme| lower.starts_with(scheme))
        {
            return expand_vars(raw, self.vars).map_err(|m| self.error(pos, key, m));
        }
        if key.ends_with("index_url") {
            return Err(self.error(
                pos,
                key,
                format!("{raw:?} is not an index URL: write https://... (or file://...)"),
            ));
        }
        self.path(pos, key, raw)
    }

    /// A list whose items are each one of `allowed`, without duplicates.
    pub(super) fn one_of(
        &self,
        node: &Node,
        key: &str,
        allowed: &[&str],
    ) -> Result<Vec<String>, ConfigError> {
        let mut chosen: Vec<String> = Vec::new();
        for (pos, item) in self.strings(node, key)? {
            if !allowed.contains(&item.as_str()) {
                return Err(self.error(
                    pos,
                    key,
                    format!("{item:?} is not one of: {}", allowed.join(", ")),
                ));
            }
            if !chosen.contains(&item) {
                chosen.push(item);
            }
        }
        if chosen.is_empty() {
            return Err(self.error(node.pos, key, "empty list: leave the key out for all"));
        }
        Ok(chosen)
    }

    pub(super) fn boolean(&self, node: &Node, key: &str) -> Result<bool, ConfigError> {
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
    pub(super) fn strings(
        &self,
        node: &Node,
        key: &str,
    ) -> Result<Vec<(usize, String)>, ConfigError> {
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

    pub(super) fn checked(&self, pos: usize, key: &str, s: &str) -> Result<String, ConfigError> {
        if s.is_empty() {
            Err(self.error(pos, key, "empty string"))
        } else if s.contains('\0') {
            Err(self.error(pos, key, "string contains a NUL character"))
        } else {
            Ok(s.to_owned())
        }
    }

    pub(super) fn module_name(&self, pos: usize, key: &str, name: &str) -> Result<(), ConfigError> {
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

    pub(super) fn path(&self, pos: usize, key: &str, raw: &str) -> Result<String, ConfigError> {
        let fail = |m: String| self.error(pos, key, m);
        let expanded = expand_vars(raw, self.vars).map_err(fail)?;
        let expanded = expand_tilde(&expanded, self.vars, true)
            .map_err(fail)?
            .unwrap_or(expanded);
        if expanded.is_empty() {
            return Err(fail(format!("{raw:?} expands to an empty path")));
        }
        Ok(absolute_path(&self.dir, &expanded))
    }

    pub(super) fn env_value(
        &self,
        pos: usize,
        key: &str,
        raw: &str,
    ) -> Result<String, ConfigError> {
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
pub(super) fn join_key(prefix: &str, key: &str) -> String {
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
pub(crate) fn line_column(text: &str, pos: usize) -> (usize, usize) {
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

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
