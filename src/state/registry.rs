//! Open sessions, by registered name and by qualified-name prefix (docs/contract.md §3.3).
//!
//! Lock order: activation state, then this registry, then a session's own state.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use rustc_hash::FxHashMap;

use super::session::SessionCore;
use crate::base::names::{PREFIX, prefix_for};

#[derive(Default)]
struct Registry {
    by_prefix: FxHashMap<String, Py<SessionCore>>,
    /// Name -> prefix, from the moment the name is reserved: a second `reserve` of
    /// the same name fails even while the first session is still being built.
    by_name: HashMap<String, String>,
    order: Vec<String>,
    used_prefixes: HashSet<String>,
    anonymous: u64,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

thread_local! {
    /// Whether this thread holds `REGISTRY`.
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Clears `HOLDING` when the registry is let go, unwinding included.
struct Holding;

impl Drop for Holding {
    fn drop(&mut self) {
        let _ = HOLDING.try_with(|h| h.set(false));
    }
}

/// Runs `f` on the registry. No Python code runs inside (only maps of names and
/// references change; what is removed is returned, dropped by the caller), so the
/// registry is never asked for again on the same thread; should that ever change, the
/// second request panics with a one-line message (every entry point turns a panic
/// into a Python or C error) instead of waiting forever on ourselves.
fn with<R>(py: Python<'_>, f: impl FnOnce(&mut Registry) -> R) -> R {
    if HOLDING.try_with(std::cell::Cell::get).unwrap_or(false) {
        panic!(
            "subsession's session registry is busy on this thread (code run while it was \
             being updated); use sessions outside that code"
        );
    }
    let mut guard = REGISTRY
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    let _ = HOLDING.try_with(|h| h.set(true));
    let _holding = Holding;
    f(guard.get_or_insert_with(Registry::default))
}

/// Reserves a name and a prefix never used before in this process (qualified names
/// stay readable: `__subsession_toolA__`, then `__subsession_toolA_2__` for a later
/// session of the same name, so stale objects of a closed one never resolve to it).
pub(crate) fn reserve(py: Python<'_>, name: Option<&str>) -> Result<String, String> {
    with(py, |reg| {
        let base = match name {
            Some(name) => {
                if reg.by_name.contains_key(name) {
                    return Err(format!(
                        "session {name:?} already exists; use subsession.get({name:?}) \
                         or Session({name:?}, reuse=True)"
                    ));
                }
                prefix_for(name)
            }
            None => {
                reg.anonymous += 1;
                format!("{PREFIX}{}__", reg.anonymous)
            }
        };
        let mut prefix = base.clone();
        let mut n = 1;
        while reg.used_prefixes.contains(&prefix) {
            n += 1;
            prefix = format!("{}_{n}__", base.trim_end_matches("__"));
        }
        reg.used_prefixes.insert(prefix.clone());
        if let Some(name) = name {
            reg.by_name.insert(name.to_owned(), prefix.clone());
        }
        Ok(prefix)
    })
}

/// Gives back a name reserved for a session whose construction failed (its prefix
/// stays used, so it is never handed out twice).
pub(crate) fn release(py: Python<'_>, prefix: &str) {
    with(py, |reg| {
        if !reg.by_prefix.contains_key(prefix) {
            reg.by_name.retain(|_, p| p != prefix);
        }
    });
}

pub(crate) fn register(py: Python<'_>, core: &Bound<'_, SessionCore>) {
    let prefix = core.get().prefix.clone();
    with(py, |reg| {
        reg.order.push(prefix.clone());
        reg.by_prefix.insert(prefix, core.clone().unbind());
    });
}

pub(crate) fn unregister(py: Python<'_>, prefix: &str) -> Option<Py<SessionCore>> {
    with(py, |reg| {
        let core = reg.by_prefix.remove(prefix)?;
        reg.by_name.retain(|_, p| p != prefix);
        reg.order.retain(|p| p != prefix);
        Some(core)
    })
}

/// The session owning a qualified-name head (`__subsession_toolA__`).
pub(crate) fn by_prefix(py: Python<'_>, head: &str) -> Option<Py<SessionCore>> {
    if !head.starts_with(PREFIX) {
        return None;
    }
    with(py, |reg| reg.by_prefix.get(head).map(|c| c.clone_ref(py)))
}

/// The session owning a qualified module name (`__subsession_toolA__.requests`).
pub(crate) fn owner_of(py: Python<'_>, qualified: &str) -> Option<Py<SessionCore>> {
    by_prefix(py, qualified.split('.').next().unwrap_or(qualified))
}

pub(crate) fn by_name(py: Python<'_>, name: &str) -> Option<Py<SessionCore>> {
    with(py, |reg| {
        let prefix = reg.by_name.get(name)?;
        reg.by_prefix.get(prefix).map(|c| c.clone_ref(py))
    })
}

pub(crate) fn all(py: Python<'_>) -> Vec<Py<SessionCore>> {
    with(py, |reg| {
        reg.order
            .iter()
            .filter_map(|p| reg.by_prefix.get(p).map(|c| c.clone_ref(py)))
            .collect()
    })
}

pub(crate) fn is_empty(py: Python<'_>) -> bool {
    with(py, |reg| reg.by_prefix.is_empty())
}
