//! `os.environ` during blocks: applying a session's variables, restoring the saved
//! environment exactly, and reading back what a block changed. Only variables whose
//! value differs are written (each write is a `putenv`).

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::base::interp;

// ---- environment ----------------------------------------------------------------------

/// `os.environ`'s encoded data dict (live).
pub(super) fn env_data<'py>(py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let environ = interp::get(py)?.environ.bind(py);
    Ok(environ
        .getattr(intern!(py, "_data"))
        .ok()
        .and_then(|d| d.cast_into::<PyDict>().ok()))
}

/// A copy of `os.environ`'s encoded data (C-level dict copy, cheap to compare).
pub(super) fn env_snapshot(py: Python<'_>) -> PyResult<Py<PyAny>> {
    match env_data(py)? {
        Some(data) => Ok(data.copy()?.into_any().unbind()),
        None => Ok(PyDict::new(py).into_any().unbind()),
    }
}

/// True when the environment still equals `snapshot`.
pub(super) fn env_unchanged(py: Python<'_>, snapshot: &Bound<'_, PyAny>) -> PyResult<bool> {
    match env_data(py)? {
        Some(data) => data.eq(snapshot),
        None => Ok(true),
    }
}

pub(super) fn env_decode<'py>(
    py: Python<'py>,
    snapshot: &Bound<'py, PyAny>,
) -> PyResult<Vec<(String, String)>> {
    let environ = interp::get(py)?.environ.bind(py);
    let dict = snapshot.cast::<PyDict>()?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let key: String = environ
            .call_method1(intern!(py, "decodekey"), (k,))?
            .extract()?;
        let value: String = environ
            .call_method1(intern!(py, "decodevalue"), (v,))?
            .extract()?;
        out.push((key, value));
    }
    Ok(out)
}

/// Makes `os.environ` (and so the C environment) exactly `target`, in place.
pub(super) fn env_set(py: Python<'_>, target: &[(String, String)]) -> PyResult<()> {
    let environ = interp::get(py)?.environ.bind(py);
    let wanted: HashMap<&str, &str> = target
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let current: Vec<String> = environ
        .call_method0("keys")?
        .try_iter()?
        .flatten()
        .filter_map(|k| k.extract().ok())
        .collect();
    for key in current {
        if !wanted.contains_key(key.as_str()) {
            environ.del_item(&key)?;
        }
    }
    for (k, v) in target {
        let same = environ
            .call_method1(intern!(py, "get"), (k,))?
            .extract::<Option<String>>()?
            .is_some_and(|cur| &cur == v);
        if !same {
            environ.set_item(k, v)?;
        }
    }
    Ok(())
}

/// Changes the block made to the environment: (key, new value or None if deleted).
pub(super) fn env_changes(
    py: Python<'_>,
    applied: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, Option<String>)>> {
    let now = env_snapshot(py)?;
    let before: HashMap<String, String> = env_decode(py, applied)?.into_iter().collect();
    let after: HashMap<String, String> = env_decode(py, now.bind(py))?.into_iter().collect();
    let mut changes: Vec<(String, Option<String>)> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    changes.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    changes.sort();
    Ok(changes)
}

/// Applies the session's environment; returns C-level variables it had to unset.
pub(super) fn apply_env(
    py: Python<'_>,
    env: &[(String, Option<String>)],
    inherit: bool,
    outermost_saved: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(String, String)>> {
    let environ = interp::get(py)?.environ.bind(py);
    if inherit && outermost_saved.is_none() {
        for (k, v) in env {
            match v {
                None => {
                    if environ.contains(k)? {
                        environ.del_item(k)?;
                    }
                }
                Some(v) => {
                    let cur: Option<String> =
                        environ.call_method1(intern!(py, "get"), (k,))?.extract()?;
                    if cur.as_deref() != Some(v.as_str()) {
                        environ.set_item(k, v)?;
                    }
                }
            }
        }
    } else {
        let mut target: Vec<(String, String)> = match (inherit, outermost_saved) {
            (true, Some(saved)) => env_decode(py, saved)?,
            _ => Vec::new(),
        };
        for (k, v) in env {
            target.retain(|(tk, _)| tk != k);
            if let Some(v) = v {
                target.push((k.clone(), v.clone()));
            }
        }
        env_set(py, &target)?;
    }
    // C code may setenv() behind os.environ's back (readline's LINES/COLUMNS): with
    // inherit_env=False those must not show through either.
    let mut c_only = Vec::new();
    if !inherit {
        let os = interp::get(py)?.os.bind(py);
        for (k, v) in std::env::vars() {
            if !environ.contains(&k)? {
                os.call_method1("unsetenv", (&k,))?;
                c_only.push((k, v));
            }
        }
    }
    Ok(c_only)
}
