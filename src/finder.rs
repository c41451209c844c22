//! The meta-path finder: resolves qualified names (`__subsession_toolA__.x`) on the
//! owning session's search path and hands their specs session loaders; during a
//! block it also answers real names that bypassed the hooks (C code) with the
//! session's module.

use std::collections::HashSet;
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyList, PyModule};

use crate::activation::{self, is_active};
use crate::policy::{self, PREFIX};
use crate::session::SessionCore;
use crate::{interp, registry, reload, routing};

#[pyclass(frozen, module = "subsession._core")]
pub struct SessionFinder;

#[pymethods]
impl SessionFinder {
    #[pyo3(signature = (fullname, path=None, target=None))]
    fn find_spec<'py>(
        &self,
        py: Python<'py>,
        fullname: &str,
        path: Option<Bound<'py, PyAny>>,
        target: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        find_spec(py, fullname, path, target)
    }

    fn invalidate_caches(&self) {}

    fn __repr__(&self) -> &'static str {
        "<subsession finder>"
    }
}

fn find_spec<'py>(
    py: Python<'py>,
    fullname: &str,
    path: Option<Bound<'py, PyAny>>,
    target: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let it = interp::get(py)?;
    if fullname.starts_with(PREFIX) {
        let Some((head, rest)) = fullname.split_once('.') else {
            return Ok(None);
        };
        let Some(owner) = registry::by_prefix(py, head) else {
            return Ok(None);
        };
        let core = owner.bind(py);
        let session = core.get();
        if session.lock(py).closed {
            return Ok(None);
        }
        let path = if rest.contains('.') {
            path
        } else {
            // A block that changed sys.path (pytest's rootdir, syspath_prepend) sees
            // its change on the very next import.
            match activation::live_path_of(core)? {
                Some(live) => Some(live.into_any()),
                None => Some(session.search_path_list(py)?.into_any()),
            }
        };
        let spec = it.path_finder.bind(py).call_method1(
            intern!(py, "find_spec"),
            (fullname, path.as_ref(), target.as_ref()),
        )?;
        if !spec.is_none() {
            return wrap_spec(core, spec);
        }
        // Not on the search path: custom finders and path hooks (setuptools'
        // editable finder, a studio importer) are asked for the real name.
        let spec = it.loaders.bind(py).call_method1(
            intern!(py, "find_foreign_spec"),
            (core, fullname, rest, path, target),
        )?;
        return wrap_spec(core, spec);
    }
    if !is_active() {
        return Ok(None);
    }
    let Some(top) = activation::top_session(py) else {
        // Another thread's block patched sys.path in place: search the snapshot of
        // the global path, not the list being mutated under us.
        if path.as_ref().is_some_and(|p| !p.is_none())
            || policy::is_stdlib(policy::top_level(fullname))
        {
            return Ok(None);
        }
        let base = activation::base_path(py)?;
        let spec = it
            .path_finder
            .bind(py)
            .call_method1(intern!(py, "find_spec"), (fullname, base, target))?;
        return Ok(Some(spec).filter(|s| !s.is_none()));
    };
    let core = top.bind(py);
    let session = core.get();
    let parent = fullname.rsplit_once('.').map(|(p, _)| p);
    let mods = interp::sys_modules(py);
    let parent_is_global = match parent {
        Some(p) => !mods
            .get_item(p)?
            .is_some_and(|m| activation::is_session_module(&m)),
        None => false,
    };
    if session.is_shared(py, fullname) || parent_is_global {
        return Ok(None);
    }
    let qualified = session.qualified(fullname);
    if !mods.contains(&qualified)? && find_spec(py, &qualified, path, target)?.is_none() {
        return Ok(None);
    }
    let loader = it
        .loaders
        .bind(py)
        .getattr("AliasLoader")?
        .call1((core, &qualified))?;
    Ok(Some(it.module_spec.bind(py).call1((fullname, loader))?))
}

/// Gives a spec found for a qualified name the session's loader class.
fn wrap_spec<'py>(
    core: &Bound<'py, SessionCore>,
    spec: Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = core.py();
    if spec.is_none() {
        return Ok(None);
    }
    let it = interp::get(py)?;
    let loaders = it.loaders.bind(py);
    let loader = spec.getattr(intern!(py, "loader"))?;
    let loader_type = loader.get_type();
    let class_name = if loader_type.is(it.source_loader.bind(py)) {
        "SessionSourceLoader"
    } else if loader_type.is(it.sourceless_loader.bind(py)) {
        "SessionSourcelessLoader"
    } else if loader_type.is(it.extension_loader.bind(py)) {
        let origin: String = spec.getattr(intern!(py, "origin"))?.extract()?;
        if let Some(existing) = loaded_extension(py, &origin)? {
            warn_shared_extension(py, core.get(), &origin);
            let shared = loaders.getattr("SharedModuleLoader")?.call1((existing,))?;
            spec.setattr(intern!(py, "loader"), shared)?;
            return Ok(Some(spec));
        }
        "SessionExtensionLoader"
    } else {
        // Any other loader (zip imports, custom importers): the session's builtins
        // are set before its code runs, so its imports are routed too.
        let wrapped = loaders.call_method1(intern!(py, "wrap_foreign_loader"), (&spec, core))?;
        return Ok(Some(wrapped));
    };
    let name = spec.getattr(intern!(py, "name"))?;
    let origin = spec.getattr(intern!(py, "origin"))?;
    let new_loader = loaders.getattr(class_name)?.call1((name, origin))?;
    new_loader.setattr(intern!(py, "_session"), core)?;
    spec.setattr(intern!(py, "loader"), new_loader)?;
    Ok(Some(spec))
}

/// A module already initialised from this extension file, if any: C extensions
/// cannot be initialised twice, so a session shares it (docs/contract.md §4.2).
fn loaded_extension<'py>(py: Python<'py>, origin: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let mods = interp::sys_modules(py);
    for (_, module) in mods.iter() {
        if module.cast::<PyModule>().is_err() {
            continue;
        }
        let file = module
            .cast::<PyModule>()
            .ok()
            .and_then(|m| m.dict().get_item(intern!(py, "__file__")).ok().flatten())
            .and_then(|f| f.extract::<String>().ok());
        if file.as_deref() == Some(origin) {
            return Ok(Some(module));
        }
    }
    Ok(None)
}

fn warn_shared_extension(py: Python<'_>, session: &SessionCore, origin: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = WARNED
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(origin.to_owned());
    if first {
        log::warn!(
            target: "subsession",
            "extension module {origin} is already loaded and cannot be initialised again; \
             session {} shares the loaded module (its C state is process-wide)",
            session.label()
        );
    }
}

/// Runs a session module's code with the session's `__builtins__`, then records it.
pub fn exec_session_module(
    core: &Bound<'_, SessionCore>,
    module: &Bound<'_, PyModule>,
    exec: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    module
        .dict()
        .set_item(intern!(py, "__builtins__"), session.builtins.bind(py))?;
    exec.call1((module,))?;
    let Some(name) = activation::module_name(module.as_any()) else {
        return Ok(());
    };
    if let Some(real) = session.strip(&name) {
        let new = !session.lock(py).modules.contains_key(real);
        session.note_module(py, real, None);
        if !reload::is_tracked(core, real) {
            reload::note_loaded(core, real, module);
        }
        activation::alias_if_active(core, real, module.as_any())?;
        if new {
            crate::notify::emit(py, "imported", session, &[real.to_owned()]);
        }
    }
    Ok(())
}

/// A real-name import that bypassed the hooks inside a block: hand out the session's
/// module instead of a global one.
pub fn alias_load(
    core: &Bound<'_, SessionCore>,
    module: &Bound<'_, PyModule>,
    qualified: &str,
) -> PyResult<()> {
    let py = core.py();
    let mods = interp::sys_modules(py);
    let Some(name) = activation::module_name(module.as_any()) else {
        return Ok(());
    };
    if mods.get_item(&name)?.is_some_and(|m| m.is(module)) {
        // The placeholder must never pass as a global.
        mods.del_item(&name)?;
    }
    let it = interp::get(py)?;
    let loaded = it.original_gcd_import.bind(py).call1((qualified,))?;
    let aliased = activation::alias_if_active(core, &name, &loaded)?;
    if !aliased || !mods.contains(&name)? {
        // _load_unlocked returns sys.modules[name].
        mods.set_item(&name, loaded)?;
    }
    Ok(())
}

/// Installs the finder and the hooks, once per interpreter.
#[pyfunction]
pub fn install(py: Python<'_>, loaders: &Bound<'_, PyModule>) -> PyResult<()> {
    let it = interp::init(py, loaders)?;
    let sys = py.import("sys")?;
    let stdlib: HashSet<String> = match sys.getattr("stdlib_module_names") {
        Ok(names) => names
            .try_iter()?
            .flatten()
            .filter_map(|n| n.extract().ok())
            .collect(),
        Err(_) => {
            let mut names = policy::scan_stdlib_dirs(&it.stdlib_dirs);
            let dynload: Vec<_> = it
                .stdlib_dirs
                .iter()
                .map(|d| d.join("lib-dynload"))
                .collect();
            names.extend(policy::scan_stdlib_dirs(&dynload));
            names
        }
    };
    let mut stdlib = stdlib;
    let builtin: Vec<String> = sys.getattr("builtin_module_names")?.extract()?;
    stdlib.extend(builtin);
    policy::init(stdlib);

    let meta_path = sys.getattr("meta_path")?.cast_into::<PyList>()?;
    let installed = meta_path.iter().any(|f| {
        f.get_type()
            .name()
            .is_ok_and(|n| n.to_cow().is_ok_and(|n| n == "SessionFinder"))
    });
    if !installed {
        meta_path.insert(0, Bound::new(py, SessionFinder)?)?;
    }
    let builtins = it.builtins.bind(py);
    let current = builtins.getattr("__import__")?;
    if current.is(it.original_import.bind(py)) {
        builtins.setattr("__import__", routing::make_import_hook(py)?)?;
    }
    let bootstrap = it.bootstrap.bind(py);
    if bootstrap
        .getattr("_gcd_import")?
        .is(it.original_gcd_import.bind(py))
    {
        bootstrap.setattr("_gcd_import", wrap_pyfunction!(routing::gcd_import, py)?)?;
    }
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SessionFinder>()?;
    m.add_function(wrap_pyfunction!(install, m)?)?;
    Ok(())
}
