//! One session: its settings, its module bookkeeping and its Python-facing methods.
//!
//! The facade (`subsession.Session`) owns a `SessionCore`; the core keeps a reference
//! back so the registry can hand out the facade object users created.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyList, PyModule, PyString};

use crate::policy::{self, Patterns};
use crate::{activation, errors, finder, interp, registry, reload, routing};

/// Settings a session is created with (and `configure` replaces).
#[derive(Clone, Debug)]
pub struct Settings {
    pub paths: Vec<String>,
    pub env: Vec<(String, Option<String>)>,
    pub keep_global: Patterns,
    pub inherit_env: bool,
    pub inherit_paths: bool,
}

/// Mutable state of one session.
pub struct State {
    pub settings: Settings,
    /// Real names that have a qualified module in `sys.modules`, with both keys
    /// made once (activation looks them up on every enter and exit).
    pub modules: BTreeMap<String, ModuleKeys>,
    /// Other real-name keys holding this session's modules (`requests.packages.*`):
    /// written by session code, captured out of the global namespace on exit.
    pub extras: HashMap<String, Py<PyAny>>,
    /// Activation frames of this session on any thread (ids, innermost last).
    pub frames: Vec<u64>,
    pub closed: bool,
    /// Import graph and file stamps, for stale detection and dependency order.
    pub reload: reload::Tracking,
    /// The search path computed for a base path generation (see activation).
    pub search_cache: Option<(u64, Py<PyList>)>,
    /// The search path computed for a copy of the live `sys.path` (no block active).
    pub live_cache: Option<(Py<PyList>, Py<PyList>)>,
}

pub struct ModuleKeys {
    /// The real name, shared with activation's bookkeeping without copying.
    pub name: Arc<str>,
    pub real: Py<PyString>,
    pub qualified: Py<PyString>,
}

#[pyclass(frozen, module = "subsession._core")]
pub struct SessionCore {
    pub prefix: String,
    pub prefix_dot: String,
    /// `prefix_dot` as a Python string, for allocation-free prefix checks.
    pub prefix_dot_py: Py<PyString>,
    pub name: Option<String>,
    pub facade: Py<PyAny>,
    /// The `__builtins__` of this session's code: `__import__` routes here.
    pub builtins: Py<PyDict>,
    /// Globals of `Session.exec`.
    pub namespace: Py<PyDict>,
    pub importlib_proxy: std::sync::OnceLock<Py<PyAny>>,
    pub pkgutil_proxy: std::sync::OnceLock<Py<PyAny>>,
    pub state: Mutex<State>,
}

impl SessionCore {
    pub fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn qualified(&self, real: &str) -> String {
        format!("{}{}", self.prefix_dot, real)
    }

    /// `x` for `__subsession_toolA__.x`, `None` for names of other sessions or globals.
    pub fn strip<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.prefix_dot.as_str())
    }

    pub fn is_shared(&self, py: Python<'_>, name: &str) -> bool {
        policy::shared_by_everyone(name) || self.keeps_global(py, name)
    }

    /// Whether `name` is in this session's `keep_global` (the host's module is used).
    pub fn keeps_global(&self, py: Python<'_>, name: &str) -> bool {
        self.lock(py).settings.keep_global.matches(name)
    }

    pub fn ensure_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.lock(py).closed {
            return Err(errors::ClosedSessionError::new_err(format!(
                "session {} is closed; create a new Session to run it again",
                self.label()
            )));
        }
        Ok(())
    }

    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n:?}"),
            None => self.prefix.clone(),
        }
    }

    /// Notes a qualified module (`sys.modules` holds it under `prefix.real`).
    /// `dict_key` is the very key object sys.modules holds, when known: looking the
    /// module up with it compares pointers instead of characters.
    pub fn note_module(&self, py: Python<'_>, real: &str, dict_key: Option<&Bound<'_, PyString>>) {
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
                let keys = ModuleKeys {
                    name: Arc::from(real),
                    real: PyString::intern(py, real).unbind(),
                    qualified,
                };
                st.modules.insert(real.to_owned(), keys);
            }
        }
    }

    /// The session's search path: its own paths, then the global ones (or only the
    /// standard library's with `inherit_paths=False`).
    pub fn search_path(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let base = activation::base_path(py)?;
        activation::search_path_from(py, self, &base)
    }

    /// The search path as a list, for the finder: cached while the global `sys.path`
    /// (or, during blocks, the frozen base path) is unchanged.
    pub fn search_path_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if activation::is_active() {
            let generation = activation::base_generation(py);
            let cached = self
                .lock(py)
                .search_cache
                .as_ref()
                .filter(|(g, _)| Some(*g) == generation)
                .map(|(_, l)| l.clone_ref(py));
            return match cached {
                Some(list) => Ok(list.into_bound(py)),
                None => PyList::new(py, self.search_path(py)?),
            };
        }
        let live = interp::sys_path(py)?;
        let cached = self
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
        let list = PyList::new(py, self.search_path(py)?)?;
        self.lock(py).live_cache = Some((copy.unbind(), list.clone().unbind()));
        Ok(list)
    }

    pub fn importlib_proxy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.importlib_proxy
            .get()
            .map(|p| p.clone_ref(py))
            .ok_or_else(|| PyValueError::new_err("session proxies are not initialised"))
    }

    pub fn pkgutil_proxy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.pkgutil_proxy
            .get()
            .map(|p| p.clone_ref(py))
            .ok_or_else(|| PyValueError::new_err("session proxies are not initialised"))
    }
}

fn parse_settings(
    paths: Vec<String>,
    env: &Bound<'_, PyDict>,
    keep_global: Vec<String>,
    inherit_env: bool,
    inherit_paths: bool,
) -> PyResult<Settings> {
    Ok(Settings {
        paths: absolute_paths(paths)?,
        env: parse_env(env)?,
        keep_global: Patterns::new(&keep_global).map_err(PyValueError::new_err)?,
        inherit_env,
        inherit_paths,
    })
}

fn absolute_paths(paths: Vec<String>) -> PyResult<Vec<String>> {
    let cwd = std::env::current_dir().map_err(|e| {
        PyValueError::new_err(format!(
            "cannot resolve relative paths: no current folder ({e})"
        ))
    })?;
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if p.is_empty() {
            return Err(PyValueError::new_err(
                "empty entry in paths; give folders such as paths=['/tools/a/lib']",
            ));
        }
        let abs = cwd.join(&p).to_string_lossy().into_owned();
        if !out.contains(&abs) {
            out.push(abs);
        }
    }
    Ok(out)
}

fn parse_env(env: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Option<String>)>> {
    let mut out = Vec::with_capacity(env.len());
    for (k, v) in env.iter() {
        let key: String = k.extract().map_err(|_| {
            PyTypeError::new_err("env keys must be strings, e.g. env={'TOOL_MODE': 'dev'}")
        })?;
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(PyValueError::new_err(format!(
                "invalid environment variable name {key:?}: no '=', no NUL, not empty"
            )));
        }
        let value = if v.is_none() {
            None
        } else {
            let s: String = v.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "env[{key:?}] must be a string or None (None unsets it in the session)"
                ))
            })?;
            if s.contains('\0') {
                return Err(PyValueError::new_err(format!(
                    "env[{key:?}] contains a NUL byte"
                )));
            }
            Some(s)
        };
        out.push((key, value));
    }
    Ok(out)
}

/// Everything after the name is reserved: a failure here must give it back.
fn build(
    py: Python<'_>,
    it: &interp::Interp,
    facade: Py<PyAny>,
    name: Option<String>,
    settings: Settings,
    prefix: &str,
) -> PyResult<Py<SessionCore>> {
    let prefix = prefix.to_owned();
    let builtins = it.builtins_dict.bind(py).copy()?;
    let namespace = PyDict::new(py);
    namespace.set_item("__name__", format!("{prefix}.__main__"))?;
    namespace.set_item("__builtins__", &builtins)?;
    let core = SessionCore {
        prefix_dot: format!("{prefix}."),
        prefix_dot_py: PyString::intern(py, &format!("{prefix}.")).unbind(),
        prefix: prefix.clone(),
        name,
        facade,
        builtins: builtins.unbind(),
        namespace: namespace.unbind(),
        importlib_proxy: std::sync::OnceLock::new(),
        pkgutil_proxy: std::sync::OnceLock::new(),
        state: Mutex::new(State {
            settings,
            modules: BTreeMap::new(),
            extras: HashMap::new(),
            frames: Vec::new(),
            closed: false,
            reload: reload::Tracking::default(),
            search_cache: None,
            live_cache: None,
        }),
    };
    let core = Bound::new(py, core)?;
    let session = core.get();
    let importer = Bound::new(
        py,
        routing::SessionImport {
            session: core.clone().unbind(),
        },
    )?;
    session.builtins.bind(py).set_item("__import__", importer)?;
    let loaders = it.loaders.bind(py);
    let _ = session
        .importlib_proxy
        .set(loaders.getattr("ImportlibProxy")?.call1((&core,))?.unbind());
    let _ = session
        .pkgutil_proxy
        .set(loaders.getattr("PkgutilProxy")?.call1((&core,))?.unbind());
    // The root of the qualified names: a package with no path of its own; the
    // finder resolves its children on the session's search path.
    let root = PyModule::new(py, &prefix)?;
    root.setattr(
        "__path__",
        loaders.getattr("SessionRootPath")?.call1((&core,))?,
    )?;
    root.setattr("__package__", &prefix)?;
    interp::sys_modules(py).set_item(&prefix, root)?;
    registry::register(py, &core);
    log::debug!("created session {} ({prefix})", session.label());
    Ok(core.unbind())
}

#[pymethods]
impl SessionCore {
    /// The facade, builtins, namespace and proxies refer back to this core: without
    /// telling the GC about them, a closed session would never be collected.
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.facade)?;
        visit.call(&self.builtins)?;
        visit.call(&self.namespace)?;
        if let Some(p) = self.importlib_proxy.get() {
            visit.call(p)?;
        }
        if let Some(p) = self.pkgutil_proxy.get() {
            visit.call(p)?;
        }
        // Never block in the GC: a state held by this thread is skipped this round.
        if let Ok(st) = self.state.try_lock() {
            for module in st.extras.values() {
                visit.call(module)?;
            }
        }
        Ok(())
    }

    #[new]
    #[allow(clippy::too_many_arguments)] // mirrors the Python signature one to one
    #[pyo3(signature = (facade, name, paths, env, keep_global, inherit_env, inherit_paths))]
    fn py_new(
        py: Python<'_>,
        facade: Py<PyAny>,
        name: Option<String>,
        paths: Vec<String>,
        env: &Bound<'_, PyDict>,
        keep_global: Vec<String>,
        inherit_env: bool,
        inherit_paths: bool,
    ) -> PyResult<Py<SessionCore>> {
        let it = interp::get(py)?;
        if let Some(name) = &name {
            registry::validate_name(name).map_err(PyValueError::new_err)?;
        }
        let settings = parse_settings(paths, env, keep_global, inherit_env, inherit_paths)?;
        let prefix =
            registry::reserve(py, name.as_deref()).map_err(errors::SessionExistsError::new_err)?;
        let built = build(py, it, facade, name, settings, &prefix);
        match &built {
            Ok(core) => crate::notify::emit(py, "created", core.get(), &[]),
            Err(_) => registry::release(py, &prefix),
        }
        built
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    #[getter]
    fn prefix(&self) -> String {
        self.prefix.clone()
    }

    #[getter]
    fn facade(&self, py: Python<'_>) -> Py<PyAny> {
        self.facade.clone_ref(py)
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.lock(py).closed
    }

    #[getter]
    fn paths(&self, py: Python<'_>) -> Vec<String> {
        self.lock(py).settings.paths.clone()
    }

    #[getter]
    fn env<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let env = self.lock(py).settings.env.clone();
        let out = PyDict::new(py);
        for (k, v) in env {
            out.set_item(k, v)?;
        }
        Ok(out)
    }

    #[getter]
    fn keep_global(&self, py: Python<'_>) -> Vec<String> {
        self.lock(py).settings.keep_global.source().to_vec()
    }

    #[getter]
    fn inherit_env(&self, py: Python<'_>) -> bool {
        self.lock(py).settings.inherit_env
    }

    #[getter]
    fn inherit_paths(&self, py: Python<'_>) -> bool {
        self.lock(py).settings.inherit_paths
    }

    #[getter]
    fn namespace(&self, py: Python<'_>) -> Py<PyDict> {
        self.namespace.clone_ref(py)
    }

    /// Replaces the given settings (None keeps one). Refused while active anywhere.
    #[pyo3(signature = (paths, env, keep_global, inherit_env, inherit_paths))]
    fn configure(
        &self,
        py: Python<'_>,
        paths: Option<Vec<String>>,
        env: Option<Bound<'_, PyDict>>,
        keep_global: Option<Vec<String>>,
        inherit_env: Option<bool>,
        inherit_paths: Option<bool>,
    ) -> PyResult<()> {
        self.ensure_open(py)?;
        let paths = paths.map(absolute_paths).transpose()?;
        let env = env.map(|e| parse_env(&e)).transpose()?;
        let keep = keep_global
            .map(|k| Patterns::new(&k).map_err(PyValueError::new_err))
            .transpose()?;
        let mut st = self.lock(py);
        if !st.frames.is_empty() {
            return Err(errors::SessionError::new_err(format!(
                "session {} is active; change its settings outside its with-block",
                self.label()
            )));
        }
        if let Some(p) = paths {
            st.settings.paths = p;
        }
        if let Some(e) = env {
            st.settings.env = e;
        }
        if let Some(k) = keep {
            st.settings.keep_global = k;
        }
        if let Some(v) = inherit_env {
            st.settings.inherit_env = v;
        }
        if let Some(v) = inherit_paths {
            st.settings.inherit_paths = v;
        }
        st.search_cache = None;
        st.live_cache = None;
        drop(st);
        crate::notify::emit(py, "configured", self, &[]);
        Ok(())
    }

    /// Real name -> module, for the modules this session holds.
    fn modules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let keys: Vec<(String, Py<PyString>)> = {
            let st = self.lock(py);
            st.modules
                .iter()
                .map(|(k, v)| (k.clone(), v.qualified.clone_ref(py)))
                .collect()
        };
        let sys_modules = interp::sys_modules(py);
        let out = PyDict::new(py);
        for (real, key) in keys {
            if let Some(m) = sys_modules.get_item(key.bind(py))? {
                out.set_item(real, m)?;
            }
        }
        Ok(out)
    }

    /// The real name of a qualified name of this session (other names unchanged).
    fn real_name(&self, name: &str) -> String {
        self.strip(name).unwrap_or(name).to_owned()
    }

    /// The folders a qualified top-level name is searched in (the root package's
    /// `__path__`): the block's live `sys.path`, else the session's search path.
    #[pyo3(name = "_root_path")]
    fn root_path<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let session = slf.get();
        if session.lock(py).closed {
            return Ok(PyList::empty(py));
        }
        match activation::live_path_of(slf)? {
            Some(live) => Ok(live),
            None => session.search_path_list(py),
        }
    }

    #[pyo3(name = "search_path")]
    fn py_search_path(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.search_path(py)
    }

    /// Enters a block; returns the token that names it for `exit`.
    fn enter(slf: &Bound<'_, Self>) -> PyResult<u64> {
        activation::enter(slf)
    }

    /// Leaves the block `token` names (from `enter`), on whichever thread this runs;
    /// returns the token of the block it left.
    #[pyo3(signature = (token=None))]
    fn exit(slf: &Bound<'_, Self>, token: Option<u64>) -> PyResult<u64> {
        activation::exit(slf, token)
    }

    /// Imports a real name in this session (absolute, or relative to `package`).
    #[pyo3(signature = (name, package=None))]
    fn import_module<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        package: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        routing::session_import_module(slf, name, package)
    }

    /// `importlib.import_module` as the proxy given to session code calls it.
    #[pyo3(name = "_import_module", signature = (name, package=None))]
    fn import_module_proxy<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        package: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        routing::session_import_module(slf, name, package)
    }

    /// Called by the session's loaders around a module's execution.
    #[pyo3(name = "_exec_module")]
    fn exec_module(
        slf: &Bound<'_, Self>,
        module: &Bound<'_, PyModule>,
        exec: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        finder::exec_session_module(slf, module, exec)
    }

    #[pyo3(name = "_init_extension")]
    fn init_extension<'py>(
        slf: &Bound<'py, Self>,
        step: &Bound<'py, PyAny>,
        arg: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let session = slf.get();
        let initialised: Option<String> = match arg.cast::<PyModule>() {
            Ok(module) => activation::module_name(module.as_any()),
            Err(_) => arg
                .getattr(intern!(py, "name"))
                .ok()
                .and_then(|n| n.extract().ok()),
        };
        let real = initialised.as_deref().and_then(|q| session.strip(q));
        let before = match real {
            Some(r) => activation::subtree_values(py, r)?,
            None => Vec::new(),
        };
        let token = activation::enter(slf)?;
        let result = step.call1((arg,));
        let mirrored = match (&result, real) {
            (Ok(_), Some(r)) => activation::mirror_registered_submodules(slf, r, &before),
            _ => Ok(()),
        };
        activation::exit(slf, Some(token))?;
        let result = result?;
        mirrored?;
        if let Ok(module) = arg.cast::<PyModule>() {
            // Executed: the session's module, by real name too while its block runs.
            if let Some(name) = activation::module_name(module.as_any()) {
                if let Some(real) = session.strip(&name) {
                    session.note_module(py, real, None);
                    activation::alias_if_active(slf, real, module.as_any())?;
                }
            }
        } else if let Ok(module) = result.cast::<PyModule>() {
            // A single-phase module whose definition carries its full dotted name
            // (mypyc does this) keeps that name; it must carry the qualified one to be
            // recognised as this session's.
            let qualified: Option<String> = arg
                .getattr(intern!(py, "name"))
                .ok()
                .and_then(|n| n.extract().ok());
            if let Some(q) = qualified.filter(|q| session.strip(q).is_some()) {
                if activation::module_name(module.as_any()).as_deref() != Some(q.as_str()) {
                    module.setattr(intern!(py, "__name__"), &q)?;
                }
            }
        }
        Ok(result)
    }

    #[pyo3(name = "_alias_load")]
    fn alias_load(
        slf: &Bound<'_, Self>,
        module: &Bound<'_, PyModule>,
        qualified: &str,
    ) -> PyResult<()> {
        finder::alias_load(slf, module, qualified)
    }

    #[pyo3(signature = (module, deep=false))]
    fn reload<'py>(
        slf: &Bound<'py, Self>,
        module: &Bound<'py, PyAny>,
        deep: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        reload::reload_one(slf, module, deep)
    }

    fn stale(slf: &Bound<'_, Self>) -> PyResult<Vec<String>> {
        reload::stale(slf)
    }

    #[pyo3(signature = (deep=false))]
    fn reload_stale(slf: &Bound<'_, Self>, deep: bool) -> PyResult<Vec<String>> {
        reload::reload_stale(slf, deep)
    }

    #[pyo3(signature = (deep=false))]
    fn reload_all(slf: &Bound<'_, Self>, deep: bool) -> PyResult<Vec<String>> {
        reload::reload_all(slf, deep)
    }

    /// Unloads the session: returns (label, unloaded names, {name: [holders]}).
    #[pyo3(signature = (force=false))]
    fn close<'py>(
        slf: &Bound<'py, Self>,
        force: bool,
    ) -> PyResult<(String, Vec<String>, Bound<'py, PyDict>)> {
        reload::close(slf, force)
    }
}
