//! Reaching Python from C: attaching (only to a running interpreter), calling the
//! `subsession` package, and turning Python exceptions into result codes.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyType};

use super::*;
use crate::bindings::config::settings_dict;
use crate::config::{self, SessionSpec};

/// Looks up a libpython function in the process's global symbol scope, where
/// extension modules (this library as `subsession._core` included) find it too.
#[cfg(unix)]
pub(super) fn python_symbol(
    name: &std::ffi::CStr,
) -> Option<unsafe extern "C" fn() -> std::ffi::c_int> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always safe.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: the three symbols we look up are `int f(void)` in every CPython 3.x.
    (!p.is_null()).then(|| unsafe {
        std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn() -> std::ffi::c_int>(p)
    })
}

/// Whether attaching is safe right now. Checked before attaching because attaching
/// to a finalising interpreter can end the calling thread inside CPython, and
/// calling into a libpython that is not loaded at all would abort the host on
/// an unresolved symbol. (pyo3's own finalising check needs a 3.13+ build.)
pub(super) fn interpreter_running() -> Outcome<()> {
    let not_running = |why: &str| {
        Failure::new(
            R::NotInitialized,
            format!("Python is not running in this process: {why}; nothing was initialised"),
        )
    };
    #[cfg(unix)]
    {
        let Some(is_initialized) = python_symbol(c"Py_IsInitialized") else {
            return Err(not_running(
                "libpython is not loaded in the global symbol scope \
                 (link it, or dlopen it with RTLD_GLOBAL, before calling subsession)",
            ));
        };
        // SAFETY: Py_IsInitialized may be called at any time, without the GIL.
        if unsafe { is_initialized() } == 0 {
            return Err(not_running("the interpreter is not initialized"));
        }
        // 3.13+ exports Py_IsFinalizing, 3.9-3.12 _Py_IsFinalizing.
        for name in [c"Py_IsFinalizing", c"_Py_IsFinalizing"] {
            if let Some(is_finalizing) = python_symbol(name) {
                // SAFETY: both may be called at any time, without the GIL.
                if unsafe { is_finalizing() } != 0 {
                    return Err(not_running("the interpreter is finalizing"));
                }
                break;
            }
        }
    }
    #[cfg(not(unix))]
    {
        // SAFETY: Py_IsInitialized may be called at any time, without the GIL.
        if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
            return Err(not_running("the interpreter is not initialized"));
        }
    }
    Ok(())
}

/// Runs `f` attached to the interpreter; the GIL is released again on return,
/// on error and on panic (pyo3's guard is dropped while unwinding).
pub(super) fn with_python<T>(f: impl for<'py> FnOnce(Python<'py>) -> Outcome<T>) -> Outcome<T> {
    interpreter_running()?;
    Python::try_attach(f).unwrap_or_else(|| {
        Err(Failure::new(
            R::NotInitialized,
            "cannot attach to the Python interpreter (not initialized, finalizing, \
             or called during garbage collection); nothing was initialised",
        ))
    })
}

/// What a Python call was doing, for mapping its exception to a code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// `subsession.get(name)`: NoSuchSessionError is about the caller's name.
    Lookup,
    /// `subsession.Session(name, **config)`: SessionExistsError, and ValueError /
    /// TypeError mean bad settings or name.
    Construct,
    /// Running the session's code (or the engine on its behalf): a session error
    /// raised there is about some other session the code used, so it stays a
    /// Python exception. Only ClosedSessionError is ours: the session was closed
    /// (by another thread) between the lookup and entering it.
    Run,
}

pub(super) fn exception_class<'py>(
    module: &Bound<'py, PyModule>,
    name: &str,
) -> Option<Bound<'py, PyType>> {
    module
        .getattr(name)
        .ok()
        .and_then(|c| c.cast_into::<PyType>().ok())
}

/// Maps a Python exception to a result code, by the classes the *imported*
/// package exposes (never this copy's statics: a second copy of the library
/// would have its own, different exception types).
pub(super) fn classify(py: Python<'_>, err: &PyErr, stage: Stage) -> subsession_result {
    let ty = err.get_type(py);
    // pyo3 turns a Rust panic inside the engine into pyo3_runtime.PanicException.
    if ty
        .qualname()
        .map(|n| n == "PanicException")
        .unwrap_or(false)
    {
        return R::Panic;
    }
    let is = |module: &Bound<'_, PyModule>, name: &str| {
        exception_class(module, name).is_some_and(|c| err.is_instance(py, &c))
    };
    if let Ok(core) = py.import("subsession._core") {
        // A closed session is gone for the C caller, like one never created.
        if is(&core, "ClosedSessionError") {
            return R::NoSuchSession;
        }
        match stage {
            Stage::Lookup if is(&core, "NoSuchSessionError") => return R::NoSuchSession,
            Stage::Construct if is(&core, "SessionExistsError") => return R::SessionExists,
            Stage::Construct if is(&core, "ConfigError") => return R::InvalidConfig,
            _ => {}
        }
    }
    if stage == Stage::Construct
        && (err.is_instance_of::<pyo3::exceptions::PyValueError>(py)
            || err.is_instance_of::<pyo3::exceptions::PyTypeError>(py))
    {
        return R::InvalidConfig;
    }
    R::PythonException
}

/// The message for last_error(): `Type: message` first (one line a host can show),
/// then, for real Python failures, the full traceback as Python prints it.
pub(super) fn describe(py: Python<'_>, err: &PyErr, code: subsession_result) -> String {
    let ty = err.get_type(py);
    let type_name = ty
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    let text = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "<str() of the exception failed>".to_owned());
    let summary = format!("{type_name}: {text}");
    if !matches!(code, R::PythonException | R::Panic) {
        return summary;
    }
    let traceback = (|| -> PyResult<String> {
        let lines = py
            .import("traceback")?
            .call_method1("format_exception", (ty, err.value(py), err.traceback(py)))?;
        Ok(lines
            .try_iter()?
            .filter_map(|l| l.ok().and_then(|l| l.extract::<String>().ok()))
            .collect())
    })();
    match traceback {
        Ok(tb) => format!("{summary}\n\n{}", tb.trim_end()),
        Err(_) => summary,
    }
}

pub(super) fn py_failure(py: Python<'_>, err: PyErr, stage: Stage) -> Failure {
    let code = classify(py, &err, stage);
    Failure::new(code, describe(py, &err, code))
}

/// Adapter for `?` on PyResult inside the bodies.
pub(super) trait PyOutcome<T> {
    fn or_fail(self, py: Python<'_>) -> Outcome<T>;
    fn or_fail_at(self, py: Python<'_>, stage: Stage) -> Outcome<T>;
}

impl<T> PyOutcome<T> for PyResult<T> {
    fn or_fail(self, py: Python<'_>) -> Outcome<T> {
        self.or_fail_at(py, Stage::Run)
    }
    fn or_fail_at(self, py: Python<'_>, stage: Stage) -> Outcome<T> {
        self.map_err(|e| py_failure(py, e, stage))
    }
}

/// The Python package, imported in the interpreter (not this library's statics).
pub(super) fn package(py: Python<'_>) -> Outcome<Bound<'_, PyModule>> {
    py.import("subsession").map_err(|e| {
        let mut f = py_failure(py, e, Stage::Run);
        f.message = format!(
            "cannot import the Python package `subsession`: put the folder holding it \
             (the Maya module's scripts/) on sys.path before calling\n{}",
            f.message
        );
        f
    })
}

/// `subsession.get(name)`: NoSuchSessionError becomes NO_SUCH_SESSION.
pub(super) fn session<'py>(py: Python<'py>, name: &str) -> Outcome<Bound<'py, PyAny>> {
    package(py)?
        .call_method1("get", (name,))
        .or_fail_at(py, Stage::Lookup)
}

// ---------------------------------------------------------------------------------
// Session config (the per-session keys of docs/config.md, as one JSON object)
// ---------------------------------------------------------------------------------

/// Parses `config_json` with the studio config's own parser (pure Rust, no
/// statics), so the C ABI accepts exactly what a `[sessions.x]` table accepts and
/// reports errors the same way: `config_json:LINE:COLUMN: key: message`.
///
/// Takes the GIL token because `${VAR}` reads the process environment, which Python
/// code on other threads may be changing (see [`config::EnvSnapshot`]).
pub(super) fn parse_config(py: Python<'_>, text: Option<&str>) -> Outcome<SessionSpec> {
    match text {
        None => Ok(SessionSpec::default()),
        Some(text) => {
            config::parse_session_json(text, "config_json", &config::EnvSnapshot::capture(py))
                .map_err(|e| Failure::new(R::InvalidConfig, e.to_string()))
        }
    }
}

/// Calls one method of the named session with one string argument.
pub(super) fn call_session(py: Python<'_>, name: &str, method: &str, arg: &str) -> Outcome<()> {
    session(py, name)?
        .call_method1(method, (arg,))
        .or_fail(py)?;
    Ok(())
}

/// The keyword arguments of `subsession.Session(...)` for the settings.
pub(super) fn session_kwargs<'py>(
    py: Python<'py>,
    spec: &SessionSpec,
) -> Outcome<Bound<'py, PyDict>> {
    settings_dict(py, spec).or_fail(py)
}
