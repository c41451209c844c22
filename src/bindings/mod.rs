//! The Python surface, `subsession._core`: one declarative module listing every class,
//! function and exception, each a thin call into the layers below. The typed facade
//! over it is the `subsession` package (`_core.pyi` lists the same names).

pub(crate) mod config;
mod floor;
mod session;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::activation;
use crate::base::policy;
use crate::reload;
use crate::state::{SessionCore, registry};

/// Installs pyo3-log once per loaded copy of this library, so `log` records reach
/// Python `logging` under the logger `subsession`. `get_or_init_py_attached`, not a
/// plain `Once`: the init imports `logging`, and a thread blocked in `call_once`
/// while attached would deadlock with it.
pub(crate) fn ensure_logger(py: Python<'_>) -> Option<&'static pyo3_log::ResetHandle> {
    use pyo3::sync::OnceLockExt;
    static HANDLE: std::sync::OnceLock<Option<pyo3_log::ResetHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init_py_attached(py, || {
            pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)
                .ok()
                .and_then(|l| l.install().ok())
        })
        .as_ref()
}

/// The innermost session active on this thread (its facade), or None.
#[pyfunction]
fn current(py: Python<'_>) -> Option<Py<PyAny>> {
    activation::top_session(py).map(|c| c.get().facade.clone_ref(py))
}

/// The facade of the open session registered under `name`, or None.
#[pyfunction]
fn lookup(py: Python<'_>, name: &str) -> Option<Py<PyAny>> {
    registry::by_name(py, name).map(|c| c.get().facade.clone_ref(py))
}

/// Every open session's facade, in creation order.
#[pyfunction]
fn sessions(py: Python<'_>) -> Vec<Py<PyAny>> {
    registry::all(py)
        .into_iter()
        .map(|c| c.get().facade.clone_ref(py))
        .collect()
}

/// (activations on this thread, activations on all threads): for diagnostics.
#[pyfunction]
fn activation_counts() -> (usize, usize) {
    (
        activation::depth(),
        activation::ACTIVE.load(std::sync::atomic::Ordering::Acquire),
    )
}

/// Replaces the host packages every session shares (default: Maya's).
#[pyfunction]
fn set_host_modules(names: Vec<String>) -> PyResult<()> {
    policy::set_host_modules(&names).map_err(pyo3::exceptions::PyValueError::new_err)
}

/// Adds host packages every session shares (from the studio config).
#[pyfunction]
fn add_host_modules(names: Vec<String>) -> PyResult<()> {
    let mut all = policy::host_modules();
    for name in names {
        if !all.contains(&name) {
            all.push(name);
        }
    }
    policy::set_host_modules(&all).map_err(pyo3::exceptions::PyValueError::new_err)
}

#[pyfunction]
fn host_modules() -> Vec<String> {
    policy::host_modules()
}

/// pyo3-log caches logger levels: call after reconfiguring `logging`.
#[pyfunction]
fn reset_log_cache(py: Python<'_>) {
    if let Some(handle) = ensure_logger(py) {
        handle.reset();
    }
}

/// Reloads `names` (known to have changed) and the session modules importing them,
/// dependencies first; returns the real names reloaded, in order.
#[pyfunction]
#[pyo3(signature = (core, names, deep=false))]
pub(crate) fn reload_names(
    core: Bound<'_, SessionCore>,
    names: Vec<String>,
    deep: bool,
) -> PyResult<Vec<String>> {
    reload::reload_changed(&core, &names, deep)
}

/// Hands already imported global modules to a session (`subsession.adopt`).
#[pyfunction]
pub(crate) fn adopt_modules(
    core: Bound<'_, SessionCore>,
    modules: Vec<(String, Bound<'_, PyModule>)>,
    edges: Vec<(String, String)>,
) -> PyResult<()> {
    reload::adopt(&core, modules, edges)
}

/// The real names of the modules a session adopted.
#[pyfunction]
pub(crate) fn adopted_names(core: Bound<'_, SessionCore>) -> Vec<String> {
    reload::adopted(&core)
}

/// `subsession._core`: the whole Python surface, in one list.
#[pymodule]
mod _core {
    // Sessions and their state.
    #[pymodule_export]
    use super::SessionCore;
    #[pymodule_export]
    use super::{add_host_modules, host_modules, set_host_modules};
    #[pymodule_export]
    use super::{current, lookup, sessions};
    #[pymodule_export]
    use crate::state::notify::{subscribe, unsubscribe};
    // The import machinery (installed once by the package).
    #[pymodule_export]
    use crate::activation::gate_open;
    #[pymodule_export]
    use crate::imports::finder::SessionFinder;
    #[pymodule_export]
    use crate::imports::hooks::{SessionImport, gcd_import, global_import};
    #[pymodule_export]
    use crate::imports::install::install;
    // Reload on save and adopt.
    #[pymodule_export]
    use super::{adopt_modules, adopted_names, reload_names};
    #[pymodule_export]
    use crate::reload::watch::Watch;
    // The studio config.
    #[pymodule_export]
    use super::config::{parse_config, parse_toml, py_parse_session_json};
    // Diagnostics and logging; the benchmark's floor (scripts/bench); import tables.
    #[pymodule_export]
    use super::floor::{floor_swap, import_slots, redirect_stats};
    #[pymodule_export]
    use super::{activation_counts, reset_log_cache};
    // Errors: one root, `SessionError` (a RuntimeError).
    #[pymodule_export]
    use crate::base::errors::{
        ClosedSessionError, NoSuchSessionError, ReloadError, SessionError, SessionExistsError,
    };

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        super::ensure_logger(m.py());
        // Made with `type()` (two bases), so it is added here rather than listed.
        m.add("ConfigError", crate::base::errors::config_error(m.py())?)?;
        // The kinds `subscribe` takes, in the order a session lives through them.
        m.add("CHANGE_KINDS", crate::state::notify::KINDS.to_vec())
    }
}
