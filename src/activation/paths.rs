//! `sys.path` during blocks: the frozen base path threads without a block search, the
//! session's search path, a block's own live edits, and the gates that hide a
//! session's folders from threads without that session active.

use std::collections::HashSet;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::stack::{is_active, top_frame_of, top_session};
use super::table::{Aliases, Base, lock};
use crate::base::names::PREFIX;
use crate::base::{interp, policy};
use crate::state::SessionCore;

impl Aliases {
    /// Freezes the global sys.path for the time blocks are active (reusing the last
    /// snapshot while sys.path did not change).
    pub(super) fn freeze_base(&mut self, sys_path: &Bound<'_, PyList>) -> PyResult<()> {
        let py = sys_path.py();
        if let Some(last) = &self.last_base {
            if last.list.bind(py).eq(sys_path)? {
                self.base = Some(last.clone());
                return Ok(());
            }
        }
        let strings: Vec<String> = sys_path
            .iter()
            .filter_map(|p| p.extract::<String>().ok())
            .collect();
        self.next_generation += 1;
        let base = Arc::new(Base {
            list: PyList::new(py, sys_path.iter())?.unbind(),
            legit: strings.iter().cloned().collect(),
            strings,
            generation: self.next_generation,
        });
        self.last_base = Some(base.clone());
        self.base = Some(base);
        Ok(())
    }
}

/// `sys.path` as the global code sees it: the pre-activation snapshot while any block
/// is active, else the live list.
pub(crate) fn base_path(py: Python<'_>) -> PyResult<Vec<String>> {
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
pub(crate) fn live_path_of<'py>(
    core: &Bound<'py, SessionCore>,
) -> PyResult<Option<Bound<'py, PyList>>> {
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
/// The generation of the frozen base path while blocks are active.
fn base_generation(py: Python<'_>) -> Option<u64> {
    lock(py).ok()?.state().base.as_ref().map(|b| b.generation)
}

/// `sys.path_importer_cache` entry for a session-only path entry: while blocks are
/// active it answers only threads whose active session holds the entry. In Rust, as
/// the path finder asks it for every import that searches the entry.
#[pyclass(frozen, module = "subsession._core")]
pub(crate) struct DirGate {
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    inner: Py<PyAny>,
}

#[pymethods]
impl DirGate {
    #[pyo3(signature = (fullname, target=None))]
    fn find_spec<'py>(
        &self,
        py: Python<'py>,
        fullname: &str,
        target: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !gate_open(py, &self.path, fullname) {
            return Ok(None);
        }
        let spec = self
            .inner
            .bind(py)
            .call_method1(intern!(py, "find_spec"), (fullname, target))?;
        Ok(Some(spec).filter(|s| !s.is_none()))
    }

    fn invalidate_caches(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.bind(py);
        if let Ok(invalidate) = inner.getattr(intern!(py, "invalidate_caches")) {
            invalidate.call0()?;
        }
        Ok(())
    }

    /// `pkgutil.iter_modules` support: the inner finder's modules, for the threads
    /// the gate is open to.
    #[pyo3(signature = (prefix=""))]
    fn iter_modules<'py>(&self, py: Python<'py>, prefix: &str) -> PyResult<Bound<'py, PyAny>> {
        if gate_open(py, &self.path, "") {
            return py.import(intern!(py, "pkgutil"))?.call_method1(
                intern!(py, "iter_importer_modules"),
                (self.inner.bind(py), prefix),
            );
        }
        PyList::empty(py).try_iter().map(Bound::into_any)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.inner)
    }

    fn __repr__(&self) -> String {
        format!("<subsession path gate {:?}>", self.path)
    }
}

/// The path gate: may `fullname` be searched for in the session-only entry `path`?
#[pyfunction]
pub(crate) fn gate_open(py: Python<'_>, path: &str, fullname: &str) -> bool {
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
pub(super) fn cache_finders(py: Python<'_>, paths: &[String]) -> PyResult<()> {
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
pub(super) fn gate_paths(py: Python<'_>, st: &mut Aliases, paths: &[String]) -> PyResult<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let sys = interp::get(py)?.sys.bind(py);
    let cache = sys.getattr(intern!(py, "path_importer_cache"))?;
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
        let gate = Bound::new(
            py,
            DirGate {
                path: path.clone(),
                inner: inner.unbind(),
            },
        )?
        .into_any();
        cache.set_item(path, &gate)?;
        st.gates.insert(path.clone(), gate.unbind());
    }
    Ok(())
}
/// The session's search path given the global base path.
pub(super) fn search_path_from(
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

/// The session's search path: its own paths, then the global ones (or only the
/// standard library's with `inherit_paths=False`).
pub(crate) fn search_path(py: Python<'_>, session: &SessionCore) -> PyResult<Vec<String>> {
    let base = base_path(py)?;
    search_path_from(py, session, &base)
}

/// The search path as a list, for the finder: cached while the global `sys.path` (or,
/// during blocks, the frozen base path) is unchanged.
pub(crate) fn search_path_list<'py>(
    py: Python<'py>,
    session: &SessionCore,
) -> PyResult<Bound<'py, PyList>> {
    if is_active() {
        let generation = base_generation(py);
        let cached = session
            .lock(py)
            .search_cache
            .as_ref()
            .filter(|(g, _)| Some(*g) == generation)
            .map(|(_, l)| l.clone_ref(py));
        return match cached {
            Some(list) => Ok(list.into_bound(py)),
            None => PyList::new(py, search_path(py, session)?),
        };
    }
    let live = interp::sys_path(py)?;
    let cached = session
        .lock(py)
        .live_cache
        .as_ref()
        .map(|(copy, list)| (copy.clone_ref(py), list.clone_ref(py)));
    if let Some((copy, list)) = cached {
        if copy.bind(py).eq(&live)? {
            return Ok(list.into_bound(py));
        }
    }
    let copy = PyList::new(py, live.iter())?;
    let list = PyList::new(py, search_path(py, session)?)?;
    session.lock(py).live_cache = Some((copy.unbind(), list.clone().unbind()));
    Ok(list)
}
