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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
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

pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Acquire) != 0
}

/// The innermost session active on this thread.
pub fn top_session(py: Python<'_>) -> Option<Py<SessionCore>> {
    STACK.with(|s| s.borrow().last().map(|(_, c)| c.clone_ref(py)))
}

fn top_frame_id() -> Option<u64> {
    STACK.with(|s| s.borrow().last().map(|(id, _)| *id))
}

/// Names a frame aliased or hid, in order, with the module it showed (None = hidden).
#[derive(Default)]
struct Owned {
    order: Vec<String>,
    map: HashMap<String, Option<Py<PyAny>>>,
}

impl Owned {
    fn insert(&mut self, py: Python<'_>, name: &str, module: Option<&Bound<'_, PyAny>>) {
        let value = module.map(|m| m.clone().unbind());
        if self.map.insert(name.to_owned(), value).is_none() {
            self.order.push(name.to_owned());
        }
        let _ = py;
    }

    fn get<'py>(&self, py: Python<'py>, name: &str) -> Option<Option<Bound<'py, PyAny>>> {
        self.map
            .get(name)
            .map(|m| m.as_ref().map(|m| m.bind(py).clone()))
    }
}

struct Frame {
    session: Py<SessionCore>,
    depth: u32,
    saved_path: Py<PyList>,
    applied_path: Vec<String>,
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
    owners: HashMap<String, Vec<Owner>>,
    /// real name -> global module hidden while the name has owners.
    hidden: HashMap<String, Py<PyAny>>,
    /// real name -> loads in flight by threads without an activation.
    reserved: HashMap<String, usize>,
    /// top-level name -> real-name keys seen in sys.modules.
    by_top: HashMap<String, HashSet<String>>,
    frames: HashMap<u64, Frame>,
    /// sys.path before the first activation patched it (threads without an
    /// activation search this snapshot, not the list being mutated).
    base_path: Option<Vec<String>>,
    /// Path entries on the global sys.path: their gates stay open for everyone.
    legit: HashSet<String>,
    next_id: u64,
    marker: Option<Py<PyModule>>,
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

fn lock(py: Python<'_>) -> Locked<'static> {
    Locked {
        guard: ALIASES
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner()),
        garbage: Vec::new(),
    }
}

/// A module's `__name__`, read from its dict without running Python code.
pub fn module_name(obj: &Bound<'_, PyAny>) -> Option<String> {
    let module = obj.cast::<PyModule>().ok()?;
    let dict = module.dict();
    let name = dict.get_item(intern!(obj.py(), "__name__")).ok()??;
    name.cast::<PyString>()
        .ok()?
        .to_cow()
        .ok()
        .map(|c| c.into_owned())
}

/// True for a module created by a session (qualified `__name__`).
pub fn is_session_module(obj: &Bound<'_, PyAny>) -> bool {
    module_name(obj).is_some_and(|n| n.starts_with(PREFIX))
}

fn session_of(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Option<Py<SessionCore>> {
    let name = module_name(obj)?;
    if !name.starts_with(PREFIX) {
        return None;
    }
    registry::owner_of(py, &name)
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
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        if self.reserved.contains_key(name) {
            return Ok(());
        }
        if let Some((_, visible)) = self.owners.get(name).and_then(|o| o.last()) {
            match visible {
                Some(m) => mods.set_item(name, m)?,
                None => {
                    if let Some(old) = mods.get_item(name)? {
                        garbage.push(old.unbind());
                        mods.del_item(name)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        mods: &Bound<'_, PyDict>,
        frame: u64,
        name: &str,
        module: Option<&Bound<'_, PyAny>>,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = mods.py();
        let current = mods.get_item(name)?;
        let owners = self.owners.entry(name.to_owned()).or_default();
        // A value is a global to hide unless it is a session module or the alias the
        // top owner set (an alias may hold a stdlib module: six.moves.http_client).
        let global = current.as_ref().filter(|cur| {
            !is_session_module(cur)
                && !owners
                    .last()
                    .and_then(|(_, m)| m.as_ref())
                    .is_some_and(|m| m.bind(py).is(*cur))
        });
        if let Some(g) = global {
            self.hidden.insert(name.to_owned(), g.clone().unbind());
        }
        let value = module.map(|m| m.clone().unbind());
        match owners.last_mut() {
            Some(last) if last.0 == frame => last.1 = value,
            _ => owners.push((frame, value)),
        }
        if let Some(f) = self.frames.get_mut(&frame) {
            f.own.insert(py, name, module);
        }
        // Never alias over a global that is still executing (its import would
        // return our module to its importer).
        if !global.is_some_and(is_initializing) {
            self.apply(mods, name, garbage)?;
        }
        Ok(())
    }

    fn pop(
        &mut self,
        mods: &Bound<'_, PyDict>,
        frame: u64,
        name: &str,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = mods.py();
        let Some(owners) = self.owners.get_mut(name) else {
            return Ok(());
        };
        owners.retain(|(f, _)| *f != frame);
        if !owners.is_empty() {
            return self.apply(mods, name, garbage);
        }
        self.owners.remove(name);
        let hidden = self.hidden.remove(name);
        if self.reserved.contains_key(name) {
            return Ok(());
        }
        let current = mods.get_item(name)?;
        let ours = self
            .frames
            .get(&frame)
            .and_then(|f| f.own.get(py, name))
            .flatten();
        let restorable = match &current {
            None => true,
            Some(cur) => is_session_module(cur) || ours.as_ref().is_some_and(|o| o.is(cur)),
        };
        // Otherwise keep the global an unhooked import put back meanwhile.
        if restorable {
            match hidden {
                Some(g) => mods.set_item(name, g)?,
                None => {
                    if let Some(cur) = current {
                        garbage.push(cur.unbind());
                        mods.del_item(name)?;
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
        if mods.contains(MARKER)? {
            mods.del_item(MARKER)?;
        }
        if let Some(m) = &self.marker {
            mods.set_item(MARKER, m)?;
        }
        Ok(())
    }

    /// Indexes the keys added to sys.modules since the marker (all keys if it vanished).
    fn scan(&mut self, mods: &Bound<'_, PyDict>, garbage: &mut Vec<Py<PyAny>>) -> PyResult<()> {
        let py = mods.py();
        let it = interp::get(py)?;
        let new_keys = loop {
            let attempt: PyResult<Vec<Bound<'_, PyAny>>> = (|| {
                let mut keys = Vec::new();
                if mods.contains(MARKER)? {
                    let rev = it.reversed.bind(py).call1((mods,))?;
                    for k in rev.try_iter()? {
                        let k = k?;
                        if k.cast::<PyString>()
                            .is_ok_and(|s| s.to_cow().is_ok_and(|s| s == MARKER))
                        {
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
        self.move_marker(mods)?;
        for key in new_keys {
            if let Ok(name) = key.extract::<String>() {
                self.note(mods, &name, garbage)?;
            }
        }
        Ok(())
    }

    fn note(
        &mut self,
        mods: &Bound<'_, PyDict>,
        key: &str,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = mods.py();
        if key.starts_with(PREFIX) {
            if let Some((head, rest)) = key.split_once('.') {
                if let Some(s) = registry::by_prefix(py, head) {
                    s.get().note_module(py, rest);
                }
            }
            return Ok(());
        }
        self.by_top
            .entry(policy::top_level(key).to_owned())
            .or_default()
            .insert(key.to_owned());
        let Some(value) = mods.get_item(key)? else {
            return Ok(());
        };
        let Some(session) = session_of(py, &value) else {
            return Ok(());
        };
        let tracked = self
            .owners
            .get(key)
            .and_then(|o| o.last())
            .and_then(|(_, m)| m.as_ref())
            .is_some_and(|m| m.bind(py).is(&value));
        if tracked {
            return Ok(());
        }
        match self.frame_for(py, session.get()) {
            // Leaves sys.modules with that block.
            Some(frame) => self.push(mods, frame, key, Some(&value), garbage)?,
            None => {
                // Written outside any block: captured, never left global.
                session
                    .get()
                    .lock(py)
                    .extras
                    .insert(key.to_owned(), value.clone().unbind());
                garbage.push(value.unbind());
                mods.del_item(key)?;
            }
        }
        Ok(())
    }

    fn frame_for(&self, py: Python<'_>, session: &SessionCore) -> Option<u64> {
        let mine = STACK.with(|s| {
            s.borrow()
                .iter()
                .rev()
                .find(|(_, c)| std::ptr::eq(c.get(), session))
                .map(|(id, _)| *id)
        });
        mine.or_else(|| session.lock(py).frames.last().copied())
    }
}

/// `sys.path` as the global code sees it: the pre-activation snapshot while any block
/// is active, else the live list.
pub fn base_path(py: Python<'_>) -> PyResult<Vec<String>> {
    if let Some(base) = lock(py).state().base_path.clone() {
        return Ok(base);
    }
    live_path(py)
}

fn live_path(py: Python<'_>) -> PyResult<Vec<String>> {
    Ok(interp::sys_path(py)?
        .iter()
        .filter_map(|p| p.extract::<String>().ok())
        .collect())
}

/// The path gate: may `fullname` be searched for in the session-only entry `path`?
#[pyfunction]
pub fn gate_open(py: Python<'_>, path: &str, fullname: &str) -> bool {
    if fullname.starts_with(PREFIX) || !is_active() {
        return true;
    }
    if lock(py).state().legit.contains(path) {
        return true;
    }
    top_session(py).is_some_and(|s| s.get().lock(py).settings.paths.iter().any(|p| p == path))
}

fn gate_paths(py: Python<'_>, paths: &[String]) -> PyResult<()> {
    let it = interp::get(py)?;
    let sys = py.import("sys")?;
    let cache = sys.getattr("path_importer_cache")?;
    let gate_class = it.loaders.bind(py).getattr("DirGate")?;
    let gate = wrap_pyfunction!(gate_open, py)?;
    for path in paths {
        let current = cache.get_item(path).ok();
        if current
            .as_ref()
            .is_some_and(|c| c.is_instance(&gate_class).unwrap_or(false))
        {
            continue;
        }
        let mut inner = current.filter(|c| !c.is_none());
        if inner.is_none() {
            for hook in sys.getattr("path_hooks")?.try_iter()? {
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
        if let Some(inner) = inner {
            cache.set_item(path, gate_class.call1((path, inner, &gate))?)?;
        }
    }
    Ok(())
}

// ---- environment ----------------------------------------------------------------------

/// A copy of `os.environ`'s encoded data (C-level dict copy, cheap to compare).
fn env_snapshot(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let environ = interp::get(py)?.environ.bind(py);
    match environ.getattr(intern!(py, "_data")) {
        Ok(data) => Ok(data.cast_into::<PyDict>()?.copy()?.into_any().unbind()),
        Err(_) => Ok(PyDict::new(py).into_any().unbind()),
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

fn env_restore(py: Python<'_>, snapshot: &Bound<'_, PyAny>) -> PyResult<()> {
    let now = env_snapshot(py)?;
    if now.bind(py).eq(snapshot)? {
        return Ok(());
    }
    let target = env_decode(py, snapshot)?;
    env_set(py, &target)
}

/// Changes the block made to the environment: (key, new value or None if deleted).
fn env_changes(
    py: Python<'_>,
    applied: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, Option<String>)>> {
    let now = env_snapshot(py)?;
    let now = now.bind(py);
    if now.eq(applied)? {
        return Ok(Vec::new());
    }
    let before: HashMap<String, String> = env_decode(py, applied)?.into_iter().collect();
    let after: HashMap<String, String> = env_decode(py, now)?.into_iter().collect();
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

fn apply_env(
    py: Python<'_>,
    session: &SessionCore,
    outermost_saved: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(String, String)>> {
    let (env, inherit) = {
        let st = session.lock(py);
        (st.settings.env.clone(), st.settings.inherit_env)
    };
    let environ = interp::get(py)?.environ.bind(py);
    if inherit && outermost_saved.is_none() {
        for (k, v) in &env {
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
        for (k, v) in &env {
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

pub fn enter(core: &Bound<'_, SessionCore>) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    session.ensure_open(py)?;
    let reentered = STACK.with(|s| {
        s.borrow()
            .last()
            .is_some_and(|(_, c)| std::ptr::eq(c.get(), session))
            .then(|| s.borrow().last().map(|(id, _)| *id))
            .flatten()
    });
    let mut locked = lock(py);
    if let Some(id) = reentered {
        if let Some(f) = locked.state().frames.get_mut(&id) {
            f.depth += 1;
            return Ok(());
        }
    }
    let result = enter_locked(core, &mut locked);
    let garbage = std::mem::take(&mut locked.garbage);
    drop(locked);
    drop(garbage);
    result
}

fn enter_locked(core: &Bound<'_, SessionCore>, locked: &mut Locked<'_>) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    let mods = interp::sys_modules(py);
    let sys_path = interp::sys_path(py)?;
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    if !is_active() {
        let base = live_path(py)?;
        st.legit = base.iter().cloned().collect();
        st.base_path = Some(base);
    }
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    let outcome = (|| -> PyResult<u64> {
        st.scan(&mods, &mut garbage)?;
        st.next_id += 1;
        let id = st.next_id;
        let below = top_frame_id();
        let outermost_saved = STACK.with(|s| s.borrow().first().map(|(id, _)| *id));
        st.frames.insert(
            id,
            Frame {
                session: core.clone().unbind(),
                depth: 0,
                saved_path: PyList::new(py, sys_path.iter())?.unbind(),
                applied_path: Vec::new(),
                saved_env: env_snapshot(py)?,
                applied_env: py.None(),
                c_only: Vec::new(),
                own: Owned::default(),
            },
        );
        // The session's modules, dropping names whose module left sys.modules.
        let mut names: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
        let (extras, paths) = {
            let mut ss = session.lock(py);
            let mut gone = Vec::new();
            for (real, key) in &ss.modules {
                match mods.get_item(key.bind(py))? {
                    Some(m) => names.push((real.clone(), m)),
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
            (extras, ss.settings.paths.clone())
        };
        let own_names: HashSet<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        // Hide what the frame below shows that this session lacks (A-B-A nesting).
        if let Some(below) = below {
            let shown: Vec<String> = st
                .frames
                .get(&below)
                .map(|f| {
                    f.own
                        .order
                        .iter()
                        .filter(|n| f.own.map.get(*n).is_some_and(|m| m.is_some()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for n in shown {
                if !own_names.contains(n.as_str()) {
                    st.push(&mods, id, &n, None, &mut garbage)?;
                }
            }
        }
        for (n, m) in &names {
            st.push(&mods, id, n, Some(m), &mut garbage)?;
        }
        for (n, m) in &extras {
            st.push(&mods, id, n, Some(m.bind(py)), &mut garbage)?;
        }
        // Hide the rest of every global package this session shadows.
        let tops: HashSet<&str> = names.iter().map(|(n, _)| policy::top_level(n)).collect();
        let extra_names: HashSet<&str> = extras.iter().map(|(n, _)| n.as_str()).collect();
        for top in tops {
            let keys: Vec<String> = st
                .by_top
                .get(top)
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            for k in keys {
                if own_names.contains(k.as_str()) || extra_names.contains(k.as_str()) {
                    continue;
                }
                let Some(g) = mods.get_item(&k)? else {
                    continue;
                };
                if !is_session_module(&g) && !is_extension(py, &g) && !session.is_shared(py, &k) {
                    st.push(&mods, id, &k, None, &mut garbage)?;
                }
            }
        }
        let base = st.base_path.clone().unwrap_or_default();
        drop(names);
        let search = search_path_from(py, session, &base)?;
        gate_paths(py, &paths)?;
        sys_path.call_method1(
            "__setitem__",
            (pyo3::types::PySlice::full(py), PyList::new(py, &search)?),
        )?;
        let saved = outermost_saved
            .and_then(|o| st.frames.get(&o))
            .map(|f| f.saved_env.clone_ref(py));
        let c_only = apply_env(py, session, saved.as_ref().map(|s| s.bind(py)))?;
        let applied_env = env_snapshot(py)?;
        if let Some(f) = st.frames.get_mut(&id) {
            f.applied_path = search;
            f.applied_env = applied_env;
            f.c_only = c_only;
        }
        st.move_marker(&mods)?;
        Ok(id)
    })();
    locked.garbage = garbage;
    let st = locked.state();
    match outcome {
        Ok(id) => {
            STACK.with(|s| s.borrow_mut().push((id, core.clone().unbind())));
            session.lock(py).frames.push(id);
            Ok(())
        }
        Err(e) => {
            // Undo a half-done activation; the original error is what the user needs.
            let id = st.next_id;
            if st.frames.contains_key(&id) {
                let mut garbage = std::mem::take(&mut locked.garbage);
                let _ = leave_frame(py, locked.state(), id, session, &mods, &mut garbage);
                locked.garbage = garbage;
            } else {
                ACTIVE.fetch_sub(1, Ordering::AcqRel);
            }
            Err(e)
        }
    }
}

/// The session's search path given the global base path.
pub fn search_path_from(
    py: Python<'_>,
    session: &SessionCore,
    base: &[String],
) -> PyResult<Vec<String>> {
    let it = interp::get(py)?;
    let st = session.lock(py);
    let mut out: Vec<String> = st.settings.paths.clone();
    for p in base {
        if !out.contains(p)
            && (st.settings.inherit_paths || policy::is_stdlib_path(p, &it.stdlib_dirs))
        {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn exit(core: &Bound<'_, SessionCore>) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    let top = STACK.with(|s| {
        s.borrow()
            .last()
            .map(|(id, c)| (*id, std::ptr::eq(c.get(), session)))
    });
    let id = match top {
        Some((id, true)) => id,
        Some((_, false)) => {
            return Err(SessionError::new_err(format!(
                "cannot leave session {}: another session entered after it is still active; \
                 leave the inner session first",
                session.label()
            )));
        }
        None => {
            return Err(SessionError::new_err(format!(
                "session {} is not active on this thread; call exit() only after enter()",
                session.label()
            )));
        }
    };
    let mut locked = lock(py);
    if let Some(f) = locked.state().frames.get_mut(&id) {
        if f.depth > 0 {
            f.depth -= 1;
            return Ok(());
        }
    }
    let mods = interp::sys_modules(py);
    let mut garbage = std::mem::take(&mut locked.garbage);
    let result = leave_frame(py, locked.state(), id, session, &mods, &mut garbage);
    drop(locked);
    drop(garbage);
    result
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
    let (order, own_values): (Vec<String>, Vec<Option<Py<PyAny>>>) = match st.frames.get(&id) {
        Some(f) => (
            f.own.order.clone(),
            f.own
                .order
                .iter()
                .map(|n| {
                    f.own
                        .map
                        .get(n)
                        .and_then(|m| m.as_ref().map(|m| m.clone_ref(py)))
                })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    for (name, shown) in order.iter().zip(own_values).rev() {
        keep((|| {
            let current = mods.get_item(name)?;
            let qualified = mods.get_item(session.qualified(name))?;
            let shown = shown.map(|m| m.into_bound(py));
            if let Some(m) = &shown {
                if !same(qualified.as_ref(), Some(m)) {
                    // An extra (a real-name key of session code), not an alias.
                    let mut ss = session.lock(py);
                    if same(current.as_ref(), Some(m)) {
                        ss.extras.insert(name.clone(), m.clone().unbind());
                    } else {
                        ss.extras.remove(name);
                    }
                }
            }
            if let Some(cur) = &current {
                let replaced = !same(Some(cur), shown.as_ref())
                    && !same(Some(cur), qualified.as_ref())
                    && session_of(py, cur).is_some_and(|s| std::ptr::eq(s.get(), session));
                if replaced {
                    // Block code replaced our entry in place: it stays the session's.
                    session
                        .lock(py)
                        .extras
                        .insert(name.clone(), cur.clone().unbind());
                }
            }
            st.pop(mods, id, name, garbage)
        })());
    }
    if let Some(frame) = st.frames.remove(&id) {
        keep(capture_changes(py, session, &frame));
        keep((|| {
            let sys_path = interp::sys_path(py)?;
            sys_path.call_method1(
                "__setitem__",
                (pyo3::types::PySlice::full(py), frame.saved_path.bind(py)),
            )?;
            Ok(())
        })());
        keep(env_restore(py, frame.saved_env.bind(py)));
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
        st.base_path = None;
        match live_path(py) {
            Ok(p) => st.legit = p.into_iter().collect(),
            Err(e) => keep(Err(e)),
        }
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
    let env_changes = if frame.applied_env.is_none(py) {
        Vec::new()
    } else {
        env_changes(py, frame.applied_env.bind(py))?
    };
    let added: Vec<String> = live_path(py)?
        .into_iter()
        .filter(|p| !frame.applied_path.contains(p))
        .collect();
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
    let Some((id, is_ours)) = STACK.with(|s| {
        s.borrow()
            .last()
            .map(|(id, c)| (*id, std::ptr::eq(c.get(), session)))
    }) else {
        return Ok(false);
    };
    if !is_ours {
        return Ok(false);
    }
    let mods = interp::sys_modules(py);
    let mut locked = lock(py);
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    let visible = mods.get_item(name)?;
    let owned = st
        .frames
        .get(&id)
        .and_then(|f| f.own.get(py, name))
        .flatten();
    let result = if !same(visible.as_ref(), Some(module)) || !same(owned.as_ref(), Some(module)) {
        st.push(&mods, id, name, Some(module), &mut garbage)
    } else {
        Ok(())
    };
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
        let hidden = lock(py).state().hidden.get(name).map(|m| m.clone_ref(py));
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
        let mut locked = lock(py);
        let st = locked.state();
        for n in names {
            *st.reserved.entry(n.clone()).or_default() += 1;
            if st.owners.contains_key(n) {
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
    let mut locked = lock(py);
    let mut garbage = std::mem::take(&mut locked.garbage);
    let st = locked.state();
    for n in names {
        let left = st.reserved.get(n).copied().unwrap_or(1).saturating_sub(1);
        if left > 0 {
            st.reserved.insert(n.clone(), left);
            continue;
        }
        st.reserved.remove(n);
        if st.owners.contains_key(n) {
            if let Some(g) = mods.get_item(n)?.filter(|g| !is_session_module(g)) {
                // A global loaded meanwhile stays hidden from the blocks.
                st.hidden.insert(n.clone(), g.unbind());
            }
            st.apply(&mods, n, &mut garbage)?;
        }
    }
    drop(locked);
    drop(garbage);
    result
}

/// Forgets every alias and capture of a closing session (it is not active anywhere).
pub fn forget_session(py: Python<'_>, session: &SessionCore) {
    let mut locked = lock(py);
    let st = locked.state();
    let prefix = session.prefix_dot.clone();
    st.hidden
        .retain(|_, m| module_name(m.bind(py)).is_none_or(|n| !n.starts_with(&prefix)));
}

/// The number of this thread's activations (for tests and `current()`).
pub fn depth() -> usize {
    STACK.with(|s| s.borrow().len())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gate_open, m)?)?;
    Ok(())
}
