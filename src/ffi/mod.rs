//! C ABI (docs/contract.md §11): `subsession_*` functions for C/C++ hosts that embed Python.
//!
//! Conventions (repeated for C programmers at the top of `include/subsession.h`):
//!
//! - Every fallible function returns a [`subsession_result`]; `SUBSESSION_RESULT_OK`
//!   is 0. On failure, [`subsession_last_error`] describes it (thread-local).
//! - Every function attaches to the interpreter itself (`Python::try_attach`), so it
//!   can be called from any thread, with or without the GIL, including threads
//!   Python never saw. Nothing here initialises Python: without a running
//!   interpreter the answer is `SUBSESSION_RESULT_NOT_INITIALIZED`.
//! - Strings returned through `char **out` are allocated by this library and freed
//!   with [`subsession_string_free`]; the caller's strings are only borrowed.
//! - No panic crosses the boundary: each body runs inside `catch_unwind`.
//!
//! Why every call goes through the Python package instead of Rust statics: a host
//! can load a second copy of this binary (a copied file is a second library with
//! its own statics). Sessions live in the interpreter, reached through
//! `import subsession`, so a session created here is the one the Python API and the
//! Maya command see, whichever copy of the library the host called.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config;

mod args;
mod boundary;
mod python;

use args::*;
use boundary::*;
use python::*;

/// Version of the C ABI declared in this header. Bumped on any incompatible change;
/// compare it with `subsession_abi_version()` to detect a mismatched library.
pub const SUBSESSION_ABI_VERSION: u32 = 1;

/// The result of every fallible `subsession_*` call. 0 is success; on anything
/// else `subsession_last_error()` tells what happened.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum subsession_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// No Python interpreter is running in this process (never initialised, or
    /// finalising), or libpython is not in the process's global symbol scope.
    /// Nothing was initialised by the call.
    NotInitialized = 3,
    /// No open session has that name (never created, or already closed).
    NoSuchSession = 4,
    /// A session with that name already exists.
    SessionExists = 5,
    /// The session config (JSON) or the session name is invalid.
    InvalidConfig = 6,
    /// Python raised an exception; the last error holds its traceback.
    PythonException = 7,
    /// A bug: a Rust panic was caught at the boundary. The process is still usable.
    Panic = 8,
}

use subsession_result as R;

impl subsession_result {
    fn name(self) -> &'static CStr {
        match self {
            R::Ok => c"SUBSESSION_RESULT_OK",
            R::NullArgument => c"SUBSESSION_RESULT_NULL_ARGUMENT",
            R::InvalidUtf8 => c"SUBSESSION_RESULT_INVALID_UTF8",
            R::NotInitialized => c"SUBSESSION_RESULT_NOT_INITIALIZED",
            R::NoSuchSession => c"SUBSESSION_RESULT_NO_SUCH_SESSION",
            R::SessionExists => c"SUBSESSION_RESULT_SESSION_EXISTS",
            R::InvalidConfig => c"SUBSESSION_RESULT_INVALID_CONFIG",
            R::PythonException => c"SUBSESSION_RESULT_PYTHON_EXCEPTION",
            R::Panic => c"SUBSESSION_RESULT_PANIC",
        }
    }

    /// Checked conversion from the `int` a C caller may hand us (any value).
    fn from_int(code: c_int) -> Option<Self> {
        [
            R::Ok,
            R::NullArgument,
            R::InvalidUtf8,
            R::NotInitialized,
            R::NoSuchSession,
            R::SessionExists,
            R::InvalidConfig,
            R::PythonException,
            R::Panic,
        ]
        .into_iter()
        .find(|r| *r as c_int == code)
    }
}

// ---------------------------------------------------------------------------------
// The C functions
// ---------------------------------------------------------------------------------

/// Returns SUBSESSION_ABI_VERSION of the loaded library. Never touches Python and
/// never changes the last error.
#[unsafe(no_mangle)]
pub extern "C" fn subsession_abi_version() -> u32 {
    SUBSESSION_ABI_VERSION
}

/// The name of a result code as a static string ("SUBSESSION_RESULT_OK", ...), or
/// "SUBSESSION_RESULT_UNKNOWN" for a value that is not a code. Never NULL, never
/// freed, never changes the last error.
#[unsafe(no_mangle)]
pub extern "C" fn subsession_result_name(code: c_int) -> *const c_char {
    catch_unwind(|| {
        subsession_result::from_int(code).map_or(c"SUBSESSION_RESULT_UNKNOWN", |r| r.name())
    })
    .unwrap_or(c"SUBSESSION_RESULT_UNKNOWN")
    .as_ptr()
}

/// The message of the calling thread's last failed call (for PYTHON_EXCEPTION it
/// includes the Python traceback), or NULL if that call succeeded. Owned by the
/// library: do not free; valid until the next subsession_* call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn subsession_last_error() -> *const c_char {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| {
                slot.try_borrow()
                    .ok()
                    .and_then(|s| s.as_ref().map(|c| c.as_ptr()))
                    .unwrap_or(std::ptr::null())
            })
            .unwrap_or(std::ptr::null())
    })
    .unwrap_or(std::ptr::null())
}

/// Frees a string this library returned through a `char **` out-parameter. NULL is
/// a no-op. Never touches Python and never changes the last error.
///
/// # Safety
/// `s` is NULL or a pointer received from this library, unmodified, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `s` came from CString::into_raw in this library.
        drop(unsafe { CString::from_raw(s) });
    }));
}

/// Creates the named session (the same object `subsession.get(name)` returns in
/// Python). `config_json` is NULL (defaults) or one session's settings as a JSON
/// object with the per-session keys of the studio config (docs: the config
/// section), parsed by the same parser: `paths` (list of folders), `env` (object;
/// false or null unsets a variable), `keep_global` (list), `inherit_env`,
/// `inherit_paths` (booleans, default true), `startup` (module imported in the
/// session after creating it; if it fails the session is closed again).
/// `${VAR}` / `${VAR:-default}` expand in paths and env values, a leading `~` too;
/// relative paths resolve against the current directory. Unknown keys are errors,
/// reported as `config_json:LINE:COLUMN: key: message`.
///
/// Errors: SESSION_EXISTS (also when another thread creates the same name at the
/// same time: exactly one of them succeeds), INVALID_CONFIG (bad JSON, nesting
/// deeper than 32 levels, key, value or name), PYTHON_EXCEPTION (startup module
/// failed; the session was closed again), NO_SUCH_SESSION (another thread closed
/// the new session while its startup module ran).
///
/// # Safety
/// `name` and `config_json` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_create(
    name: *const c_char,
    config_json: *const c_char,
) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let name = unsafe { str_arg(name, "name") }?;
        // SAFETY: forwarded contract.
        let config_json = unsafe { opt_str_arg(config_json, "config_json") }?;
        if let Some(text) = config_json {
            config::check_session_json(text, "config_json")
                .map_err(|e| Failure::new(R::InvalidConfig, e.to_string()))?;
        }
        with_python(|py| {
            let config = parse_config(py, config_json)?;
            let kwargs = session_kwargs(py, &config)?;
            let session = package(py)?
                .getattr("Session")
                .and_then(|cls| cls.call((name,), Some(&kwargs)))
                .or_fail_at(py, Stage::Construct)?;
            if let Some(startup) = &config.startup {
                if let Err(e) = session.call_method1("import_module", (startup,)) {
                    let mut f = py_failure(py, e, Stage::Run);
                    if f.code == R::NoSuchSession {
                        // Another thread closed the new session while its startup
                        // module ran: it existed, and is gone now.
                        f.message = format!(
                            "session {name:?} was closed by another thread while its \
                             startup module {startup:?} ran; create it again if needed"
                        );
                        return Err(f);
                    }
                    // All or nothing: a half-started session would block the name.
                    let _ = session.call_method0("close");
                    f.message = format!(
                        "startup module {startup:?} failed, session {name:?} was not created: {}",
                        f.message
                    );
                    return Err(f);
                }
            }
            Ok(())
        })
    })
}

/// Executes Python `source` in the session (its namespace persists across calls;
/// the session is active while it runs).
///
/// Errors: NO_SUCH_SESSION, PYTHON_EXCEPTION (SyntaxError or any exception).
///
/// # Safety
/// `name` and `source` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_exec(
    name: *const c_char,
    source: *const c_char,
) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let (name, source) = unsafe { (str_arg(name, "name")?, str_arg(source, "source")?) };
        with_python(|py| call_session(py, name, "exec", source))
    })
}

/// Imports `module` (a real dotted name, e.g. "toolA.ui") in the session.
///
/// Errors: NO_SUCH_SESSION, PYTHON_EXCEPTION (ImportError or any exception).
///
/// # Safety
/// `name` and `module` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_import(
    name: *const c_char,
    module: *const c_char,
) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let (name, module) = unsafe { (str_arg(name, "name")?, str_arg(module, "module")?) };
        with_python(|py| call_session(py, name, "import_module", module))
    })
}

/// Imports `module` in the session and calls its `function` with no arguments,
/// with the session active; `*out_str` receives `str()` of the return value.
/// With `function` NULL, `module` is the whole target: "package.module.function"
/// (split at the last dot) or "package.module:Class.method" (split at the colon).
/// `function` may be dotted ("Class.method"). `out_str` may be NULL to
/// discard the result; otherwise free `*out_str` with subsession_string_free.
///
/// Errors: NO_SUCH_SESSION, PYTHON_EXCEPTION (import, lookup, the call, or a
/// result str() that holds a NUL byte or cannot be encoded as UTF-8).
///
/// # Safety
/// `name`, `module`, `function` are NULL or NUL-terminated strings; `out_str` is
/// NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_call(
    name: *const c_char,
    module: *const c_char,
    function: *const c_char,
    out_str: *mut *mut c_char,
) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let out = unsafe { OutStr::new(out_str, "out_str", false) }?;
        // SAFETY: forwarded contract.
        let name = unsafe { str_arg(name, "name") }?;
        // SAFETY: forwarded contract.
        let module = unsafe { str_arg(module, "module") }?;
        // SAFETY: forwarded contract.
        let function = unsafe { opt_str_arg(function, "function") }?;
        with_python(|py| {
            let s = session(py, name)?;
            let (module, function) = match function {
                Some(f) => (module, f),
                // "pkg.mod:Class.method" (entry-point style) or "pkg.mod.function".
                None => module
                    .split_once(':')
                    .or_else(|| module.rsplit_once('.'))
                    .ok_or_else(|| {
                        py_failure(
                            py,
                            PyValueError::new_err(format!(
                                "{module:?} is not \"module.function\"; pass the function \
                                 separately or use a target such as \"toolA.ui.show\" or \
                                 \"toolA.ui:Window.show\""
                            )),
                            Stage::Run,
                        )
                    })?,
            };
            let text = (|| -> PyResult<String> {
                let mut target = s.call_method1("import_module", (module,))?;
                for part in function.split('.') {
                    target = target.getattr(part)?;
                }
                let result = s.call_method1("run", (target,))?;
                // str() runs inside the session too: a __str__ may import lazily.
                let builtin_str = py.import("builtins")?.getattr("str")?;
                s.call_method1("run", (builtin_str, result))?.extract()
            })()
            .or_fail(py)?;
            out.set(text)
        })
    })
}

/// Reloads the session's modules: with `all` zero those whose source changed on
/// disk (and the session modules importing them), otherwise every module; `deep`
/// nonzero updates existing functions, classes and instances in place.
/// `*out_json` receives a JSON array of the reloaded module names, in reload order.
/// `out_json` may be NULL to discard it; otherwise free it with
/// subsession_string_free.
///
/// Errors: NO_SUCH_SESSION, PYTHON_EXCEPTION (a module failed to reload; the
/// previous version stays in place).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out_json` is NULL or valid for
/// writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_reload(
    name: *const c_char,
    all: c_int,
    deep: c_int,
    out_json: *mut *mut c_char,
) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let out = unsafe { OutStr::new(out_json, "out_json", false) }?;
        // SAFETY: forwarded contract.
        let name = unsafe { str_arg(name, "name") }?;
        with_python(|py| {
            let s = session(py, name)?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("deep", deep != 0).or_fail(py)?;
            let names: Vec<String> = (|| -> PyResult<Vec<String>> {
                let method = if all != 0 {
                    "reload_all"
                } else {
                    "reload_stale"
                };
                s.call_method(method, (), Some(&kwargs))?.extract()
            })()
            .or_fail(py)?;
            out.set(serde_json::Value::from(names).to_string())
        })
    })
}

/// Closes (unloads) the session. `*out_json` receives the unload report:
/// `{"session": "toolA", "unloaded": ["mod", ...], "leaks": {"mod": ["holder", ...]}}`
/// where `leaks` lists modules still alive after a GC pass and what holds them
/// (empty on a clean close). The name is free again afterwards. `out_json` may be
/// NULL to discard the report; otherwise free it with subsession_string_free.
///
/// Errors: NO_SUCH_SESSION (also when already closed), PYTHON_EXCEPTION.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out_json` is NULL or valid for
/// writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_close(
    name: *const c_char,
    out_json: *mut *mut c_char,
) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let out = unsafe { OutStr::new(out_json, "out_json", false) }?;
        // SAFETY: forwarded contract.
        let name = unsafe { str_arg(name, "name") }?;
        with_python(|py| {
            let report = session(py, name)?.call_method0("close").or_fail(py)?;
            let json = (|| -> PyResult<serde_json::Value> {
                let label: String = report.getattr("session")?.str()?.extract()?;
                let unloaded: Vec<String> = report.getattr("unloaded")?.extract()?;
                let leaks: BTreeMap<String, Vec<String>> = report.getattr("leaks")?.extract()?;
                Ok(serde_json::json!({
                    "session": label,
                    "unloaded": unloaded,
                    "leaks": leaks,
                }))
            })()
            .or_fail(py)?;
            out.set(json.to_string())
        })
    })
}

/// `*out_json` receives a JSON array of the names of the open named sessions, in
/// creation order (anonymous sessions, which C cannot address, are left out).
/// Free it with subsession_string_free.
///
/// Errors: NULL_ARGUMENT if `out_json` is NULL.
///
/// # Safety
/// `out_json` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn subsession_list(out_json: *mut *mut c_char) -> subsession_result {
    guard(|| {
        // SAFETY: forwarded contract.
        let out = unsafe { OutStr::new(out_json, "out_json", true) }?;
        with_python(|py| {
            let pkg = package(py)?;
            let names = (|| -> PyResult<Vec<String>> {
                let all = pkg.call_method0("sessions")?;
                let mut names = Vec::new();
                for s in all.try_iter()? {
                    let n = s?.getattr("name")?;
                    if !n.is_none() {
                        names.push(n.extract::<String>()?);
                    }
                }
                Ok(names)
            })()
            .or_fail(py)?;
            out.set(serde_json::Value::from(names).to_string())
        })
    })
}

/// Test hook: panics inside the boundary, to prove a panic becomes
/// SUBSESSION_RESULT_PANIC. Only in builds with the `ffi-test-hooks` feature, and
/// never in the header.
#[cfg(feature = "ffi-test-hooks")]
#[unsafe(no_mangle)]
pub extern "C" fn subsession_test_panic(attached: c_int) -> subsession_result {
    guard(|| {
        if attached != 0 {
            // Panic while attached: the GIL must still be released by unwinding.
            with_python(|_py| -> Outcome<()> { panic!("subsession_test_panic (attached)") })
        } else {
            panic!("subsession_test_panic")
        }
    })
}
