//! `subsession._core.SessionCore`: the Python methods of a session's record. Each is
//! a thin call into the layer that does the work.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyString};

use crate::activation;
use crate::base::errors::{SessionError, SessionExistsError};
use crate::base::interp;
use crate::base::names::check_session_name;
use crate::base::policy::Patterns;
use crate::imports::{finder, hooks, install};
use crate::reload;
use crate::state::{SessionCore, notify, registry, settings};
use crate::unload;

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
        if let Some(name) = &name {
            check_session_name(name).map_err(PyValueError::new_err)?;
        }
        let settings =
            settings::parse_settings(paths, env, keep_global, inherit_env, inherit_paths)?;
        let prefix = registry::reserve(py, name.as_deref()).map_err(SessionExistsError::new_err)?;
        // Everything after the name is reserved: a failure must give it back.
        let built = (|| {
            let core = Bound::new(py, SessionCore::new(py, facade, name, settings, &prefix)?)?;
            install::wire_session(&core)?;
            // Other threads find the facade through the registry from the next line on:
            // it must hold its core by then, not once this constructor has returned.
            core.get()
                .facade
                .bind(py)
                .setattr(intern!(py, "_core"), &core)?;
            registry::register(py, &core);
            log::debug!("created session {} ({prefix})", core.get().label());
            Ok(core.unbind())
        })();
        match &built {
            Ok(core) => notify::emit(py, "created", core.get(), &[]),
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
    fn closed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.try_lock(py)?.closed)
    }

    #[getter]
    fn paths(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(self.try_lock(py)?.settings.paths.clone())
    }

    #[getter]
    fn env<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let env = self.try_lock(py)?.settings.env.clone();
        let out = PyDict::new(py);
        for (k, v) in env {
            out.set_item(k, v)?;
        }
        Ok(out)
    }

    #[getter]
    fn keep_global(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(self.try_lock(py)?.settings.keep_global.source().to_vec())
    }

    #[getter]
    fn inherit_env(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.try_lock(py)?.settings.inherit_env)
    }

    #[getter]
    fn inherit_paths(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.try_lock(py)?.settings.inherit_paths)
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
        let paths = paths.map(settings::absolute_paths).transpose()?;
        let env = env.map(|e| settings::parse_env(&e)).transpose()?;
        let keep = keep_global
            .map(|k| Patterns::new(&k).map_err(PyValueError::new_err))
            .transpose()?;
        let mut st = self.try_lock(py)?;
        if !st.frames.is_empty() {
            return Err(SessionError::new_err(format!(
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
        notify::emit(py, "configured", self, &[]);
        Ok(())
    }

    /// Real name -> module, for the modules this session holds.
    fn modules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let keys: Vec<(String, Py<PyString>)> = {
            let st = self.try_lock(py)?;
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
        if session.try_lock(py)?.closed {
            return Ok(PyList::empty(py));
        }
        match activation::live_path_of(slf)? {
            Some(live) => Ok(live),
            None => activation::search_path_list(py, session),
        }
    }

    #[pyo3(name = "search_path")]
    fn py_search_path(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        activation::search_path(py, self)
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
        hooks::session_import_module(slf, name, package)
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
        finder::init_extension(slf, step, arg)
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
        unload::close(slf, force)
    }
}
