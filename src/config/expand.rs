//! Expansion: `${VAR}`, `~` and relative paths, resolved the same way everywhere.

use std::path::{Component, Path, PathBuf};

use super::Vars;

/// Replaces `${VAR}` / `${VAR:-default}`; `$$` is a literal `$`.
pub(super) fn expand_vars(s: &str, vars: &dyn Vars) -> Result<String, String> {
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
pub(super) fn expand_tilde(
    s: &str,
    vars: &dyn Vars,
    strict: bool,
) -> Result<Option<String>, String> {
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

/// `raw` made absolute against `dir` and normalised: the one rule for every path a
/// session is given (config files, `Session(paths=...)`, the C ABI).
pub(crate) fn absolute_path(dir: &Path, raw: &str) -> String {
    normalize(&dir.join(raw)).to_string_lossy().into_owned()
}

/// Removes `.` and `..` without touching the file system (like `os.path.normpath`).
pub(super) fn normalize(path: &Path) -> PathBuf {
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
