//! The marker scan: what appeared in `sys.modules` since the engine last looked.
//!
//! `sys.modules` is never scanned whole or copied: a marker key is moved to the end at
//! every activation change, so the keys after it are the new ones. A new key holding
//! a session module is aliased for its block (or captured as the session's); a new
//! real-name key a block's own code registered belongs to that block; anything else is
//! a global, indexed by top-level package so blocks can hide the rest of a package
//! they shadow.

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyString};
use rustc_hash::FxHashSet;

use super::stack::{STACK, innermost_frame_of, is_active, top_frame_of};
use super::table::{Aliases, Claim, alias_if_active, imported_elsewhere_now, lock};
use crate::base::interp;
use crate::base::names::{
    PREFIX, imported_module, is_session_module, module_name_py, prefix_py, starts_with, top_level,
};
use crate::state::{SessionCore, registry};

pub(super) const MARKER: &str = "__subsession_mark__";
pub(super) fn session_of(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Option<Py<SessionCore>> {
    let name = module_name_py(obj)?;
    if !starts_with(&name, prefix_py(py)) {
        return None;
    }
    registry::owner_of(py, &name.to_cow().ok()?)
}

impl Aliases {
    pub(super) fn move_marker(&mut self, mods: &Bound<'_, PyDict>) -> PyResult<()> {
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
        self.raced_at_mark = imported_elsewhere_now(py);
        Ok(())
    }

    /// Indexes the keys added to sys.modules since the marker (all keys if it vanished).
    pub(super) fn scan(
        &mut self,
        mods: &Bound<'_, PyDict>,
        garbage: &mut Vec<Py<PyAny>>,
    ) -> PyResult<()> {
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
        let raced = std::mem::take(&mut self.raced_at_mark);
        self.move_marker(mods)?;
        // Oldest first: a registered package is owned before its submodules.
        for key in new_keys.into_iter().rev() {
            if let Ok(key) = key.cast_into::<PyString>() {
                self.note(mods, &key, registrar.as_ref(), &raced, garbage)?;
            }
        }
        Ok(())
    }

    /// Records that frame `id` of `session` owns the real-name key its code put into
    /// sys.modules: the block's imports get it, and it leaves with the block.
    pub(super) fn note_registration(
        &mut self,
        mods: &Bound<'_, PyDict>,
        (id, session): (u64, &SessionCore),
        key: &Bound<'_, PyString>,
        name: &str,
        value: &Bound<'_, PyAny>,
        raced: &FxHashSet<String>,
    ) -> PyResult<bool> {
        let py = mods.py();
        if name.starts_with(PREFIX)
            || name == MARKER
            || session.is_shared(py, name)
            || session.adopts(py, name)
        {
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
        if imported_module(value, name) && raced.contains(name) {
            // What another thread's import produced, not a registration: it began
            // before the marker moved (no hook saw it) and must stay global. Only
            // under a package the block registered (jinja2's compiled templates).
            // Any other import-made module that appears here was made by this
            // block's thread (pytest's importlib mode: `module_from_spec`, then
            // `sys.modules[name] = module`): other threads' loads during the block
            // are counted (`global_loads`) and leave no registrar.
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
    pub(super) fn is_registration(
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

    pub(super) fn note(
        &mut self,
        mods: &Bound<'_, PyDict>,
        key: &Bound<'_, PyString>,
        registrar: Option<&(u64, Py<SessionCore>)>,
        raced: &FxHashSet<String>,
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
                if self.note_registration(mods, (*id, owner.get()), key, &name, &value, raced)? {
                    return Ok(());
                }
            }
            // A global: indexed so blocks can hide the rest of a package they shadow.
            self.by_top
                .entry(top_level(&name).to_owned())
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
        // A session module filed under its own real name (Cython modules register
        // themselves so): an alias like those imports make, not an extra to show on
        // every entry; the block's imports show it again when they need it.
        let qualified = PyString::new(py, &session.get().qualified(&name));
        let own = mods
            .get_item(&qualified)?
            .is_some_and(|m| m.is(&value))
            .then_some(qualified);
        match self.frame_for(py, session.get()) {
            // Leaves sys.modules with that block.
            Some(frame) => {
                let name: Arc<str> = Arc::from(name.as_ref());
                self.push(
                    mods,
                    frame,
                    &name,
                    key,
                    Some(&value),
                    own.as_ref(),
                    false,
                    false,
                    garbage,
                )?
            }
            None if own.is_some() => {
                // Its own real name, outside any block: never left global.
                garbage.push(value.unbind());
                mods.del_item(key)?;
            }
            None => {
                // Written outside any block: captured, never left global.
                let replaced = session
                    .get()
                    .lock(py)
                    .extras
                    .insert(name.to_string(), value.clone().unbind());
                // A replaced value is dropped once no lock is held (its finaliser may
                // import through this very session).
                garbage.extend(replaced);
                garbage.push(value.unbind());
                mods.del_item(key)?;
            }
        }
        Ok(())
    }

    pub(super) fn frame_for(&self, py: Python<'_>, session: &SessionCore) -> Option<u64> {
        innermost_frame_of(session).or_else(|| session.lock(py).frames.last().copied())
    }
}

/// True when `real` is a key the code of this thread's innermost block (a block of
/// `core`) put into sys.modules: the block's import of it must get that object.
pub(crate) fn is_block_registration(core: &Bound<'_, SessionCore>, real: &str) -> PyResult<bool> {
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
pub(crate) fn subtree_values(py: Python<'_>, real: &str) -> PyResult<Vec<(String, Py<PyAny>)>> {
    let dotted = format!("{real}.");
    let mods = interp::sys_modules(py);
    let mut locked = lock(py)?;
    let mut garbage = std::mem::take(&mut locked.garbage);
    // Indexes the keys added so far and moves the marker: `mirror_registered_submodules`
    // then walks only the keys this extension's init adds, not every key added since
    // the block began (O(modules imported in the block) per extension otherwise).
    let scanned = if is_active() {
        locked.state().scan(&mods, &mut garbage)
    } else {
        Ok(())
    };
    let keys: Vec<String> = locked
        .state()
        .by_top
        .get(top_level(real))
        .map(|keys| {
            keys.iter()
                .filter(|k| k.starts_with(&dotted))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    drop(locked);
    drop(garbage);
    scanned?;
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
pub(crate) fn mirror_registered_submodules(
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
