//! Change notifications: Python callables told when a session is created,
//! configured, imports a module, is reloaded or is closed, whoever made the change
//! (Python code, the `subSession` command, the C ABI).
//!
//! Thread-safe: any thread may subscribe, unsubscribe or emit. Callbacks run on the
//! thread that made the change, after it is complete, with no lock of this crate
//! held (a callback may subscribe, unsubscribe, or touch sessions). A callback that
//! raises is logged (WARNING, logger `subsession`) and never propagates into the
//! code that made the change.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::PyTuple;

use super::session::SessionCore;

/// The kinds of change, in the order a session lives through them.
pub(crate) const KINDS: [&str; 5] = ["created", "configured", "imported", "reloaded", "closed"];

struct Subscriber {
    token: u64,
    /// Bit `i` set: told about `KINDS[i]`.
    mask: u8,
    callback: Py<PyAny>,
}

static SUBSCRIBERS: Mutex<Vec<Subscriber>> = Mutex::new(Vec::new());
/// The kinds anybody listens to (the union of the masks), read without the lock: a
/// change nobody listens to costs one atomic load (imports, when only reloads and
/// closes are watched).
static LISTENED: AtomicU8 = AtomicU8::new(0);

fn update_listened(subs: &[Subscriber]) {
    LISTENED.store(subs.iter().fold(0, |m, s| m | s.mask), Ordering::Release);
}
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn kind_bit(kind: &str) -> Option<u8> {
    KINDS.iter().position(|k| *k == kind).map(|i| 1u8 << i)
}

/// `subscribe(callback, kinds=None) -> token`: `callback(kind, name, prefix, modules)`
/// is called after each change of the listed kinds (all when `kinds` is None).
#[pyfunction]
#[pyo3(signature = (callback, kinds=None))]
pub(crate) fn subscribe(
    py: Python<'_>,
    callback: Bound<'_, PyAny>,
    kinds: Option<Vec<String>>,
) -> PyResult<u64> {
    if !callback.is_callable() {
        return Err(PyTypeError::new_err(
            "subscribe() takes a callable, e.g. subscribe(lambda change: print(change))",
        ));
    }
    let mask = match kinds {
        None => u8::MAX,
        Some(kinds) => {
            let mut mask = 0u8;
            for kind in &kinds {
                mask |= kind_bit(kind).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "unknown change kind '{kind}'; use some of: {}",
                        KINDS.join(", ")
                    ))
                })?;
            }
            mask
        }
    };
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    let mut subs = SUBSCRIBERS
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    subs.push(Subscriber {
        token,
        mask,
        callback: callback.unbind(),
    });
    update_listened(&subs);
    Ok(token)
}

/// `unsubscribe(token) -> bool`: whether the token was subscribed.
#[pyfunction]
pub(crate) fn unsubscribe(py: Python<'_>, token: u64) -> bool {
    let removed = {
        let mut subs = SUBSCRIBERS
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        let found = subs.iter().position(|s| s.token == token);
        let removed = found.map(|i| subs.remove(i));
        update_listened(&subs);
        removed
    };
    // Dropped after the lock is released: a decref may run Python code.
    removed.is_some()
}

/// Tells the subscribers about a change of `core`. Never fails.
pub(crate) fn emit(py: Python<'_>, kind: &'static str, core: &SessionCore, modules: &[String]) {
    let Some(bit) = kind_bit(kind) else {
        return;
    };
    if LISTENED.load(Ordering::Acquire) & bit == 0 {
        return;
    }
    let callbacks: Vec<Py<PyAny>> = {
        let subs = SUBSCRIBERS
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        subs.iter()
            .filter(|s| s.mask & bit != 0)
            .map(|s| s.callback.clone_ref(py))
            .collect()
    };
    if callbacks.is_empty() {
        return;
    }
    let args = (
        kind,
        core.name.clone(),
        core.prefix.clone(),
        PyTuple::new(py, modules).ok(),
    );
    // An exception already set by the caller must survive the callbacks.
    let pending = PyErr::take(py);
    for callback in callbacks {
        if let Err(err) = callback.bind(py).call1(args.clone()) {
            let what = callback
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "a callback".to_owned());
            log::warn!(
                target: "subsession",
                "change callback {what} raised on {kind} of session {}: {err}; \
                 fix or unsubscribe it (the change itself went through)",
                core.label()
            );
        }
    }
    if let Some(err) = pending {
        err.restore(py);
    }
}
