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
//! - [`config`]: the studio config (TOML/JSON, layered).
//! - [`ffi`]: the C ABI.

pub mod config;
pub mod ffi;

use pyo3::prelude::*;

/// Installs pyo3-log once per loaded copy of this library, so `log` records reach
/// Python `logging` under the logger `subsession`. `get_or_init_py_attached`, not a
/// plain `Once`: the init imports `logging`, and a thread blocked in `call_once`
/// while attached would deadlock with it.
pub(crate) fn ensure_logger(py: Python<'_>) -> Option<&'static pyo3_log::ResetHandle> {
    use pyo3::sync::OnceLockExt;
    static HANDLE: std::sync::OnceLock<Option<pyo3_log::ResetHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init_py_attached(py, || {
            pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)
                .ok()
                .map(|l| l.filter_target("subsession".to_owned(), log::LevelFilter::Trace))
                .and_then(|l| l.install().ok())
        })
        .as_ref()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ensure_logger(m.py());
    config::register(m)?;
    Ok(())
}
