//! Entering and leaving a session (the with-block), per thread and nestable.
//!
//! Entering patches `sys.path` and `os.environ` in place and installs real-name
//! aliases of the session's modules in `sys.modules` (hiding conflicting globals), so
//! code in the block, C code and `sys.modules["x"]` see the session by real name.
//! The cost is O(this session's modules): `sys.modules` is never scanned or copied;
//! only keys added since the last look are indexed (a marker key moved to the end).
//! Aliases are owned per name by identity and counted, so nested and concurrent
//! blocks restore in any order. Leaving restores all of it exactly and captures
//! real-name keys the block's code added for the session's modules.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{PyDict, PyList, PyModule, PyString};

use crate::errors::SessionError;
use crate::policy::{self, PREFIX};
use crate::session::SessionCore;
use crate::{interp, registry};

/// Activations on all threads. Hooks check this first: zero means nothing to do.
pub static ACTIVE: AtomicUsize = AtomicUsize::new(0);

const MARKER: &str = "__subsession_mark__";

thread_local! {
    /// This thread's activation frames: (frame id, session), innermost last.
    static STACK: RefCell<Vec<(u64, Py<SessionCore>)>> = const { RefCell::new(Vec::new()) };
}

/// Counts the times a block patched or restored `sys.path` and `os.environ` while a
/// block of another thread was open. Those are process-wide: a block that saw such a
/// write from another thread cannot tell its own edits from the other block's, so it
/// does not keep them as its session's settings.
static FOREIGN_PATCHES: AtomicUsize = AtomicUsize::new(0);

/// Whether a frame of a thread other than `thread` is open.
fn other_threads_active(st: &Aliases, thread: std::thread::ThreadId) -> bool {
    st.frames.values().any(|f| f.thread != thread)
}

/// Counts activations ever begun: a hook that saw no block before a call and sees a
/// different count after it knows a block may have come and gone meanwhile.
pub static EPOCH: AtomicUsize = AtomicUsize::new(0);

pub fn epoch() -> usize {
    EPOCH.load(Ordering::Acquire)
}

pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Acquire) != 0
}

/// Frames another thread left for the thread that entered them (a generator that
/// held a `with` block, closed elsewhere): that thread drops them from its stack the
/// next time it looks. The count makes the look one atomic load in the usual case.
static LEFT_ELSEWHERE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
static LEFT_ELSEWHERE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Drops this thread's stack entries for frames another thread has left.
fn purge_stack() {
    if LEFT_ELSEWHERE_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut dropped: Vec<(u64, Py<SessionCore>)> = Vec::new();
    {
        let mut left = LEFT_ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
        let _ = STACK.try_with(|s| {
            if let Ok(mut stack) = s.try_borrow_mut() {
                let mut i = 0;
                while i < stack.len() {
                    if let Some(at) = left.iter().position(|id| *id == stack[i].0) {
                        left.swap_remove(at);
                        dropped.push(stack.remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
        });
        LEFT_ELSEWHERE_COUNT.store(left.len(), Ordering::Release);
    }
    // Released outside the lock: a last reference may run arbitrary finalisers.
    drop(dropped);
}

/// The innermost session active on this thread.
pub fn top_session(py: Python<'_>) -> Option<Py<SessionCore>> {
    purge_stack();
    STACK.with(|s| s.borrow().last().map(|(_, c)| c.clone_ref(py)))
}

fn top_frame_id() -> Option<u64> {
    purge_stack();
    STACK.with(|s| s.borrow().last().map(|(id, _)| *id))
}

/// This thread's innermost frame, when it is a block of `session`.
fn top_frame_of(session: &SessionCore) -> Option<u64> {
    purge_stack();
    STACK.with(|s| {
        s.borrow()
            .last()
            .filter(|(_, c)| std::ptr::eq(c.get(), session))
            .map(|(id, _)| *id)
    })
}

/// This thread's innermost block of `session`, wherever it sits in the stack.
fn innermost_frame_of(session: &SessionCore) -> Option<u64> {
    purge_stack();
    STACK.with(|s| {
        s.borrow()
            .iter()
            .rev()
            .find(|(_, c)| std::ptr::eq(c.get(), session))
            .map(|(id, _)| *id)
    })
}

/// Tells the thread that entered frame `id` that another thread has left it.
fn left_elsewhere(id: u64) {
    let mut left = LEFT_ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
    left.push(id);
    LEFT_ELSEWHERE_COUNT.store(left.len(), Ordering::Release);
}

/// One name a frame aliased or hid: its key, the module it shows (None = hidden) and,
/// for an alias of a session module, that module's qualified key.
struct Claim {
    key: Py<PyString>,
    module: Option<Py<PyAny>>,
    qualified: Option<Py<PyString>>,
}

/// Names a frame aliased or hid, in order. The name index is built only when a
/// lookup needs it: an activation pushes names known to be distinct, and its exit
/// walks the claims in reverse, so the common enter/exit pair hashes nothing here.
#[derive(Default)]
struct Owned {
    claims: Vec<(Arc<str>, Claim)>,
    index: Option<FxHashMap<Arc<str>, usize>>,
}

impl Owned {
    fn reserve(&mut self, n: usize) {
        self.claims.reserve(n);
    }

    fn index(&mut self) -> &mut FxHashMap<Arc<str>, usize> {
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
    fn push_new(&mut self, name: &Arc<str>, claim: Claim) {
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), self.claims.len());
        }
        self.claims.push((name.clone(), claim));
    }

    fn insert(&mut self, name: &Arc<str>, claim: Claim) {
        let next = self.claims.len();
        let index = self.index();
        if let Some(&i) = index.get(name.as_ref()) {
            self.claims[i].1 = claim;
            return;
        }
        index.insert(name.clone(), next);
        self.claims.push((name.clone(), claim));
    }

    fn module<'py>(&mut self, py: Python<'py>, name: &str) -> Option<Bound<'py, PyAny>> {
        let i = *self.index().get(name)?;
        self.claims[i].1.module.as_ref().map(|m| m.bind(py).clone())
    }
}

struct Frame {
    session: Py<SessionCore>,
    /// The thread that entered it; another thread may leave it (see `exit`).
    thread: std::thread::ThreadId,
    /// Left by another thread while its own thread had later blocks open: it is left
    /// as soon as those are (leaving it earlier would undo their state).
    orphaned: bool,
    /// `FOREIGN_PATCHES` once this frame was in place: changed at its exit means
    /// another thread's block wrote `sys.path` or the environment meanwhile.
    foreign_mark: usize,
    depth: u32,
    saved_path: Py<PyList>,
    applied_path: Py<PyList>,
    saved_env: Py<PyAny>,
    applied_env: Py<PyAny>,
    c_only: Vec<(String, String)>,
    own: Owned,
}

/// One frame's claim on a real name: the module it shows there, or None (hidden).
type Owner = (u64, Option<Py<PyAny>>);

#[derive(Default)]
struct Aliases {
    /// real name -> [(frame, module or None=hidden)]; the last entry is visible.
    owners: FxHashMap<Arc<str>, Vec<Owner>>,
    /// real name -> global module hidden while the name has owners.
    hidden: FxHashMap<String, Py<PyAny>>,
    /// real name -> loads in flight by threads without an activation.
    reserved: FxHashMap<String, usize>,
    /// top-level name -> real-name keys seen in sys.modules.
    by_top: FxHashMap<String, FxHashSet<String>>,
    frames: FxHashMap<u64, Frame>,
    /// sys.path before the first activation patched it: threads without an
    /// activation search this snapshot, not the list being mutated.
    base: Option<Base>,
    /// The last base, reused while sys.path is unchanged between blocks.
    last_base: Option<Base>,
    /// os.environ (encoded) before the first activation: what an outermost block
    /// restores when blocks of other threads overlap it.
    base_env: Option<Py<PyAny>>,
    next_generation: u64,
    gates: HashMap<String, Py<PyAny>>,
    /// importlib's per-name import locks while some import is in flight: a real name
    /// being imported by another thread must not be aliased under it (importlib
    /// would pick up the alias's spec and execute a second copy of our module).
    in_flight: Option<Py<PyDict>>,
    next_id: u64,
    marker: Option<Py<PyModule>>,
    /// The frame whose sys.path is in place (the last to apply or restore it): its
    /// block's own sys.path edits are searched by its next import.
    path_owner: Option<u64>,
    /// Bumped when a thread without an activation starts or ends a load during
    /// blocks; with `loads_at_mark`, tells that every key added since the marker came
    /// from a block.
    global_loads: u64,
    loads_at_mark: u64,
}

struct Base {
    list: Py<PyList>,
    strings: Vec<String>,
    /// Entries on the global sys.path: their gates stay open for everyone.
    legit: HashSet<String>,
    generation: u64,
}

impl Base {
    fn clone_ref(&self, py: Python<'_>) -> Base {
        Base {
            list: self.list.clone_ref(py),
            strings: self.strings.clone(),
            legit: self.legit.clone(),
            generation: self.generation,
        }
    }
}

static ALIASES: Mutex<Option<Aliases>> = Mutex::new(None);

struct Locked<'a> {
    guard: MutexGuard<'a, Option<Aliases>>,
    /// Objects removed from sys.modules, dropped after the lock is released so
    /// that no finaliser runs (and maybe imports) while it is held.
    garbage: Vec<Py<PyAny>>,
}

impl Locked<'_> {
    fn state(&mut self) -> &mut Aliases {
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
fn lock(py: Python<'_>) -> PyResult<Locked<'static>> {
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

/// `name.startswith(prefix)` without allocating.
fn starts_with(name: &Bound<'_, PyString>, prefix: &Bound<'_, PyString>) -> bool {
    // SAFETY: both are valid str objects; Tailmatch only reads them.
    unsafe {
        pyo3::ffi::PyUnicode_Tailmatch(name.as_ptr(), prefix.as_ptr(), 0, isize::MAX, -1) == 1
    }
}

fn prefix_py(py: Python<'_>) -> &Bound<'_, PyString> {
    static PREFIX_PY: PyOnceLock<Py<PyString>> = PyOnceLock::new();
    PREFIX_PY
        .get_or_init(py, || PyString::intern(py, PREFIX).unbind())
        .bind(py)
}

/// A module's `__name__` as a Python string, read from its dict (no Python code).
fn module_name_py<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyString>> {
    let module = obj.cast::<PyModule>().ok()?;
    let name = module
        .dict()
        .get_item(intern!(obj.py(), "__name__"))
        .ok()??;
    name.cast_into::<PyString>().ok()
}

/// A module's `__name__`, read from its dict without running Python code.
pub fn module_name(obj: &Bound<'_, PyAny>) -> Option<String> {
    module_name_py(obj)?.to_cow().ok().map(|c| c.into_owned())
}

/// True for a module created by a session (qualified `__name__`).
pub fn is_session_module(obj: &Bound<'_, PyAny>) -> bool {
    module_name_py(obj).is_some_and(|n| starts_with(&n, prefix_py(obj.py())))
}

/// True for a module of `session`.
pub fn belongs_to(obj: &Bound<'_, PyAny>, session: &SessionCore) -> bool {
    module_name_py(obj).is_some_and(|n| starts_with(&n, session.prefix_dot_py.bind(obj.py())))
}

fn session_of(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Option<Py<SessionCore>> {
    let name = module_name_py(obj)?;
    if !starts_with(&name, prefix_py(py)) {
        return None;
    }
    registry::owner_of(py, &name.to_cow().ok()?)
}

/// True for a module the import system made for `name` (its spec carries that name),
/// read from the module's dict without running Python code.
fn imported_module(obj: &Bound<'_, PyAny>, name: &str) -> bool {
    let Ok(module) = obj.cast::<PyModule>() else {
        return false;
    };
    let py = obj.py();
    module
        .dict()
        .get_item(intern!(py, "__spec__"))
        .ok()
        .flatten()
        .filter(|s| !s.is_none())
        .and_then(|s| s.getattr(intern!(py, "name")).ok())
        .and_then(|n| n.extract::<String>().ok())
        .is_some_and(|n| n == name)
}

fn is_initializing(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    obj.getattr(intern!(py, "__spec__"))
        .ok()
        .filter(|s| !s.is_none())
        .and_then(|s| s.getattr(intern!(py, "_initializing")).ok())
        .is_some_and(|v| v.is_truthy().unwrap_or(false))
}

fn is_extension(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    let Ok(it) = interp::get(py) else {
        return false;
    };
    let origin = obj
        .getattr(intern!(py, "__spec__"))
        .ok()
        .filter(|s| !s.is_none())
        .and_then(|s| s.getattr(intern!(py, "origin")).ok())
        .and_then(|o| o.extract::<String>().ok());
    origin.is_some_and(|o| {
        it.extension_suffixes
            .iter()
            .any(|s| o.ends_with(s.as_str()))
    })
}

fn same(a: Option<&Bound<'_, PyAny>>, b: Option<&Bound<'_, PyAny>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.is(b),
        (None, None) => true,
        _ => false,
    }
}

impl Aliases {
    fn apply(
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

    fn is_reserved(&self, name: &str) -> bool {
        !self.reserved.is_empty() && self.reserved.contains_key(name)
    }

    /// Puts the visible claim on `key` into sys.modules: the module, or no entry.
    fn show(
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
    #[allow(clippy::too_many_arguments)] // hot path: keys come ready-made from the caller
    fn push(
        &mut self,
        mods: &Bound<'_, PyDict>,
        frame: u64,
        name: &Arc<str>,
        key: &Bound<'_, PyString>,
        module: Option<&Bound<'_, PyAny>>,
        qualified: Option<&Bound<'_, PyString>>,
        fresh: bool,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = mods.py();
        let current = mods.get_item(key)?;
        let owners = self.owners.entry(name.clone()).or_default();
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

    fn has_owner(&self, name: &str) -> bool {
        self.owners.get(name).is_some_and(|o| !o.is_empty())
    }

    /// Ends `frame`'s claim on `name`; `current` is sys.modules[name] and `ours` the
    /// module the frame showed there.
    #[allow(clippy::too_many_arguments)] // hot path: no lookups the caller already did
    fn pop(
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

    fn move_marker(&mut self, mods: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = mods.py();
        if self.marker.is_none() {
            self.marker = Some(PyModule::new(py, MARKER)?.unbind());
        }
        let key = intern!(py, MARKER);
        if mods.contains(key)? {
            mods.del_item(key)?;
        }
        if let Some(m) = &self.marker {
            mods.set_item(key, m)?;
        }
        self.loads_at_mark = self.global_loads;
        Ok(())
    }

    /// Indexes the keys added to sys.modules since the marker (all keys if it vanished).
    fn scan(&mut self, mods: &Bound<'_, PyDict>, garbage: &mut Vec<Py<PyAny>>) -> PyResult<()> {
        let py = mods.py();
        let it = interp::get(py)?;
        let marker = intern!(py, MARKER);
        let new_keys = loop {
            let attempt: PyResult<Vec<Bound<'_, PyAny>>> = (|| {
                let mut keys = Vec::new();
                if mods.contains(marker)? {
                    let rev = it.reversed.bind(py).call1((mods,))?;
                    for k in rev.try_iter()? {
                        let k = k?;
                        if k.is(marker) || k.eq(marker)? {
                            break;
                        }
                        keys.push(k);
                    }
                } else {
                    keys.extend(mods.keys().iter());
                }
                Ok(keys)
            })();
            match attempt {
                Ok(keys) => break keys,
                // Another thread imported while we iterated: look again.
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py) => continue,
                Err(e) => return Err(e),
            }
        };
        if new_keys.is_empty() {
            return Ok(());
        }
        // Keys that only this thread's blocks can have added (no other thread has a
        // block or loaded a global meanwhile) and that hold no session module were
        // registered by the block's code: the innermost block owns them.
        let registrar = if self.reserved.is_empty()
            && self.global_loads == self.loads_at_mark
            && STACK.with(|s| s.borrow().len()) == self.frames.len()
        {
            STACK.with(|s| s.borrow().last().map(|(id, c)| (*id, c.clone_ref(py))))
        } else {
            None
        };
        self.move_marker(mods)?;
        // Oldest first: a registered package is owned before its submodules.
        for key in new_keys.into_iter().rev() {
            if let Ok(key) = key.cast_into::<PyString>() {
                self.note(mods, &key, registrar.as_ref(), garbage)?;
            }
        }
        Ok(())
    }

    /// Records that frame `id` of `session` owns the real-name key its code put into
    /// sys.modules: the block's imports get it, and it leaves with the block.
    fn note_registration(
        &mut self,
        mods: &Bound<'_, PyDict>,
        id: u64,
        session: &SessionCore,
        key: &Bound<'_, PyString>,
        name: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = mods.py();
        if name.starts_with(PREFIX) || name == MARKER || session.is_shared(py, name) {
            return Ok(false);
        }
        if let Some((parent, _)) = name.rsplit_once('.') {
            // A submodule a global package loaded (C code bypassing the hooks) stays.
            let global_parent = match mods.get_item(parent)? {
                None => false,
                Some(p) => !is_session_module(&p) && !self.is_registration(id, py, parent, &p),
            };
            if global_parent {
                return Ok(false);
            }
        }
        if imported_module(value, name) {
            // What an import produced, not a registration: another thread's import
            // that raced the block's start (no hook saw it) must stay global. Only
            // under a package the block registered (jinja2's compiled templates).
            let parent_registered = match name.rsplit_once('.') {
                Some((parent, _)) => match mods.get_item(parent)? {
                    Some(p) => self.is_registration(id, py, parent, &p),
                    None => false,
                },
                None => false,
            };
            if !parent_registered {
                return Ok(false);
            }
        }
        let Some(frame) = self.frames.get_mut(&id) else {
            return Ok(false);
        };
        let arc: Arc<str> = Arc::from(name);
        frame.own.insert(
            &arc,
            Claim {
                key: key.clone().unbind(),
                module: Some(value.clone().unbind()),
                qualified: None,
            },
        );
        let owners = self.owners.entry(arc).or_default();
        match owners.last_mut() {
            Some(last) if last.0 == id => last.1 = Some(value.clone().unbind()),
            _ => owners.push((id, Some(value.clone().unbind()))),
        }
        Ok(true)
    }

    /// True when frame `id` owns `value` under `name` as a registration of its code.
    fn is_registration(
        &mut self,
        id: u64,
        py: Python<'_>,
        name: &str,
        value: &Bound<'_, PyAny>,
    ) -> bool {
        self.frames
            .get_mut(&id)
            .and_then(|f| f.own.module(py, name))
            .is_some_and(|m| m.is(value))
    }

    fn note(
        &mut self,
        mods: &Bound<'_, PyDict>,
        key: &Bound<'_, PyString>,
        registrar: Option<&(u64, Py<SessionCore>)>,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = mods.py();
        let name = key.to_cow()?;
        if name.starts_with(PREFIX) {
            if let Some((head, rest)) = name.split_once('.') {
                if let Some(s) = registry::by_prefix(py, head) {
                    s.get().note_module(py, rest, Some(key));
                }
            }
            return Ok(());
        }
        let Some(value) = mods.get_item(key)? else {
            return Ok(());
        };
        let Some(session) = session_of(py, &value) else {
            if let Some((id, owner)) = registrar {
                if self.note_registration(mods, *id, owner.get(), key, &name, &value)? {
                    return Ok(());
                }
            }
            // A global: indexed so blocks can hide the rest of a package they shadow.
            self.by_top
                .entry(policy::top_level(&name).to_owned())
                .or_default()
                .insert(name.to_string());
            return Ok(());
        };
        let tracked = self
            .owners
            .get(name.as_ref())
            .and_then(|o| o.last())
            .and_then(|(_, m)| m.as_ref())
            .is_some_and(|m| m.bind(py).is(&value));
        if tracked {
            return Ok(());
        }
        match self.frame_for(py, session.get()) {
            // Leaves sys.modules with that block.
            Some(frame) => {
                let name: Arc<str> = Arc::from(name.as_ref());
                self.push(mods, frame, &name, key, Some(&value), None, false, garbage)?
            }
            None => {
                // Written outside any block: captured, never left global.
                session
                    .get()
                    .lock(py)
                    .extras
                    .insert(name.to_string(), value.clone().unbind());
                garbage.push(value.unbind());
                mods.del_item(key)?;
            }
        }
        Ok(())
    }

    fn frame_for(&self, py: Python<'_>, session: &SessionCore) -> Option<u64> {
        innermost_frame_of(session).or_else(|| session.lock(py).frames.last().copied())
    }

    /// Freezes the global sys.path for the time blocks are active (reusing the last
    /// snapshot while sys.path did not change).
    fn freeze_base(&mut self, sys_path: &Bound<'_, PyList>) -> PyResult<()> {
        let py = sys_path.py();
        if let Some(last) = &self.last_base {
            if last.list.bind(py).eq(sys_path)? {
                self.base = Some(last.clone_ref(py));
                return Ok(());
            }
        }
        let strings: Vec<String> = sys_path
            .iter()
            .filter_map(|p| p.extract::<String>().ok())
            .collect();
        self.next_generation += 1;
        let base = Base {
            list: PyList::new(py, sys_path.iter())?.unbind(),
            legit: strings.iter().cloned().collect(),
            strings,
            generation: self.next_generation,
        };
        self.last_base = Some(base.clone_ref(py));
        self.base = Some(base);
        Ok(())
    }
}

/// importlib's module-lock table when any import is in flight (CPython keeps one
/// lock per name being imported, 3.3 through 3.13), else None.
fn imports_in_flight(py: Python<'_>) -> Option<Py<PyDict>> {
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

/// True when another thread holds importlib's module lock for `name` (an import of
/// that real name is in flight there). This thread's own in-flight imports (C code
/// importing by real name during its init) are not in the way.
fn imported_elsewhere(locks: &Bound<'_, PyDict>, name: &Bound<'_, PyString>) -> bool {
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

/// `sys.path` as the global code sees it: the pre-activation snapshot while any block
/// is active, else the live list.
pub fn base_path(py: Python<'_>) -> PyResult<Vec<String>> {
    if let Some(base) = lock(py)?.state().base.as_ref() {
        return Ok(base.strings.clone());
    }
    Ok(interp::sys_path(py)?
        .iter()
        .filter_map(|p| p.extract::<String>().ok())
        .collect())
}

/// The live `sys.path` when the innermost block of this thread belongs to `core`, put
/// sys.path in place and changed it since: the search path of that block's imports.
pub fn live_path_of<'py>(core: &Bound<'py, SessionCore>) -> PyResult<Option<Bound<'py, PyList>>> {
    let py = core.py();
    let Some(id) = top_frame_of(core.get()) else {
        return Ok(None);
    };
    let applied = {
        let mut locked = lock(py)?;
        let st = locked.state();
        if st.path_owner != Some(id) {
            return Ok(None);
        }
        match st.frames.get(&id) {
            Some(f) => f.applied_path.clone_ref(py),
            None => return Ok(None),
        }
    };
    let sys_path = interp::sys_path(py)?;
    if sys_path.eq(applied.bind(py))? {
        return Ok(None);
    }
    // sys.path is process-wide: a block of another thread may have put its own path
    // (or the global one) in place meanwhile. Only a list that still holds every entry
    // this block applied is this block's own edit (entries inserted or appended).
    let live: HashSet<String> = sys_path
        .iter()
        .filter_map(|p| p.extract::<String>().ok())
        .collect();
    let kept = applied
        .bind(py)
        .iter()
        .filter_map(|p| p.extract::<String>().ok())
        .all(|p| live.contains(&p));
    if !kept {
        return Ok(None);
    }
    Ok(Some(PyList::new(py, sys_path.iter())?))
}

/// True when `real` is a key the code of this thread's innermost block (a block of
/// `core`) put into sys.modules: the block's import of it must get that object.
pub fn is_block_registration(core: &Bound<'_, SessionCore>, real: &str) -> PyResult<bool> {
    let py = core.py();
    if !is_active() {
        return Ok(false);
    }
    let mods = interp::sys_modules(py);
    let Some(value) = mods.get_item(real)? else {
        return Ok(false);
    };
    if is_session_module(&value) {
        return Ok(false);
    }
    let Some(id) = top_frame_of(core.get()) else {
        return Ok(false);
    };
    let mut locked = lock(py)?;
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    let result = st
        .scan(&mods, &mut garbage)
        .map(|()| st.is_registration(id, py, real, &value));
    drop(locked);
    drop(garbage);
    result
}

/// After a session's extension module `real` initialised: submodules its C code put
/// into sys.modules by real name (`hypothesis._native.internal`) are given their
/// qualified names too, so the import that loads them finds them in the session.
/// The global modules under `real.` known to the engine (keys and values), taken
/// before a session's extension `real` initialises.
pub fn subtree_values(py: Python<'_>, real: &str) -> PyResult<Vec<(String, Py<PyAny>)>> {
    let dotted = format!("{real}.");
    let keys: Vec<String> = lock(py)?
        .state()
        .by_top
        .get(policy::top_level(real))
        .map(|keys| {
            keys.iter()
                .filter(|k| k.starts_with(&dotted))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mods = interp::sys_modules(py);
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(v) = mods.get_item(&k)? {
            out.push((k, v.unbind()));
        }
    }
    Ok(out)
}

/// Runs inside the activation that initialised `real`; `before` is what
/// [`subtree_values`] saw. A global key the C code overwrote gets its global module
/// back and shows the session's one only while the session's blocks run.
pub fn mirror_registered_submodules(
    core: &Bound<'_, SessionCore>,
    real: &str,
    before: &[(String, Py<PyAny>)],
) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    let mods = interp::sys_modules(py);
    let marker = intern!(py, MARKER);
    let it = interp::get(py)?;
    let dotted = format!("{real}.");
    let mut found: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = Vec::new();
    let mut overwritten: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>)> = Vec::new();
    for (k, old) in before {
        if let Some(now) = mods.get_item(k)? {
            if !now.is(old.bind(py)) && !is_session_module(&now) {
                overwritten.push((PyString::new(py, k).into_any(), now, old.bind(py).clone()));
            }
        }
    }
    for _ in 0..8 {
        let attempt: PyResult<Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)>> = (|| {
            let mut out = Vec::new();
            if !mods.contains(marker)? {
                return Ok(out);
            }
            for k in it.reversed.bind(py).call1((&mods,))?.try_iter()? {
                let k = k?;
                if k.is(marker) {
                    break;
                }
                let starts = k
                    .cast::<PyString>()
                    .ok()
                    .and_then(|s| s.to_cow().ok().map(|c| c.starts_with(&dotted)))
                    .unwrap_or(false);
                if starts {
                    if let Some(v) = mods.get_item(&k)? {
                        out.push((k, v));
                    }
                }
            }
            Ok(out)
        })();
        match attempt {
            Ok(v) => {
                found = v;
                break;
            }
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyRuntimeError>(py) => continue,
            Err(e) => return Err(e),
        }
    }
    for (k, v) in found {
        if is_session_module(&v) {
            continue;
        }
        let name: String = k.extract()?;
        let qualified = session.qualified(&name);
        if !mods.contains(&qualified)? {
            mods.set_item(qualified, v)?;
        }
    }
    for (k, now, old) in overwritten {
        let name: String = k.extract()?;
        mods.set_item(session.qualified(&name), &now)?;
        mods.set_item(&k, &old)?;
        alias_if_active(core, &name, &now)?;
    }
    Ok(())
}

/// The generation of the frozen base path while blocks are active.
pub fn base_generation(py: Python<'_>) -> Option<u64> {
    lock(py).ok()?.state().base.as_ref().map(|b| b.generation)
}

/// The path gate: may `fullname` be searched for in the session-only entry `path`?
#[pyfunction]
pub fn gate_open(py: Python<'_>, path: &str, fullname: &str) -> bool {
    if fullname.starts_with(PREFIX) || !is_active() {
        return true;
    }
    let Ok(mut locked) = lock(py) else {
        return false;
    };
    if locked
        .state()
        .base
        .as_ref()
        .is_some_and(|b| b.legit.contains(path))
    {
        return true;
    }
    drop(locked);
    top_session(py).is_some_and(|s| s.get().lock(py).settings.paths.iter().any(|p| p == path))
}

/// Runs the path hooks for `paths` that have no finder cached yet. Hooks are Python
/// code that may import, so they run before the alias table is taken: an import lock
/// held by a thread that waits for the table must never be needed while holding it.
fn cache_finders(py: Python<'_>, paths: &[String]) -> PyResult<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let sys = interp::get(py)?.sys.bind(py);
    let cache = sys.getattr(intern!(py, "path_importer_cache"))?;
    for path in paths {
        if cache.get_item(path).is_ok_and(|f| !f.is_none()) {
            continue;
        }
        for hook in sys.getattr(intern!(py, "path_hooks"))?.try_iter()? {
            match hook?.call1((path,)) {
                Ok(finder) => {
                    cache.set_item(path, finder)?;
                    break;
                }
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyImportError>(py) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Wraps the `sys.path_importer_cache` entries of session-only paths in gates, so
/// threads without that session active skip them while blocks are active.
fn gate_paths(py: Python<'_>, st: &mut Aliases, paths: &[String]) -> PyResult<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let sys = interp::get(py)?.sys.bind(py);
    let cache = sys.getattr(intern!(py, "path_importer_cache"))?;
    let mut gate_fn: Option<Bound<'_, PyAny>> = None;
    for path in paths {
        let current = cache.get_item(path).ok();
        if let (Some(cur), Some(gate)) = (&current, st.gates.get(path)) {
            if cur.is(gate.bind(py)) {
                continue;
            }
        }
        let mut inner = current.filter(|c| !c.is_none());
        if inner.is_none() {
            for hook in sys.getattr(intern!(py, "path_hooks"))?.try_iter()? {
                match hook?.call1((path,)) {
                    Ok(finder) => {
                        inner = Some(finder);
                        break;
                    }
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyImportError>(py) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let Some(inner) = inner else { continue };
        if gate_fn.is_none() {
            gate_fn = Some(wrap_pyfunction!(gate_open, py)?.into_any());
        }
        let gate_class = interp::get(py)?.loaders.bind(py).getattr("DirGate")?;
        let gate = gate_class.call1((path, inner, gate_fn.as_ref()))?;
        cache.set_item(path, &gate)?;
        st.gates.insert(path.clone(), gate.unbind());
    }
    Ok(())
}

// ---- environment ----------------------------------------------------------------------

/// `os.environ`'s encoded data dict (live).
fn env_data<'py>(py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let environ = interp::get(py)?.environ.bind(py);
    Ok(environ
        .getattr(intern!(py, "_data"))
        .ok()
        .and_then(|d| d.cast_into::<PyDict>().ok()))
}

/// A copy of `os.environ`'s encoded data (C-level dict copy, cheap to compare).
fn env_snapshot(py: Python<'_>) -> PyResult<Py<PyAny>> {
    match env_data(py)? {
        Some(data) => Ok(data.copy()?.into_any().unbind()),
        None => Ok(PyDict::new(py).into_any().unbind()),
    }
}

/// True when the environment still equals `snapshot`.
fn env_unchanged(py: Python<'_>, snapshot: &Bound<'_, PyAny>) -> PyResult<bool> {
    match env_data(py)? {
        Some(data) => data.eq(snapshot),
        None => Ok(true),
    }
}

fn env_decode<'py>(
    py: Python<'py>,
    snapshot: &Bound<'py, PyAny>,
) -> PyResult<Vec<(String, String)>> {
    let environ = interp::get(py)?.environ.bind(py);
    let dict = snapshot.cast::<PyDict>()?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let key: String = environ
            .call_method1(intern!(py, "decodekey"), (k,))?
            .extract()?;
        let value: String = environ
            .call_method1(intern!(py, "decodevalue"), (v,))?
            .extract()?;
        out.push((key, value));
    }
    Ok(out)
}

/// Makes `os.environ` (and so the C environment) exactly `target`, in place.
fn env_set(py: Python<'_>, target: &[(String, String)]) -> PyResult<()> {
    let environ = interp::get(py)?.environ.bind(py);
    let wanted: HashMap<&str, &str> = target
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let current: Vec<String> = environ
        .call_method0("keys")?
        .try_iter()?
        .flatten()
        .filter_map(|k| k.extract().ok())
        .collect();
    for key in current {
        if !wanted.contains_key(key.as_str()) {
            environ.del_item(&key)?;
        }
    }
    for (k, v) in target {
        let same = environ
            .call_method1(intern!(py, "get"), (k,))?
            .extract::<Option<String>>()?
            .is_some_and(|cur| &cur == v);
        if !same {
            environ.set_item(k, v)?;
        }
    }
    Ok(())
}

/// Changes the block made to the environment: (key, new value or None if deleted).
fn env_changes(
    py: Python<'_>,
    applied: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, Option<String>)>> {
    let now = env_snapshot(py)?;
    let before: HashMap<String, String> = env_decode(py, applied)?.into_iter().collect();
    let after: HashMap<String, String> = env_decode(py, now.bind(py))?.into_iter().collect();
    let mut changes: Vec<(String, Option<String>)> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    changes.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    changes.sort();
    Ok(changes)
}

/// Applies the session's environment; returns C-level variables it had to unset.
fn apply_env(
    py: Python<'_>,
    env: &[(String, Option<String>)],
    inherit: bool,
    outermost_saved: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(String, String)>> {
    let environ = interp::get(py)?.environ.bind(py);
    if inherit && outermost_saved.is_none() {
        for (k, v) in env {
            match v {
                None => {
                    if environ.contains(k)? {
                        environ.del_item(k)?;
                    }
                }
                Some(v) => {
                    let cur: Option<String> =
                        environ.call_method1(intern!(py, "get"), (k,))?.extract()?;
                    if cur.as_deref() != Some(v.as_str()) {
                        environ.set_item(k, v)?;
                    }
                }
            }
        }
    } else {
        let mut target: Vec<(String, String)> = match (inherit, outermost_saved) {
            (true, Some(saved)) => env_decode(py, saved)?,
            _ => Vec::new(),
        };
        for (k, v) in env {
            target.retain(|(tk, _)| tk != k);
            if let Some(v) = v {
                target.push((k.clone(), v.clone()));
            }
        }
        env_set(py, &target)?;
    }
    // C code may setenv() behind os.environ's back (readline's LINES/COLUMNS): with
    // inherit_env=False those must not show through either.
    let mut c_only = Vec::new();
    if !inherit {
        let os = interp::get(py)?.os.bind(py);
        for (k, v) in std::env::vars() {
            if !environ.contains(&k)? {
                os.call_method1("unsetenv", (&k,))?;
                c_only.push((k, v));
            }
        }
    }
    Ok(c_only)
}

// ---- enter / exit -----------------------------------------------------------------------

/// Enters a block of `core` on this thread; returns the token `exit` takes.
pub fn enter(core: &Bound<'_, SessionCore>) -> PyResult<u64> {
    let py = core.py();
    let session = core.get();
    session.ensure_open(py)?;
    let reentered = top_frame_of(session);
    if reentered.is_none() {
        let paths = session.lock(py).settings.paths.clone();
        cache_finders(py, &paths)?;
    }
    let mut locked = lock(py)?;
    if let Some(id) = reentered {
        if let Some(f) = locked.state().frames.get_mut(&id) {
            f.depth += 1;
            return Ok(id);
        }
    }
    let st = locked.state();
    st.next_id += 1;
    let id = st.next_id;
    {
        // Claimed under the session's lock, where `close` checks for frames and marks
        // the session closed: a block never begins on a closing session.
        let mut ss = session.lock(py);
        if ss.closed {
            drop(ss);
            return session.ensure_open(py).map(|()| id);
        }
        ss.frames.push(id);
    }
    let mods = interp::sys_modules(py);
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    let first = !is_active();
    EPOCH.fetch_add(1, Ordering::AcqRel);
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    st.in_flight = imports_in_flight(py);
    let result = enter_frame(core, st, id, first, &mods, &mut garbage);
    st.in_flight = None;
    match &result {
        Ok(()) => {
            STACK.with(|s| s.borrow_mut().push((id, core.clone().unbind())));
        }
        Err(_) => {
            // Undo a half-done activation; the original error is what the user needs.
            if st.frames.contains_key(&id) {
                let _ = leave_frame(py, st, id, session, &mods, &mut garbage);
            } else {
                session.lock(py).frames.retain(|f| *f != id);
                if ACTIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
                    st.base = None;
                }
            }
        }
    }
    drop(locked);
    drop(garbage);
    result.map(|()| id)
}

fn enter_frame(
    core: &Bound<'_, SessionCore>,
    st: &mut Aliases,
    id: u64,
    first: bool,
    mods: &Bound<'_, PyDict>,
    garbage: &mut Vec<Py<PyAny>>,
) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    let sys_path = interp::sys_path(py)?;
    if first || st.base.is_none() {
        st.freeze_base(&sys_path)?;
        st.base_env = Some(env_snapshot(py)?);
    }
    st.scan(mods, garbage)?;
    let below = top_frame_id();
    let outermost = STACK.with(|s| s.borrow().first().map(|(id, _)| *id));
    // sys.path and os.environ are process-wide: with blocks of other threads
    // overlapping, the current values may be theirs, so an outermost frame saves
    // (and later restores) the global state from before the first activation.
    let (saved_path, saved_env) = match (below, &st.base, &st.base_env) {
        (None, Some(base), Some(env)) if !first => (
            PyList::new(py, base.list.bind(py).iter())?.unbind(),
            env.clone_ref(py),
        ),
        _ => (
            PyList::new(py, sys_path.iter())?.unbind(),
            env_snapshot(py)?,
        ),
    };
    let overlapped = below.is_none() && !first;
    st.frames.insert(
        id,
        Frame {
            session: core.clone().unbind(),
            thread: std::thread::current().id(),
            orphaned: false,
            foreign_mark: 0,
            depth: 0,
            saved_path,
            applied_path: PyList::empty(py).unbind(),
            saved_env,
            applied_env: py.None(),
            c_only: Vec::new(),
            own: Owned::default(),
        },
    );
    // The session's modules (dropping names whose module left sys.modules).
    struct Entry<'py> {
        name: Arc<str>,
        key: Bound<'py, PyString>,
        qualified: Bound<'py, PyString>,
        module: Bound<'py, PyAny>,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let (extras, paths, env, inherit_env, cached_search) = {
        let mut ss = session.lock(py);
        let mut gone = Vec::new();
        for (real, keys) in &ss.modules {
            match mods.get_item(keys.qualified.bind(py))? {
                Some(m) => entries.push(Entry {
                    name: keys.name.clone(),
                    key: keys.real.bind(py).clone(),
                    qualified: keys.qualified.bind(py).clone(),
                    module: m,
                }),
                None => gone.push(real.clone()),
            }
        }
        for g in gone {
            ss.modules.remove(&g);
        }
        let extras: Vec<(String, Py<PyAny>)> = ss
            .extras
            .iter()
            .map(|(k, v)| (k.clone(), v.clone_ref(py)))
            .collect();
        let generation = st.base.as_ref().map(|b| b.generation);
        let cached = ss
            .search_cache
            .as_ref()
            .filter(|(g, _)| Some(*g) == generation)
            .map(|(_, l)| l.clone_ref(py));
        (
            extras,
            ss.settings.paths.clone(),
            ss.settings.env.clone(),
            ss.settings.inherit_env,
            cached,
        )
    };
    // Built only when a lookup needs it (nesting, shadowed global packages).
    let mut own_names: Option<FxHashSet<&str>> = None;
    fn names_of<'a>(entries: &'a [Entry<'_>]) -> FxHashSet<&'a str> {
        let mut set = FxHashSet::default();
        set.reserve(entries.len());
        set.extend(entries.iter().map(|e| e.name.as_ref()));
        set
    }
    if let Some(f) = st.frames.get_mut(&id) {
        f.own.reserve(entries.len() + extras.len());
    }
    // Hide what the frame below shows that this session lacks (A-B-A nesting).
    if let Some(below) = below {
        let shown: Vec<(Arc<str>, Py<PyString>)> = st
            .frames
            .get(&below)
            .map(|f| {
                f.own
                    .claims
                    .iter()
                    .filter(|(_, claim)| claim.module.is_some())
                    .map(|(n, claim)| (n.clone(), claim.key.clone_ref(py)))
                    .collect()
            })
            .unwrap_or_default();
        let own = own_names.get_or_insert_with(|| names_of(&entries));
        for (n, key) in shown {
            if !own.contains(n.as_ref()) {
                st.push(mods, id, &n, key.bind(py), None, None, true, garbage)?;
            }
        }
    }
    for e in &entries {
        st.push(
            mods,
            id,
            &e.name,
            &e.key,
            Some(&e.module),
            Some(&e.qualified),
            true,
            garbage,
        )?;
    }
    for (n, m) in &extras {
        let key = PyString::new(py, n);
        let name: Arc<str> = Arc::from(n.as_str());
        st.push(
            mods,
            id,
            &name,
            &key,
            Some(m.bind(py)),
            None,
            false,
            garbage,
        )?;
    }
    // Hide the rest of every global package this session shadows. A session holds
    // few top-level packages: a linear list beats hashing every name.
    let mut tops: Vec<&str> = Vec::new();
    for e in &entries {
        let top = policy::top_level(&e.name);
        if !tops.contains(&top) {
            tops.push(top);
        }
    }
    let extra_names: FxHashSet<&str> = extras.iter().map(|(n, _)| n.as_str()).collect();
    for top in tops {
        let Some(keys) = st.by_top.get(top) else {
            continue;
        };
        let own = own_names.get_or_insert_with(|| names_of(&entries));
        let candidates: Vec<String> = keys
            .iter()
            .filter(|k| !own.contains(k.as_str()) && !extra_names.contains(k.as_str()))
            .cloned()
            .collect();
        for k in candidates {
            let key = PyString::new(py, &k);
            let Some(g) = mods.get_item(&key)? else {
                continue;
            };
            if !is_session_module(&g) && !is_extension(py, &g) && !session.is_shared(py, &k) {
                let name: Arc<str> = Arc::from(k.as_str());
                st.push(mods, id, &name, &key, None, None, false, garbage)?;
            }
        }
    }
    drop(own_names);
    drop(entries);
    let search = match cached_search {
        Some(list) => list,
        None => {
            let base = st
                .base
                .as_ref()
                .map(|b| b.strings.clone())
                .unwrap_or_default();
            let list = PyList::new(py, search_path_from(py, session, &base)?)?.unbind();
            let generation = st.base.as_ref().map_or(0, |b| b.generation);
            session.lock(py).search_cache = Some((generation, list.clone_ref(py)));
            list
        }
    };
    gate_paths(py, st, &paths)?;
    sys_path.set_slice(0, isize::MAX as usize, search.bind(py))?;
    st.path_owner = Some(id);
    let saved_outer = outermost
        .and_then(|o| st.frames.get(&o))
        .map(|f| f.saved_env.clone_ref(py))
        .or_else(|| {
            overlapped
                .then(|| st.frames.get(&id).map(|f| f.saved_env.clone_ref(py)))
                .flatten()
        });
    let c_only = apply_env(
        py,
        &env,
        inherit_env,
        saved_outer.as_ref().map(|s| s.bind(py)),
    )?;
    let applied_env = if env.is_empty() && inherit_env && saved_outer.is_none() {
        // Nothing changed: the saved snapshot is the applied one.
        st.frames
            .get(&id)
            .map(|f| f.saved_env.clone_ref(py))
            .unwrap_or(py.None())
    } else {
        env_snapshot(py)?
    };
    let applied_path = PyList::new(py, sys_path.iter())?.unbind();
    if let Some(f) = st.frames.get_mut(&id) {
        f.applied_path = applied_path;
        f.applied_env = applied_env;
        f.c_only = c_only;
    }
    let me = std::thread::current().id();
    if other_threads_active(st, me) {
        FOREIGN_PATCHES.fetch_add(1, Ordering::AcqRel);
    }
    let mark = FOREIGN_PATCHES.load(Ordering::Acquire);
    if let Some(f) = st.frames.get_mut(&id) {
        f.foreign_mark = mark;
    }
    st.move_marker(mods)?;
    Ok(())
}

/// The session's search path given the global base path.
pub fn search_path_from(
    py: Python<'_>,
    session: &SessionCore,
    base: &[String],
) -> PyResult<Vec<String>> {
    let it = interp::get(py)?;
    let st = session.lock(py);
    // The global entries keep their order (duplicates too) after the session's own.
    let own = &st.settings.paths;
    let mut out: Vec<String> = own.clone();
    for p in base {
        if !own.contains(p)
            && (st.settings.inherit_paths || policy::is_stdlib_path(p, &it.stdlib_dirs))
        {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Leaves a block of `core`. `token` is what `enter` returned for that block, when the
/// caller kept it (the facade does): it names the frame even when the block is left
/// on another thread than the one that entered it, which is what happens to a `with`
/// block inside a generator closed elsewhere. Without a token, this thread's
/// innermost block of the session is meant, else the newest one on another thread.
///
/// A frame with blocks of its own thread entered after it still open is not left at
/// once (that would undo their state): it is marked and left as soon as they end.
/// Returns the token of the block it left (or marked).
pub fn exit(core: &Bound<'_, SessionCore>, token: Option<u64>) -> PyResult<u64> {
    let py = core.py();
    let session = core.get();
    let me = std::thread::current().id();
    let mine = innermost_frame_of(session);
    let mut locked = lock(py)?;
    let st = locked.state();
    let ours = |f: &Frame| std::ptr::eq(f.session.get(), session) && !f.orphaned;
    let id = token
        .filter(|t| st.frames.get(t).is_some_and(ours))
        .or(mine.filter(|t| st.frames.get(t).is_some_and(ours)))
        .or_else(|| {
            st.frames
                .iter()
                .filter(|(_, f)| f.thread != me && ours(f))
                .map(|(id, _)| *id)
                .max()
        });
    let Some(id) = id else {
        return Err(SessionError::new_err(format!(
            "session {} is not active; call exit() only after enter()",
            session.label()
        )));
    };
    let Some(frame) = st.frames.get_mut(&id) else {
        return Ok(id);
    };
    if frame.depth > 0 {
        frame.depth -= 1;
        return Ok(id);
    }
    let thread = frame.thread;
    let later = st
        .frames
        .iter()
        .any(|(other, f)| f.thread == thread && *other > id);
    if later {
        if let Some(f) = st.frames.get_mut(&id) {
            f.orphaned = true;
        }
        log::debug!(
            "session {} will be left when the blocks entered after it end",
            session.label()
        );
        return Ok(id);
    }
    let mods = interp::sys_modules(py);
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    let result = leave_frame(py, st, id, session, &mods, &mut garbage);
    let own_thread = thread == me;
    if !own_thread {
        left_elsewhere(id);
        log::debug!(
            "left session {} on a thread other than the one that entered it",
            session.label()
        );
    }
    let below = leave_orphans(py, st, thread, own_thread, &mods, &mut garbage);
    drop(locked);
    drop(garbage);
    result.and(below).map(|()| id)
}

/// Leaves the frames of `thread` that another thread asked to leave while later
/// blocks were open on it, now that they are on top, innermost first.
fn leave_orphans(
    py: Python<'_>,
    st: &mut Aliases,
    thread: std::thread::ThreadId,
    own_thread: bool,
    mods: &Bound<'_, PyDict>,
    garbage: &mut Vec<Py<PyAny>>,
) -> PyResult<()> {
    let mut first_error = None;
    loop {
        let top = st
            .frames
            .iter()
            .filter(|(_, f)| f.thread == thread)
            .max_by_key(|(id, _)| **id)
            .filter(|(_, f)| f.orphaned)
            .map(|(id, f)| (*id, f.session.clone_ref(py)));
        let Some((id, session)) = top else { break };
        if let Err(e) = leave_frame(py, st, id, session.get(), mods, garbage) {
            first_error.get_or_insert(e);
        }
        garbage.push(session.into_any());
        if !own_thread {
            left_elsewhere(id);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Restores everything `enter` changed for frame `id`, even if parts fail; returns the
/// first error.
fn leave_frame(
    py: Python<'_>,
    st: &mut Aliases,
    id: u64,
    session: &SessionCore,
    mods: &Bound<'_, PyDict>,
    garbage: &mut Vec<Py<PyAny>>,
) -> PyResult<()> {
    let mut first_error: Option<PyErr> = None;
    let mut keep = |r: PyResult<()>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    keep(st.scan(mods, garbage));
    STACK.with(|s| s.borrow_mut().retain(|(f, _)| *f != id));
    session.lock(py).frames.retain(|f| *f != id);
    let owned = st
        .frames
        .get_mut(&id)
        .map(|f| std::mem::take(&mut f.own))
        .unwrap_or_default();
    for (name, claim) in owned.claims.into_iter().rev() {
        keep((|| {
            let key = claim.key.bind(py);
            let current = mods.get_item(key)?;
            let shown = claim.module.map(|m| m.into_bound(py));
            let qualified_module = || -> PyResult<Option<Bound<'_, PyAny>>> {
                match &claim.qualified {
                    Some(q) => mods.get_item(q.bind(py)),
                    None => Ok(None),
                }
            };
            if let Some(m) = &shown {
                // Aliases of session modules are recognised by their qualified key;
                // anything else the frame showed is an extra (session code's key).
                let alias =
                    claim.qualified.is_some() && same(qualified_module()?.as_ref(), Some(m));
                if !alias {
                    let mut ss = session.lock(py);
                    if same(current.as_ref(), Some(m)) {
                        ss.extras.insert(name.to_string(), m.clone().unbind());
                    } else {
                        ss.extras.remove(name.as_ref());
                    }
                }
            }
            if let Some(cur) = &current {
                let replaced = !same(Some(cur), shown.as_ref())
                    && belongs_to(cur, session)
                    && !same(Some(cur), qualified_module()?.as_ref());
                if replaced {
                    // Block code replaced our entry in place: it stays the session's.
                    session
                        .lock(py)
                        .extras
                        .insert(name.to_string(), cur.clone().unbind());
                }
            }
            st.pop(mods, id, &name, key, current, shown.as_ref(), garbage)
        })());
    }
    if let Some(frame) = st.frames.remove(&id) {
        if frame.foreign_mark == FOREIGN_PATCHES.load(Ordering::Acquire) {
            keep(capture_changes(py, session, &frame));
        } else {
            log::debug!(
                "session {}: sys.path and environment edits of this block are not kept \
                 (a block of another thread changed them meanwhile)",
                session.label()
            );
        }
        if other_threads_active(st, frame.thread) {
            FOREIGN_PATCHES.fetch_add(1, Ordering::AcqRel);
        }
        keep((|| {
            let sys_path = interp::sys_path(py)?;
            if !sys_path.eq(frame.saved_path.bind(py))? {
                sys_path.set_slice(0, isize::MAX as usize, frame.saved_path.bind(py))?;
            }
            Ok(())
        })());
        st.path_owner = top_frame_id();
        keep((|| {
            let saved = frame.saved_env.bind(py);
            if !env_unchanged(py, saved)? {
                env_set(py, &env_decode(py, saved)?)?;
            }
            Ok(())
        })());
        keep((|| {
            let os = interp::get(py)?.os.bind(py);
            for (k, v) in &frame.c_only {
                os.call_method1("putenv", (k, v))?;
            }
            Ok(())
        })());
        garbage.push(frame.session.into_any());
    }
    if ACTIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        st.base = None;
        st.base_env = None;
    }
    keep(st.move_marker(mods));
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Changes the block made to the environment and `sys.path` belong to the session:
/// they are seen again on its next activation.
fn capture_changes(py: Python<'_>, session: &SessionCore, frame: &Frame) -> PyResult<()> {
    let applied_env = frame.applied_env.bind(py);
    let env_changes = if applied_env.is_none() || env_unchanged(py, applied_env)? {
        Vec::new()
    } else {
        env_changes(py, applied_env)?
    };
    let sys_path = interp::sys_path(py)?;
    let added: Vec<String> = if sys_path.eq(frame.applied_path.bind(py))? {
        Vec::new()
    } else {
        let applied: HashSet<String> = frame
            .applied_path
            .bind(py)
            .iter()
            .filter_map(|p| p.extract().ok())
            .collect();
        sys_path
            .iter()
            .filter_map(|p| p.extract::<String>().ok())
            .filter(|p| !applied.contains(p))
            .collect()
    };
    if env_changes.is_empty() && added.is_empty() {
        return Ok(());
    }
    let mut st = session.lock(py);
    for (k, v) in env_changes {
        st.settings.env.retain(|(ek, _)| ek != &k);
        st.settings.env.push((k, v));
    }
    for p in added {
        if !st.settings.paths.contains(&p) {
            st.settings.paths.push(p);
        }
    }
    st.search_cache = None;
    st.live_cache = None;
    Ok(())
}

/// Makes `module` visible by real `name` if `session` is the innermost active session
/// of this thread. Returns false when it is not.
pub fn alias_if_active(
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

// ---- the global view for threads without an activation ---------------------------------

/// The global module under a real name as threads without an activation must see it;
/// `None` means: take the slow path.
pub fn global_view<'py>(py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let mods = interp::sys_modules(py);
    let mut module = mods.get_item(name)?.filter(|m| !is_session_module(m));
    if module.is_none() {
        let hidden = lock(py)?.state().hidden.get(name).map(|m| m.clone_ref(py));
        module = match hidden {
            Some(h) => Some(h.into_bound(py)),
            // A block's exit restored it meanwhile: read again.
            None => mods.get_item(name)?.filter(|m| !is_session_module(m)),
        };
    }
    Ok(module.filter(|m| !is_initializing(m)))
}

/// Runs a load for a thread without an activation while its names show the global view.
pub fn with_global_view<'py>(
    py: Python<'py>,
    names: &[String],
    load: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mods = interp::sys_modules(py);
    {
        let mut locked = lock(py)?;
        let st = locked.state();
        st.global_loads += 1;
        for n in names {
            *st.reserved.entry(n.clone()).or_default() += 1;
            if st.has_owner(n) {
                match st.hidden.get(n).map(|g| g.clone_ref(py)) {
                    Some(g) => mods.set_item(n, g)?,
                    None => {
                        if mods.contains(n)? {
                            mods.del_item(n)?;
                        }
                    }
                }
            }
        }
    }
    let result = load();
    let mut locked = lock(py)?;
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    st.global_loads += 1;
    for n in names {
        let left = st.reserved.get(n).copied().unwrap_or(1).saturating_sub(1);
        if left > 0 {
            st.reserved.insert(n.clone(), left);
            continue;
        }
        st.reserved.remove(n);
        if st.has_owner(n) {
            if let Some(g) = mods.get_item(n)?.filter(|g| !is_session_module(g)) {
                // A global loaded meanwhile stays hidden from the blocks.
                st.hidden.insert(n.clone(), g.unbind());
            }
            let key = PyString::new(py, n);
            st.apply(&mods, n, &key, &mut garbage)?;
        }
    }
    drop(locked);
    drop(garbage);
    result
}

/// Forgets what the engine kept of a closing session (it is not active anywhere).
pub fn forget_session(py: Python<'_>, session: &SessionCore, names: &[String]) {
    let Ok(mut locked) = lock(py) else {
        return;
    };
    let st = locked.state();
    st.hidden.retain(|_, m| !belongs_to(m.bind(py), session));
    // Emptied owner entries are kept for speed while a session lives; a closed
    // session's names go, or a process making thousands of sessions would grow.
    for name in names {
        if st.owners.get(name.as_str()).is_some_and(|o| o.is_empty()) {
            st.owners.remove(name.as_str());
        }
    }
}

/// The number of this thread's activations.
pub fn depth() -> usize {
    purge_stack();
    STACK.with(|s| s.borrow().len())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gate_open, m)?)?;
    Ok(())
}
