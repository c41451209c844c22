//! Names: how qualified names are formed from session names, and how a module's name
//! is read without running Python code.
//!
//! A session's modules live in `sys.modules` under qualified names,
//! `__subsession_toolA__.requests`: [`PREFIX`], the session's name, then the real name.
//! Everything here is a pure function of names or of a module's own dict.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyString};

/// Every session module's qualified name starts with this (`__subsession_toolA__.x`).
pub(crate) const PREFIX: &str = "__subsession_";

/// Whether `name` is a valid session name: 1-64 ASCII letters, digits, `_`, `-`, `.`.
pub(crate) fn is_valid_session_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a session name, with the one-line error users see.
pub(crate) fn check_session_name(name: &str) -> Result<(), String> {
    if is_valid_session_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid session name {name:?}: use 1-64 letters, digits, '_', '-' or '.'"
        ))
    }
}

/// The readable prefix for a session name: `toolA` -> `__subsession_toolA__`;
/// `-` and `.` become `_` because a prefix must be one module-name component.
pub(crate) fn prefix_for(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c == '-' || c == '.' { '_' } else { c })
        .collect();
    format!("{PREFIX}{clean}__")
}

/// `a`, `a.b`, `a.b.c` for `a.b.c`.
pub(crate) fn dotted_prefixes(name: &str) -> impl Iterator<Item = &str> {
    // Byte positions: '.' never occurs inside a multi-byte UTF-8 sequence.
    name.bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'.')
        .map(move |(i, _)| &name[..i])
        .chain(std::iter::once(name))
}

/// The top-level package of a dotted name.
pub(crate) fn top_level(name: &str) -> &str {
    match name.bytes().position(|b| b == b'.') {
        Some(dot) => &name[..dot],
        None => name,
    }
}

/// `name.startswith(prefix)` without allocating.
pub(crate) fn starts_with(name: &Bound<'_, PyString>, prefix: &Bound<'_, PyString>) -> bool {
    // SAFETY: both are valid str objects; Tailmatch only reads them.
    unsafe {
        pyo3::ffi::PyUnicode_Tailmatch(name.as_ptr(), prefix.as_ptr(), 0, isize::MAX, -1) == 1
    }
}

pub(crate) fn prefix_py(py: Python<'_>) -> &Bound<'_, PyString> {
    static PREFIX_PY: PyOnceLock<Py<PyString>> = PyOnceLock::new();
    PREFIX_PY
        .get_or_init(py, || PyString::intern(py, PREFIX).unbind())
        .bind(py)
}

/// A module's `__name__` as a Python string, read from its dict (no Python code).
pub(crate) fn module_name_py<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyString>> {
    let module = obj.cast::<PyModule>().ok()?;
    let name = module
        .dict()
        .get_item(intern!(obj.py(), "__name__"))
        .ok()??;
    name.cast_into::<PyString>().ok()
}

/// A module's `__name__`, read from its dict without running Python code.
pub(crate) fn module_name(obj: &Bound<'_, PyAny>) -> Option<String> {
    module_name_py(obj)?.to_cow().ok().map(|c| c.into_owned())
}

/// True for a module created by a session (qualified `__name__`).
pub(crate) fn is_session_module(obj: &Bound<'_, PyAny>) -> bool {
    module_name_py(obj).is_some_and(|n| starts_with(&n, prefix_py(obj.py())))
}

/// True for a module whose qualified name starts with `prefix_dot` (one session's).
pub(crate) fn module_in(obj: &Bound<'_, PyAny>, prefix_dot: &Bound<'_, PyString>) -> bool {
    module_name_py(obj).is_some_and(|n| starts_with(&n, prefix_dot))
}
/// True for a module the import system made for `name` (its spec carries that name),
/// read from the module's dict without running Python code.
pub(crate) fn imported_module(obj: &Bound<'_, PyAny>, name: &str) -> bool {
    let Ok(module) = obj.cast::<PyModule>() else {
        return false;
    };
    let py = obj.py();
    module
        .dict()
        .get_item(intern!(py, "__spec__"))
        .ok()
        .flatten()
        .filter(|s| !s.is_none())
        .and_then(|s| s.getattr(intern!(py, "name")).ok())
        .and_then(|n| n.extract::<String>().ok())
        .is_some_and(|n| n == name)
}

pub(crate) fn is_initializing(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    obj.getattr(intern!(py, "__spec__"))
        .ok()
        .filter(|s| !s.is_none())
        .and_then(|s| s.getattr(intern!(py, "_initializing")).ok())
        .is_some_and(|v| v.is_truthy().unwrap_or(false))
}

pub(crate) fn same(a: Option<&Bound<'_, PyAny>>, b: Option<&Bound<'_, PyAny>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.is(b),
        (None, None) => true,
        _ => false,
    }
}

/// The name of an object's type (`"function"`, `"frame"`), for telling kinds apart.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_checked() {
        for good in ["toolA", "a", "my-tool.v2_x", &"x".repeat(64)] {
            assert!(check_session_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            let err = check_session_name(bad).unwrap_err();
            assert!(err.contains("1-64 letters"), "{err}");
        }
    }

    #[test]
    fn prefixes_are_one_readable_component() {
        assert_eq!(prefix_for("toolA"), "__subsession_toolA__");
        assert_eq!(prefix_for("my-tool.v2"), "__subsession_my_tool_v2__");
    }

    #[test]
    fn prefixes_and_top_level() {
        let all: Vec<_> = dotted_prefixes("a.b.c").collect();
        assert_eq!(all, ["a", "a.b", "a.b.c"]);
        assert_eq!(top_level("a.b"), "a");
        assert_eq!(top_level("a"), "a");
    }
}
