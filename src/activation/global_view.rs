//! The global view: what threads without a block see under a real name while other
//! threads' blocks show their sessions' modules there.

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::stack::top_frame_id;
use super::table::lock;
use crate::base::interp;
use crate::base::names::{is_initializing, is_session_module};

// ---- the global view for threads without an activation ---------------------------------

/// The global module under a real name as threads without an activation must see it;
/// `None` means: take the slow path.
pub(crate) fn global_view<'py>(py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    global_view_keyed(py, &PyString::new(py, name), name)
}

/// [`global_view`] given the name's string object too (an import statement's own
/// name: its hash is known, no string is made).
pub(crate) fn global_view_keyed<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyString>,
    name: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let mods = interp::sys_modules(py);
    let mut module = mods.get_item(key)?.filter(|m| !is_session_module(m));
    if module.is_none() {
        let hidden = lock(py)?.state().hidden.get(name).map(|m| m.clone_ref(py));
        module = match hidden {
            Some(h) => Some(h.into_bound(py)),
            // A block's exit restored it meanwhile: read again.
            None => mods.get_item(key)?.filter(|m| !is_session_module(m)),
        };
    }
    Ok(module.filter(|m| !is_initializing(m)))
}

/// Counts a load by a thread without an activation that reached the import system
/// without the `__import__` hook (C code importing by `PyImport_ImportModuleLevel`):
/// keys it adds to sys.modules during a block are then never taken for the block's.
pub(crate) fn count_global_load(py: Python<'_>) -> PyResult<()> {
    lock(py)?.state().global_loads += 1;
    Ok(())
}

/// Runs a load for a thread without an activation while its names show the global view.
pub(crate) fn with_global_view<'py>(
    py: Python<'py>,
    names: &[String],
    load: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mods = interp::sys_modules(py);
    // A block's own thread loading a global (a `keep_global` name): what its code
    // registered before is attributed first, and what this load adds is a global
    // (the counter moved), never the block's.
    let own_block = top_frame_id().is_some();
    let mut early_garbage: Vec<Py<PyAny>> = Vec::new();
    {
        let mut locked = lock(py)?;
        early_garbage.append(&mut locked.garbage);
        let st = locked.state();
        if own_block {
            st.scan(&mods, &mut early_garbage)?;
        }
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
    if own_block {
        st.scan(&mods, &mut garbage)?;
    }
    drop(locked);
    drop(garbage);
    drop(early_garbage);
    result
}
