//! The alias table: which frame shows what under each real name in `sys.modules`.
//!
//! Aliases are owned per name by identity and stacked per frame, so nested and
//! concurrent blocks restore in any order; a global a frame hides is kept and put back
//! when the last claim on its name ends. One process-wide mutex guards the table
//! (lock order: this table, then the registry, then a session's own state —
//! docs/design.md §3.4.1).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyList, PyModule, PyString};
use rustc_hash::{FxHashMap, FxHashSet};

use super::stack::top_frame_of;
use crate::base::errors::SessionError;
use crate::base::interp;
use crate::base::names::{is_initializing, is_session_module, module_name_py, same, starts_with};
use crate::state::SessionCore;

/// Counts the times a block patched or restored `sys.path` and `os.environ` while a
/// block of another thread was open. Those are process-wide: a block that saw such a
/// write from another thread cannot tell its own edits from the other block's, so it
/// does not keep them as its session's settings.
pub(super) static FOREIGN_PATCHES: AtomicUsize = AtomicUsize::new(0);

/// Whether a frame of a thread other than `thread` is open.
pub(super) fn other_threads_active(st: &Aliases, thread: std::thread::ThreadId) -> bool {
    st.frames.values().any(|f| f.thread != thread)
}
/// One name a frame aliased or hid: its key, the module it shows (None = hidden) and,
/// for an alias of a session module, that module's qualified key.
pub(super) struct Claim {
    pub(super) key: Py<PyString>,
    pub(super) module: Option<Py<PyAny>>,
    pub(super) qualified: Option<Py<PyString>>,
}

/// Names a frame aliased or hid, in order. The name index is built only when a
/// lookup needs it: an activation pushes names known to be distinct, and its exit
/// walks the claims in reverse, so the common enter/exit pair hashes nothing here.
#[derive(Default)]
pub(super) struct Owned {
    pub(super) claims: Vec<(Arc<str>, Claim)>,
    pub(super) index: Option<FxHashMap<Arc<str>, usize>>,
}

impl Owned {
    pub(super) fn index(&mut self) -> &mut FxHashMap<Arc<str>, usize> {
        let claims = &self.claims;
        self.index.get_or_insert_with(|| {
            let mut index = FxHashMap::default();
            index.reserve(claims.len());
            for (i, (name, _)) in claims.iter().enumerate() {
                index.insert(name.clone(), i);
            }
            index
        })
    }

    /// Adds a claim for a name this frame does not claim yet.
    pub(super) fn push_new(&mut self, name: &Arc<str>, claim: Claim) {
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), self.claims.len());
        }
        self.claims.push((name.clone(), claim));
    }

    pub(super) fn insert(&mut self, name: &Arc<str>, claim: Claim) {
        let next = self.claims.len();
        let index = self.index();
        if let Some(&i) = index.get(name.as_ref()) {
            self.claims[i].1 = claim;
            return;
        }
        index.insert(name.clone(), next);
        self.claims.push((name.clone(), claim));
    }

    pub(super) fn module<'py>(&mut self, py: Python<'py>, name: &str) -> Option<Bound<'py, PyAny>> {
        let i = *self.index().get(name)?;
        self.claims[i].1.module.as_ref().map(|m| m.bind(py).clone())
    }
}

/// One open block: its session, what it saved and applied of `sys.path` and the
/// environment, and the names it aliased or hid.
pub(super) struct Frame {
    pub(super) session: Py<SessionCore>,
    /// The thread that entered it; another thread may leave it (see `exit`).
    pub(super) thread: std::thread::ThreadId,
    /// Left by another thread while its own thread had later blocks open: it is left
    /// as soon as those are (leaving it earlier would undo their state).
    pub(super) orphaned: bool,
    /// `FOREIGN_PATCHES` once this frame was in place: changed at its exit means
    /// another thread's block wrote `sys.path` or the environment meanwhile.
    pub(super) foreign_mark: usize,
    pub(super) depth: u32,
    pub(super) saved_path: Py<PyList>,
    pub(super) applied_path: Py<PyList>,
    /// Environment journal marks: the environment this frame restores on exit, and
    /// the one its code's edits are measured from (after its variables were applied).
    pub(super) saved_env: u64,
    pub(super) applied_env: u64,
    pub(super) own: Owned,
}

/// One frame's claim on a real name: the module it shows there, or None (hidden).
pub(super) type Owner = (u64, Option<Py<PyAny>>);

#[derive(Default)]
pub(super) struct Aliases {
    /// real name -> [(frame, module or None=hidden)]; the last entry is visible.
    pub(super) owners: FxHashMap<Arc<str>, Vec<Owner>>,
    /// real name -> global module hidden while the name has owners.
    pub(super) hidden: FxHashMap<String, Py<PyAny>>,
    /// real name -> loads in flight by threads without an activation.
    pub(super) reserved: FxHashMap<String, usize>,
    /// top-level name -> real-name keys seen in sys.modules.
    pub(super) by_top: FxHashMap<String, FxHashSet<String>>,
    pub(super) frames: FxHashMap<u64, Frame>,
    /// sys.path before the first activation patched it: threads without an
    /// activation search this snapshot, not the list being mutated.
    pub(super) base: Option<Arc<Base>>,
    /// The last base, reused while sys.path is unchanged between blocks (shared: an
    /// activation takes it without copying its strings).
    pub(super) last_base: Option<Arc<Base>>,
    /// The environment journal's mark before the first activation: what an outermost
    /// block restores when blocks of other threads overlap it.
    pub(super) base_env: Option<u64>,
    pub(super) next_generation: u64,
    pub(super) gates: HashMap<String, Py<PyAny>>,
    /// importlib's per-name import locks while some import is in flight: a real name
    /// being imported by another thread must not be aliased under it (importlib
    /// would pick up the alias's spec and execute a second copy of our module).
    pub(super) in_flight: Option<Py<PyDict>>,
    pub(super) next_id: u64,
    pub(super) marker: Option<Py<PyModule>>,
    /// The frame whose sys.path is in place (the last to apply or restore it): its
    /// block's own sys.path edits are searched by its next import.
    pub(super) path_owner: Option<u64>,
    /// Bumped when a thread without an activation starts or ends a load during
    /// blocks; with `loads_at_mark`, tells that every key added since the marker came
    /// from a block.
    pub(super) global_loads: u64,
    pub(super) loads_at_mark: u64,
    /// Real names other threads were importing when the marker last moved: their keys
    /// may appear during a block without any hook seeing the load (it began before).
    pub(super) raced_at_mark: FxHashSet<String>,
}

/// The global `sys.path` frozen while blocks are active (threads without a block
/// search it); `generation` names it for the search-path caches.
pub(super) struct Base {
    pub(super) list: Py<PyList>,
    pub(super) strings: Vec<String>,
    /// Entries on the global sys.path: their gates stay open for everyone.
    pub(super) legit: HashSet<String>,
    pub(super) generation: u64,
}

/// The one alias table of the process, taken with [`lock`].
pub(super) static ALIASES: Mutex<Option<Aliases>> = Mutex::new(None);

pub(super) struct Locked<'a> {
    pub(super) guard: MutexGuard<'a, Option<Aliases>>,
    /// Objects removed from sys.modules, dropped after the lock is released so
    /// that no finaliser runs (and maybe imports) while it is held.
    pub(super) garbage: Vec<Py<PyAny>>,
}

impl Locked<'_> {
    pub(super) fn state(&mut self) -> &mut Aliases {
        self.guard.get_or_insert_with(Aliases::default)
    }
}

thread_local! {
    /// Whether this thread holds `ALIASES`.
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Takes the alias table. Python code can run while it is held (a garbage
/// collection triggered by an allocation runs finalisers; a path hook is Python),
/// and such code may import, which asks for the table again on the same thread:
/// that is refused with an error instead of waiting forever on ourselves.
pub(super) fn lock(py: Python<'_>) -> PyResult<Locked<'static>> {
    if HOLDING.try_with(std::cell::Cell::get).unwrap_or(false) {
        return Err(SessionError::new_err(
            "subsession is busy on this thread (code run by a finaliser or hook while a \
             block was being entered or left); import or enter the session outside it",
        ));
    }
    let guard = ALIASES
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    let _ = HOLDING.try_with(|h| h.set(true));
    Ok(Locked {
        guard,
        garbage: Vec::new(),
    })
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = HOLDING.try_with(|h| h.set(false));
    }
}

impl Aliases {
    pub(super) fn apply(
        &self,
        mods: &Bound<'_, PyDict>,
        name: &str,
        key: &Bound<'_, PyString>,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        if self.is_reserved(name) {
            return Ok(());
        }
        if let Some((_, visible)) = self.owners.get(name).and_then(|o| o.last()) {
            let py = mods.py();
            self.show(mods, key, visible.as_ref().map(|m| m.bind(py)), garbage)?;
        }
        Ok(())
    }

    pub(super) fn is_reserved(&self, name: &str) -> bool {
        !self.reserved.is_empty() && self.reserved.contains_key(name)
    }

    /// Puts the visible claim on `key` into sys.modules: the module, or no entry.
    pub(super) fn show(
        &self,
        mods: &Bound<'_, PyDict>,
        key: &Bound<'_, PyString>,
        visible: Option<&Bound<'_, PyAny>>,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        match visible {
            Some(m) => {
                let busy = match &self.in_flight {
                    Some(locks) => imported_elsewhere(locks.bind(mods.py()), key),
                    None => false,
                };
                if !busy {
                    mods.set_item(key, m)?;
                }
            }
            None => {
                if let Some(old) = mods.get_item(key)? {
                    garbage.push(old.unbind());
                    mods.del_item(key)?;
                }
            }
        }
        Ok(())
    }

    /// Makes `frame` show `module` (or nothing) under `name`, hiding a global.
    /// `fresh`: the frame does not claim `name` yet (an activation's own names).
    /// `no_global`: the just-scanned index holds no global key under `name`'s top-level
    /// package, so with no owner the key is known to be absent (no lookup).
    #[allow(clippy::too_many_arguments)] // hot path: keys come ready-made from the caller
    pub(super) fn push(
        &mut self,
        mods: &Bound<'_, PyDict>,
        frame: u64,
        name: &Arc<str>,
        key: &Bound<'_, PyString>,
        module: Option<&Bound<'_, PyAny>>,
        qualified: Option<&Bound<'_, PyString>>,
        fresh: bool,
        no_global: bool,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = mods.py();
        let owners = self.owners.entry(name.clone()).or_default();
        let current = if no_global && owners.is_empty() {
            None
        } else {
            mods.get_item(key)?
        };
        // A value is a global to hide unless it is a session module or the alias the
        // top owner set (an alias may hold a stdlib module: six.moves.http_client).
        let global = current.as_ref().filter(|cur| {
            !is_session_module(cur)
                && !owners
                    .last()
                    .and_then(|(_, m)| m.as_ref())
                    .is_some_and(|m| m.bind(py).is(*cur))
        });
        let value = module.map(|m| m.clone().unbind());
        match owners.last_mut() {
            Some(last) if last.0 == frame => last.1 = value,
            _ => owners.push((frame, value)),
        }
        if let Some(g) = global {
            self.hidden.insert(name.to_string(), g.clone().unbind());
        }
        if let Some(f) = self.frames.get_mut(&frame) {
            let claim = Claim {
                key: key.clone().unbind(),
                module: module.map(|m| m.clone().unbind()),
                qualified: qualified.map(|q| q.clone().unbind()),
            };
            if fresh {
                f.own.push_new(name, claim);
            } else {
                f.own.insert(name, claim);
            }
        }
        // Never alias over a global that is still executing (its import would
        // return our module to its importer).
        if !global.is_some_and(is_initializing) && !self.is_reserved(name) {
            self.show(mods, key, module, garbage)?;
        }
        Ok(())
    }

    pub(super) fn has_owner(&self, name: &str) -> bool {
        self.owners.get(name).is_some_and(|o| !o.is_empty())
    }

    /// Ends `frame`'s claim on `name`; `current` is sys.modules[name] and `ours` the
    /// module the frame showed there.
    #[allow(clippy::too_many_arguments)] // hot path: no lookups the caller already did
    pub(super) fn pop(
        &mut self,
        mods: &Bound<'_, PyDict>,
        frame: u64,
        name: &str,
        key: &Bound<'_, PyString>,
        current: Option<Bound<'_, PyAny>>,
        ours: Option<&Bound<'_, PyAny>>,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let Some(owners) = self.owners.get_mut(name) else {
            return Ok(());
        };
        owners.retain(|(f, _)| *f != frame);
        if !owners.is_empty() {
            return self.apply(mods, name, key, garbage);
        }
        // The emptied entry stays: the next activation reuses it without allocating.
        let hidden = if self.hidden.is_empty() {
            None
        } else {
            self.hidden.remove(name)
        };
        if self.is_reserved(name) {
            return Ok(());
        }
        let restorable = match &current {
            None => true,
            Some(cur) => ours.is_some_and(|o| o.is(cur)) || is_session_module(cur),
        };
        // Otherwise keep the global an unhooked import put back meanwhile.
        if restorable {
            match hidden {
                Some(g) => mods.set_item(key, g)?,
                None => {
                    if let Some(cur) = current {
                        garbage.push(cur.unbind());
                        mods.del_item(key)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// importlib's module-lock table when any import is in flight (CPython keeps one
/// lock per name being imported, 3.3 through 3.13), else None.
pub(super) fn imports_in_flight(py: Python<'_>) -> Option<Py<PyDict>> {
    let it = interp::get(py).ok()?;
    let locks = it
        .bootstrap
        .bind(py)
        .getattr(intern!(py, "_module_locks"))
        .ok()?
        .cast_into::<PyDict>()
        .ok()?;
    (!locks.is_empty()).then(|| locks.unbind())
}

/// The names other threads are importing now (importlib's module locks they hold).
pub(super) fn imported_elsewhere_now(py: Python<'_>) -> FxHashSet<String> {
    let Some(locks) = imports_in_flight(py) else {
        return FxHashSet::default();
    };
    let locks = locks.bind(py);
    locks
        .keys()
        .iter()
        .filter_map(|k| k.cast_into::<PyString>().ok())
        .filter(|k| imported_elsewhere(locks, k))
        .filter_map(|k| k.to_cow().ok().map(|c| c.into_owned()))
        .collect()
}

/// True when another thread holds importlib's module lock for `name` (an import of
/// that real name is in flight there). This thread's own in-flight imports (C code
/// importing by real name during its init) are not in the way.
pub(super) fn imported_elsewhere(locks: &Bound<'_, PyDict>, name: &Bound<'_, PyString>) -> bool {
    let py = locks.py();
    let Ok(Some(weak)) = locks.get_item(name) else {
        return false;
    };
    let Ok(lock) = weak.call0() else {
        return false;
    };
    if lock.is_none() {
        return false;
    }
    let owner = lock.getattr(intern!(py, "owner")).ok();
    let me = py
        .import("_thread")
        .and_then(|t| t.call_method0("get_ident"))
        .ok();
    match (owner, me) {
        (Some(owner), Some(me)) => !owner.eq(&me).unwrap_or(false),
        _ => true,
    }
}

/// Forgets what the engine kept of a closing session (it is not active anywhere).
pub(crate) fn forget_session(py: Python<'_>, session: &SessionCore, names: &[String]) {
    let Ok(mut locked) = lock(py) else {
        return;
    };
    let st = locked.state();
    st.hidden.retain(|_, m| !session.owns(m.bind(py)));
    // Emptied owner entries are kept for speed while a session lives; a closed
    // session's names go, or a process making thousands of sessions would grow.
    for name in names {
        if st.owners.get(name.as_str()).is_some_and(|o| o.is_empty()) {
            st.owners.remove(name.as_str());
        }
    }
}

/// Makes `module` visible by real `name` if `session` is the innermost active session
/// of this thread. Returns false when it is not.
pub(crate) fn alias_if_active(
    core: &Bound<'_, SessionCore>,
    name: &str,
    module: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let py = core.py();
    let session = core.get();
    let Some(id) = top_frame_of(session) else {
        return Ok(false);
    };
    let mods = interp::sys_modules(py);
    let key = PyString::new(py, name);
    let qualified =
        module_name_py(module).filter(|n| starts_with(n, session.prefix_dot_py.bind(py)));
    let mut locked = lock(py)?;
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    st.in_flight = imports_in_flight(py);
    let visible = mods.get_item(&key)?;
    let owned = st.frames.get_mut(&id).and_then(|f| f.own.module(py, name));
    let result = if !same(visible.as_ref(), Some(module)) || !same(owned.as_ref(), Some(module)) {
        let name: Arc<str> = Arc::from(name);
        st.push(
            &mods,
            id,
            &name,
            &key,
            Some(module),
            qualified.as_ref(),
            false,
            false,
            &mut garbage,
        )
    } else {
        Ok(())
    };
    st.in_flight = None;
    drop(locked);
    drop(garbage);
    result.map(|_| true)
}
