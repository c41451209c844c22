//! The studio config's Python functions: `parse_config` and `parse_session_json`,
//! returning plain dicts and raising `subsession.ConfigError`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::base::errors::config_error;
use crate::config::{ConfigError, EnvSnapshot, SessionSpec, parse_files, parse_session_json};

/// The Python exception for a [`ConfigError`]: `subsession.ConfigError`, a
/// `SessionError` and a `ValueError` (made in `errors`).
fn to_py_err(py: Python<'_>, e: &ConfigError) -> PyErr {
    let err = match config_error(py) {
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

/// The five settings of a spec, as `Session(...)` and `configure(...)` take them.
pub(crate) fn settings_dict<'py>(
    py: Python<'py>,
    spec: &SessionSpec,
) -> PyResult<Bound<'py, PyDict>> {
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
    Ok(dict)
}

/// A spec as the config functions return it: the settings and `startup`.
fn spec_to_dict<'py>(py: Python<'py>, spec: &SessionSpec) -> PyResult<Bound<'py, PyDict>> {
    let dict = settings_dict(py, spec)?;
    dict.set_item("startup", spec.startup.as_deref())?;
    Ok(dict)
}

/// A config file's session: [`spec_to_dict`] and the keys `python -m subsession lock`
/// reads (the C ABI's one-session JSON cannot have them).
fn config_spec_to_dict<'py>(py: Python<'py>, spec: &SessionSpec) -> PyResult<Bound<'py, PyDict>> {
    let dict = spec_to_dict(py, spec)?;
    dict.set_item("requirements", &spec.requirements)?;
    dict.set_item("index_url", spec.index_url.as_deref())?;
    dict.set_item("find_links", &spec.find_links)?;
    dict.set_item("pythons", &spec.pythons)?;
    dict.set_item("platforms", &spec.platforms)?;
    Ok(dict)
}

/// parse_config(paths: list[str | os.PathLike]) -> dict
///
/// Reads and layers config files (first = studio, last = user). Returns
/// ``{"host_modules": [...], "sessions": {name: {paths, env, keep_global, inherit_env,
/// inherit_paths, startup, requirements, index_url, find_links, pythons, platforms}}}``.
/// Raises ConfigError naming file, line, column and key.
#[pyfunction]
pub(crate) fn parse_config<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    // Studio configs often live on network shares: do not hold the GIL while reading,
    // but copy the environment before letting it go.
    let env = EnvSnapshot::capture(py);
    let config = py
        .detach(|| parse_files(&paths, &env))
        .map_err(|e| to_py_err(py, &e))?;
    let sessions = PyDict::new(py);
    for (name, spec) in &config.sessions {
        sessions.set_item(name, config_spec_to_dict(py, spec)?)?;
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
pub(crate) fn py_parse_session_json<'py>(
    py: Python<'py>,
    text: &str,
    origin: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = parse_session_json(text, origin, &EnvSnapshot::capture(py))
        .map_err(|e| to_py_err(py, &e))?;
    spec_to_dict(py, &spec)
}

/// parse_toml(text: str, origin: str) -> dict
///
/// A TOML document as plain Python values (datetimes as their text), for the lock
/// file and uv's `pylock.toml` on Pythons without `tomllib` (3.9, 3.10). Raises
/// ValueError ``origin:line:column: message``.
#[pyfunction]
pub(crate) fn parse_toml<'py>(
    py: Python<'py>,
    text: &str,
    origin: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match toml::de::DeTable::parse(text) {
        Ok(table) => toml_table(py, table.get_ref()).map(Bound::into_any),
        Err(e) => {
            let (line, column) = e
                .span()
                .map(|span| crate::config::line_column(text, span.start))
                .unwrap_or((1, 1));
            let message = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_owned();
            Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{origin}:{line}:{column}: {message}"
            )))
        }
    }
}

fn toml_table<'py>(py: Python<'py>, table: &toml::de::DeTable<'_>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let mut entries: Vec<_> = table.iter().collect();
    // Document order, as the file reads (the parsed map is sorted by key).
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, value) in entries {
        dict.set_item(key.get_ref().as_ref(), toml_value(py, value.get_ref())?)?;
    }
    Ok(dict)
}

fn toml_value<'py>(py: Python<'py>, value: &toml::de::DeValue<'_>) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => s.as_ref().into_bound_py_any(py),
        DeValue::Boolean(b) => b.into_bound_py_any(py),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => n.into_bound_py_any(py),
            Err(_) => i.as_str().into_bound_py_any(py),
        },
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .unwrap_or(f64::NAN)
            .into_bound_py_any(py),
        DeValue::Datetime(d) => d.to_string().into_bound_py_any(py),
        DeValue::Array(items) => {
            let list = pyo3::types::PyList::empty(py);
            for item in items {
                list.append(toml_value(py, item.get_ref())?)?;
            }
            Ok(list.into_any())
        }
        DeValue::Table(table) => toml_table(py, table).map(Bound::into_any),
    }
}
