//! A session's settings as Python code gives them (`Session(...)`, `configure`),
//! checked and made absolute before anything changes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::session::Settings;
use crate::base::policy::Patterns;
use crate::config;

/// The settings of `Session(...)`, checked: any error is one line and changes nothing.
pub(crate) fn parse_settings(
    paths: Vec<String>,
    env: &Bound<'_, PyDict>,
    keep_global: Vec<String>,
    inherit_env: bool,
    inherit_paths: bool,
) -> PyResult<Settings> {
    Ok(Settings {
        paths: absolute_paths(paths)?,
        env: parse_env(env)?,
        keep_global: Patterns::new(&keep_global).map_err(PyValueError::new_err)?,
        inherit_env,
        inherit_paths,
    })
}

/// Absolute, normalised and without duplicates; relative paths resolve against the
/// working directory (config files resolve theirs against the file's folder).
pub(crate) fn absolute_paths(paths: Vec<String>) -> PyResult<Vec<String>> {
    let cwd = std::env::current_dir().map_err(|e| {
        PyValueError::new_err(format!(
            "cannot resolve relative paths: no current folder ({e})"
        ))
    })?;
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if p.is_empty() {
            return Err(PyValueError::new_err(
                "empty entry in paths; give folders such as paths=['/tools/a/lib']",
            ));
        }
        let abs = config::absolute_path(&cwd, &p);
        if !out.contains(&abs) {
            out.push(abs);
        }
    }
    Ok(out)
}

/// `env={...}`: names and values checked; None unsets a variable in the session.
pub(crate) fn parse_env(env: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Option<String>)>> {
    let mut out = Vec::with_capacity(env.len());
    for (k, v) in env.iter() {
        let key: String = k.extract().map_err(|_| {
            PyTypeError::new_err("env keys must be strings, e.g. env={'TOOL_MODE': 'dev'}")
        })?;
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(PyValueError::new_err(format!(
                "invalid environment variable name {key:?}: no '=', no NUL, not empty"
            )));
        }
        let value = if v.is_none() {
            None
        } else {
            let s: String = v.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "env[{key:?}] must be a string or None (None unsets it in the session)"
                ))
            })?;
            if s.contains('\0') {
                return Err(PyValueError::new_err(format!(
                    "env[{key:?}] contains a NUL byte"
                )));
            }
            Some(s)
        };
        out.push((key, value));
    }
    Ok(out)
}
