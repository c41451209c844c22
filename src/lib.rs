//! subsession: sub-sessions for one long-running Python interpreter.
//!
//! One cdylib is both the CPython extension `subsession._core` (pyo3, abi3-py39) and
//! a C ABI for C/C++ hosts (`ffi`, header `include/subsession.h`). Modules, one
//! concept each:
//!
//! - [`policy`]: what is shared with the global interpreter and what is isolated.
//! - [`registry`]: open sessions, by name and by qualified-name prefix.
//! - [`session`]: one session's settings and module bookkeeping (`SessionCore`).
//! - [`activation`]: entering and leaving a session (aliases, `sys.path`, env).
//! - [`routing`]: the import hooks that send each import to the right session.
//! - [`finder`]: the meta-path finder resolving qualified names on a session's path.
//! - [`stale`], [`graph`], [`reload`], [`deep`]: changed files, reload order,
//!   reload and in-place reload; [`leaks`]: the unload report; [`watch`]: the
//!   polling side of reload on save.
//! - [`config`]: the studio config (TOML/JSON, layered).
//! - [`notify`]: change notifications (created, configured, imported, reloaded, closed).
//! - [`ffi`]: the C ABI.

pub mod activation;
pub mod config;
pub mod deep;
pub mod errors;
pub mod ffi;
pub mod finder;
pub mod graph;
pub mod interp;
pub mod leaks;
pub mod notify;
pub mod policy;
pub mod registry;
pub mod reload;
pub mod routing;
pub mod session;
pub mod stale;
pub mod watch;

use pyo3::prelude::*;

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
    all.extend(
        names
            .into_iter()
            .filter(|n| !policy::host_modules().contains(n)),
    );
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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ensure_logger(m.py());
    errors::register(m)?;
    m.add_class::<session::SessionCore>()?;
    finder::register(m)?;
    routing::register(m)?;
    activation::register(m)?;
    config::register(m)?;
    watch::register(m)?;
    notify::register(m)?;
    m.add_function(wrap_pyfunction!(current, m)?)?;
    m.add_function(wrap_pyfunction!(lookup, m)?)?;
    m.add_function(wrap_pyfunction!(activation_counts, m)?)?;
    m.add_function(wrap_pyfunction!(sessions, m)?)?;
    m.add_function(wrap_pyfunction!(set_host_modules, m)?)?;
    m.add_function(wrap_pyfunction!(host_modules, m)?)?;
    m.add_function(wrap_pyfunction!(add_host_modules, m)?)?;
    m.add_function(wrap_pyfunction!(reset_log_cache, m)?)?;
    Ok(())
}
