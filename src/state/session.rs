//! One session's record: its settings, its module bookkeeping, its locks.
//!
//! The facade (`subsession.Session`) owns a `SessionCore`; the core keeps a reference
//! back so the registry can hand out the facade object users created. What the record
//! does is elsewhere: activation enters it, imports fill it, reload and unload empty it;
//! its Python methods are in `bindings::session`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyList, PyString};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::base::errors::{ClosedSessionError, SessionError};
use crate::base::interp;
use crate::base::names::module_in;
use crate::base::policy::{self, Patterns};
use crate::tracking::Tracking;

/// Settings a session is created with (and `configure` replaces).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) paths: Vec<String>,
    pub(crate) env: Vec<(String, Option<String>)>,
    pub(crate) keep_global: Patterns,
    pub(crate) inherit_env: bool,
    pub(crate) inherit_paths: bool,
}

/// Mutable state of one session.
pub(crate) struct State {
    pub(crate) settings: Settings,
    /// Real names that have a qualified module in `sys.modules`, with the qualified
    /// key made once (lookups by it compare pointers).
    pub(crate) modules: BTreeMap<String, ModuleKeys>,
    /// Other real-name keys holding this session's modules (`requests.packages.*`):
    /// written by session code, captured out of the global namespace on exit.
    pub(crate) extras: FxHashMap<String, Py<PyAny>>,
    /// Activation frames of this session on any thread (ids, innermost last).
    pub(crate) frames: Vec<u64>,
    pub(crate) closed: bool,
    /// Import graph and file stamps, for stale detection and dependency order.
    pub(crate) tracking: Tracking,
    /// The search path computed for a base path generation (see activation).
    pub(crate) search_cache: Option<(u64, Py<PyList>)>,
    /// The search path computed for a copy of the live `sys.path` (no block active).
    pub(crate) live_cache: Option<(Py<PyList>, Py<PyList>)>,
    /// Per real module name, what its classes' bodies defined when its code last ran
    /// (`imports::record::class_bodies`): a deep reload removes only those names.
    pub(crate) bodies: FxHashMap<String, Py<PyDict>>,
    /// Import statements of session code not yet turned into graph edges: kept as the
    /// statement's own objects, so an import pays a few reference counts, and settled
    /// (`imports::record::settle_imports`) when a reload asks for an order.
    pub(crate) pending_imports: Vec<PendingImport>,
    /// The statements in `pending_imports`, by the addresses of their three objects:
    /// a statement run again (a function-level import in a loop) is logged once. The
    /// log holds the objects, so no address is reused while it is in this set.
    pub(crate) pending_seen: FxHashSet<(usize, usize, usize)>,
}

/// One import statement of session code, as it ran.
pub(crate) struct PendingImport {
    /// The importer's `__name__` (qualified, or not this session's: then ignored).
    pub(crate) importer: Py<PyAny>,
    /// The imported module's name: real for an absolute import, the resolved
    /// module's qualified `__name__` for a relative one.
    pub(crate) base: Py<PyAny>,
    pub(crate) relative: bool,
    /// The statement's fromlist, if any.
    pub(crate) fromlist: Option<Py<PyAny>>,
}

pub(crate) struct ModuleKeys {
    pub(crate) qualified: Py<PyString>,
}

thread_local! {
    /// The sessions whose state this thread holds (a few at most).
    static HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn held_here(key: usize) -> bool {
    HELD.try_with(|h| h.borrow().contains(&key))
        .unwrap_or(false)
}

/// A session's state, taken with [`SessionCore::try_lock`].
pub(crate) struct StateGuard<'a> {
    guard: std::sync::MutexGuard<'a, State>,
    key: usize,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let key = self.key;
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|&k| k == key) {
                h.swap_remove(i);
            }
        });
    }
}

#[pyclass(frozen, module = "subsession._core")]
pub(crate) struct SessionCore {
    pub(crate) prefix: String,
    pub(crate) prefix_dot: String,
    /// `prefix_dot` as a Python string, for allocation-free prefix checks.
    pub(crate) prefix_dot_py: Py<PyString>,
    pub(crate) name: Option<String>,
    pub(crate) facade: Py<PyAny>,
    /// The `__builtins__` of this session's code: `__import__` routes here.
    pub(crate) builtins: Py<PyDict>,
    /// Globals of `Session.exec`.
    pub(crate) namespace: Py<PyDict>,
    pub(crate) importlib_proxy: std::sync::OnceLock<Py<PyAny>>,
    pub(crate) pkgutil_proxy: std::sync::OnceLock<Py<PyAny>>,
    pub(crate) state: Mutex<State>,
}

impl SessionCore {
    /// A fresh record: its own copy of the builtins (whose `__import__` the import
    /// layer replaces) and an empty `exec` namespace.
    pub(crate) fn new(
        py: Python<'_>,
        facade: Py<PyAny>,
        name: Option<String>,
        settings: Settings,
        prefix: &str,
    ) -> PyResult<SessionCore> {
        let builtins = interp::get(py)?.builtins_dict.bind(py).copy()?;
        let namespace = PyDict::new(py);
        namespace.set_item("__name__", format!("{prefix}.__main__"))?;
        namespace.set_item("__builtins__", &builtins)?;
        Ok(SessionCore {
            prefix_dot: format!("{prefix}."),
            prefix_dot_py: PyString::intern(py, &format!("{prefix}.")).unbind(),
            prefix: prefix.to_owned(),
            name,
            facade,
            builtins: builtins.unbind(),
            namespace: namespace.unbind(),
            importlib_proxy: std::sync::OnceLock::new(),
            pkgutil_proxy: std::sync::OnceLock::new(),
            state: Mutex::new(State {
                settings,
                modules: BTreeMap::new(),
                extras: FxHashMap::default(),
                frames: Vec::new(),
                closed: false,
                tracking: Tracking::default(),
                search_cache: None,
                live_cache: None,
                bodies: FxHashMap::default(),
                pending_imports: Vec::new(),
                pending_seen: FxHashSet::default(),
            }),
        })
    }

    /// Takes this session's state. Python code can run while it is held (a logging
    /// handler of a message logged under it, a finaliser run by a collection), and
    /// such code may use the session again on the same thread: that is refused with a
    /// one-line error instead of waiting forever on ourselves.
    pub(crate) fn try_lock(&self, py: Python<'_>) -> PyResult<StateGuard<'_>> {
        let key = self as *const SessionCore as usize;
        if held_here(key) {
            return Err(SessionError::new_err(format!(
                "session {} is busy on this thread (code run by a logging handler, \
                 finaliser or hook while subsession was updating it); use the session \
                 outside that code",
                self.label()
            )));
        }
        let guard = self
            .state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        let _ = HELD.try_with(|h| h.borrow_mut().push(key));
        Ok(StateGuard { guard, key })
    }

    /// [`Self::try_lock`] for callers that cannot return an error. Re-entry panics
    /// with the same message (every entry point turns a panic into a Python or C
    /// error), never waits forever.
    pub(crate) fn lock(&self, py: Python<'_>) -> StateGuard<'_> {
        match self.try_lock(py) {
            Ok(guard) => guard,
            Err(e) => panic!("{e}"),
        }
    }

    pub(crate) fn qualified(&self, real: &str) -> String {
        format!("{}{}", self.prefix_dot, real)
    }

    /// `x` for `__subsession_toolA__.x`, `None` for names of other sessions or globals.
    pub(crate) fn strip<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.prefix_dot.as_str())
    }

    pub(crate) fn is_shared(&self, py: Python<'_>, name: &str) -> bool {
        policy::shared_by_everyone(name) || self.keeps_global(py, name)
    }

    /// Whether `name` is a global module this session adopted: it keeps its real name
    /// in sys.modules, also when a reload in a block puts it there again.
    pub(crate) fn adopts(&self, py: Python<'_>, name: &str) -> bool {
        self.lock(py).tracking.adopted.contains(name)
    }

    /// Whether `name` is in this session's `keep_global` (the host's module is used).
    pub(crate) fn keeps_global(&self, py: Python<'_>, name: &str) -> bool {
        self.lock(py).settings.keep_global.matches(name)
    }

    /// The error for any use of a closed session (code still running from it included).
    pub(crate) fn ensure_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.try_lock(py)?.closed {
            return Err(ClosedSessionError::new_err(format!(
                "session {} is closed; re-create the tool in a new Session",
                self.label()
            )));
        }
        Ok(())
    }

    /// True for a module of this session (its `__name__` is qualified by our prefix).
    pub(crate) fn owns(&self, obj: &Bound<'_, PyAny>) -> bool {
        module_in(obj, self.prefix_dot_py.bind(obj.py()))
    }

    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n:?}"),
            None => self.prefix.clone(),
        }
    }

    /// Notes a qualified module (`sys.modules` holds it under `prefix.real`).
    /// `dict_key` is the very key object sys.modules holds, when known: looking the
    /// module up with it compares pointers instead of characters.
    pub(crate) fn note_module(
        &self,
        py: Python<'_>,
        real: &str,
        dict_key: Option<&Bound<'_, PyString>>,
    ) {
        let mut st = self.lock(py);
        match st.modules.get_mut(real) {
            Some(keys) => {
                if let Some(k) = dict_key {
                    keys.qualified = k.clone().unbind();
                }
            }
            None => {
                let qualified = match dict_key {
                    Some(k) => k.clone().unbind(),
                    None => PyString::new(py, &self.qualified(real)).unbind(),
                };
                let keys = ModuleKeys { qualified };
                st.modules.insert(real.to_owned(), keys);
            }
        }
    }

    pub(crate) fn importlib_proxy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.importlib_proxy
            .get()
            .map(|p| p.clone_ref(py))
            .ok_or_else(|| PyValueError::new_err("session proxies are not initialised"))
    }

    pub(crate) fn pkgutil_proxy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.pkgutil_proxy
            .get()
            .map(|p| p.clone_ref(py))
            .ok_or_else(|| PyValueError::new_err("session proxies are not initialised"))
    }
}
