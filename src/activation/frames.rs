//! Entering and leaving a block: the steps of `enter` and `exit` in order, on top of
//! the alias table, the path and environment patches and this thread's stack.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::environment::{
    apply_env, changes_since, clear_journal, compact, install_hooks, mark, revert_since,
};
use super::paths::{cache_finders, gate_paths, search_path_from};
use super::stack::{
    ACTIVE, EPOCH, STACK, innermost_frame_of, is_active, left_elsewhere, top_frame_id, top_frame_of,
};
use super::table::{
    Aliases, FOREIGN_PATCHES, Frame, Owned, imports_in_flight, lock, other_threads_active,
};
use crate::base::errors::SessionError;
use crate::base::interp;
use crate::base::names::same;
use crate::state::SessionCore;

// ---- enter / exit -----------------------------------------------------------------------

/// Enters a block of `core` on this thread; returns the token `exit` takes.
pub(crate) fn enter(core: &Bound<'_, SessionCore>) -> PyResult<u64> {
    let py = core.py();
    let session = core.get();
    session.ensure_open(py)?;
    let reentered = top_frame_of(session);
    if reentered.is_none() {
        let paths = session.lock(py).settings.paths.clone();
        cache_finders(py, &paths)?;
        install_hooks(py)?;
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
                    st.base_env = None;
                    clear_journal();
                }
            }
        }
    }
    drop(locked);
    drop(garbage);
    result.map(|()| id)
}

pub(super) fn enter_frame(
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
        st.base_env = Some(mark());
    }
    st.scan(mods, garbage)?;
    let below = top_frame_id();
    let outermost = STACK.with(|s| s.borrow().first().map(|(id, _)| *id));
    // sys.path and os.environ are process-wide: with blocks of other threads
    // overlapping, the current values may be theirs, so an outermost frame saves
    // (and later restores) the global state from before the first activation.
    let (saved_path, saved_env) = match (below, &st.base, st.base_env) {
        (None, Some(base), Some(env)) if !first => {
            (PyList::new(py, base.list.bind(py).iter())?.unbind(), env)
        }
        _ => (PyList::new(py, sys_path.iter())?.unbind(), mark()),
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
            applied_env: saved_env,
            own: Owned::default(),
        },
    );
    // A block shows the session's modules under their real names lazily: each name
    // when an import in the block resolves it (the hooks, the finder and the C-API
    // handlers alias what they return), so entering costs the same for 10 modules or
    // 1,600. Registrations the session's code made by real name (`extras`) are few and
    // shown at once: nothing resolves them through an import.
    let (extras, paths, env, inherit_env, cached_search) = {
        let ss = session.lock(py);
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
    // Hide what the frame below shows (A-B-A nesting): this block's imports show its
    // own session's modules again, one by one.
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
        for (n, key) in shown {
            st.push(mods, id, &n, key.bind(py), None, None, true, false, garbage)?;
        }
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
            false,
            garbage,
        )?;
    }
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
    // A nested block applies its variables on the environment from before the
    // outermost block, as does a block overlapping another thread's.
    let rebase = outermost
        .and_then(|o| st.frames.get(&o))
        .map(|f| f.saved_env)
        .or_else(|| {
            overlapped
                .then(|| st.frames.get(&id).map(|f| f.saved_env))
                .flatten()
        });
    apply_env(py, &env, inherit_env, rebase)?;
    let applied_env = mark();
    let applied_path = PyList::new(py, sys_path.iter())?.unbind();
    if let Some(f) = st.frames.get_mut(&id) {
        f.applied_path = applied_path;
        f.applied_env = applied_env;
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

/// Leaves a block of `core`. `token` is what `enter` returned for that block, when the
/// caller kept it (the facade does): it names the frame even when the block is left
/// on another thread than the one that entered it, which is what happens to a `with`
/// block inside a generator closed elsewhere. Without a token, this thread's
/// innermost block of the session is meant, else the newest one on another thread.
///
/// A frame with blocks of its own thread entered after it still open is not left at
/// once (that would undo their state): it is marked and left as soon as they end.
/// Returns the token of the block it left (or marked).
pub(crate) fn exit(core: &Bound<'_, SessionCore>, token: Option<u64>) -> PyResult<u64> {
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
pub(super) fn leave_orphans(
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
pub(super) fn leave_frame(
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
                    let dropped = if same(current.as_ref(), Some(m)) {
                        ss.extras.insert(name.to_string(), m.clone().unbind())
                    } else {
                        ss.extras.remove(name.as_ref())
                    };
                    drop(ss);
                    // Dropped once no lock is held: a finaliser may import.
                    garbage.extend(dropped);
                }
            }
            if let Some(cur) = &current {
                let replaced = !same(Some(cur), shown.as_ref())
                    && session.owns(cur)
                    && !same(Some(cur), qualified_module()?.as_ref());
                if replaced {
                    // Block code replaced our entry in place: it stays the session's.
                    let dropped = session
                        .lock(py)
                        .extras
                        .insert(name.to_string(), cur.clone().unbind());
                    garbage.extend(dropped);
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
        keep(revert_since(py, frame.saved_env));
        garbage.push(frame.session.into_any());
    }
    if ACTIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        st.base = None;
        st.base_env = None;
        clear_journal();
    } else {
        let mut marks: Vec<u64> = st
            .frames
            .values()
            .flat_map(|f| [f.saved_env, f.applied_env])
            .chain(st.base_env)
            .collect();
        compact(&mut marks);
    }
    keep(st.move_marker(mods));
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Changes the block made to the environment and `sys.path` belong to the session:
/// they are seen again on its next activation.
pub(super) fn capture_changes(
    py: Python<'_>,
    session: &SessionCore,
    frame: &Frame,
) -> PyResult<()> {
    let env_changes = changes_since(py, frame.applied_env)?;
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
