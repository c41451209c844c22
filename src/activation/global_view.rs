//! The global view: what threads without a block see under a real name while other
//! threads' blocks show their sessions' modules there.

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::table::lock;
use crate::base::interp;
use crate::base::names::{is_initializing, is_session_module};

// ---- the global view for threads without an activation ---------------------------------

/// The global module under a real name as threads without an activation must see it;
/// `None` means: take the slow path.
pub(crate) fn global_view<'py>(py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
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
pub(crate) fn with_global_view<'py>(
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
