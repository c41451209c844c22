//! The meta-path finder: resolves qualified names (`__subsession_toolA__.x`) on the
//! owning session's search path and hands their specs session loaders; during a
//! block it also answers real names that bypassed the hooks (C code) with the
//! session's module.

use std::collections::HashSet;
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::PyModule;

use super::{capi, record};
use crate::activation::{self, is_active};
use crate::base::names::{PREFIX, is_session_module, module_name, module_name_py, top_level};
use crate::base::{interp, policy};
use crate::state::{ModuleKeys, SessionCore, notify, registry};

#[pyclass(frozen, module = "subsession._core")]
pub(crate) struct SessionFinder;

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
        if session.try_lock(py)?.closed {
            return Ok(None);
        }
        let path = if rest.contains('.') {
            path
        } else {
            // A block that changed sys.path (pytest's rootdir, syspath_prepend) sees
            // its change on the very next import.
            match activation::live_path_of(core)? {
                Some(live) => Some(live.into_any()),
                None => Some(activation::search_path_list(py, session)?.into_any()),
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
        activation::count_global_load(py)?;
        // Another thread's block patched sys.path in place: search the snapshot of
        // the global path, not the list being mutated under us.
        if path.as_ref().is_some_and(|p| !p.is_none()) || policy::is_stdlib(top_level(fullname)) {
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
        Some(p) => !mods.get_item(p)?.is_some_and(|m| is_session_module(&m)),
        None => false,
    };
    // An adopted module keeps its real name (importlib.reload of it re-finds its spec
    // while the session is active): the global finders answer for it, as for its
    // submodules (their parent is global).
    if session.is_shared(py, fullname)
        || parent_is_global
        || session.lock(py).tracking.adopted.contains(fullname)
    {
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
        intern!(py, "SessionSourceLoader")
    } else if loader_type.is(it.sourceless_loader.bind(py)) {
        intern!(py, "SessionSourcelessLoader")
    } else if loader_type.is(it.extension_loader.bind(py)) {
        let origin: String = spec.getattr(intern!(py, "origin"))?.extract()?;
        if let Some(existing) = loaded_extension(py, &origin)? {
            warn_shared_extension(py, core.get(), &origin);
            let shared = loaders.getattr("SharedModuleLoader")?.call1((existing,))?;
            spec.setattr(intern!(py, "loader"), shared)?;
            return Ok(Some(spec));
        }
        intern!(py, "SessionExtensionLoader")
    } else {
        // Any other loader (zip imports, custom importers): the session's builtins
        // are set before its code runs, so its imports are routed too.
        let wrapped = loaders.call_method1(intern!(py, "wrap_foreign_loader"), (&spec, core))?;
        return Ok(Some(wrapped));
    };
    let class = loaders.getattr(class_name)?;
    let name = spec.getattr(intern!(py, "name"))?;
    let same_name = loader
        .getattr(intern!(py, "name"))
        .is_ok_and(|n| n.is(&name) || n.eq(&name).unwrap_or(false));
    if same_name {
        // The path finder made this loader for this spec alone: it becomes the
        // session's subclass in place (same fields, no second `__init__`).
        loader.setattr(intern!(py, "__class__"), class)?;
        loader.setattr(intern!(py, "_session"), core)?;
    } else {
        // A custom finder's loader, made for the real name: a new one for ours.
        let origin = spec.getattr(intern!(py, "origin"))?;
        let new_loader = class.call1((name, origin))?;
        new_loader.setattr(intern!(py, "_session"), core)?;
        spec.setattr(intern!(py, "loader"), new_loader)?;
    }
    Ok(Some(spec))
}

/// A module already initialised from this extension file, if any: C extensions
/// cannot be initialised twice, so a session shares it (docs/contract.md §4.2).
fn loaded_extension<'py>(py: Python<'py>, origin: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    if !maybe_mapped(origin) {
        // Never loaded into this process: nothing to scan sys.modules for.
        return Ok(None);
    }
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

/// False when the shared library `path` is certainly not loaded in this process (so
/// no module can have been initialised from it): `dlopen(RTLD_NOLOAD)` asks the
/// dynamic loader without loading anything. Scanning sys.modules for each extension a
/// session loads instead costs O(sys.modules) per extension (~0.8 ms at 5,000 modules).
#[cfg(unix)]
fn maybe_mapped(path: &str) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path) else {
        return true;
    };
    // SAFETY: a valid C string; RTLD_NOLOAD never loads or initialises the library,
    // and the reference a successful call adds is dropped at once.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

#[cfg(not(unix))]
fn maybe_mapped(_path: &str) -> bool {
    true
}

fn warn_shared_extension(py: Python<'_>, session: &SessionCore, origin: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = WARNED
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(origin.to_owned());
    if !first {
        return;
    }
    match capi::owner_of_file(py, origin).filter(|owner| *owner != session.label()) {
        Some(owner) => log::warn!(
            target: "subsession",
            "extension module {origin} is already loaded by session {owner} and cannot be \
             initialised again; session {} shares it, and its C code imports in session \
             {owner}: give session {} its own copy of the package (another folder) or \
             keep it global (keep_global)",
            session.label(),
            session.label()
        ),
        None => log::warn!(
            target: "subsession",
            "extension module {origin} is already loaded and cannot be initialised again; \
             session {} shares the loaded module (its C state is process-wide)",
            session.label()
        ),
    }
}

/// Runs a session module's code with the session's `__builtins__`, then records it.
pub(crate) fn exec_session_module(
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
    let Some(name_py) = module_name_py(module.as_any()) else {
        return Ok(());
    };
    let name = name_py.to_cow()?;
    if let Some(real) = session.strip(&name) {
        // One look at the state: is the module new, is its file tracked. Its own
        // `__name__` is the sys.modules key (the spec's name), so no key is made.
        let (new, tracked) = {
            let mut st = session.try_lock(py)?;
            let new = !st.modules.contains_key(real);
            if new {
                let keys = ModuleKeys {
                    qualified: name_py.clone().unbind(),
                };
                st.modules.insert(real.to_owned(), keys);
            }
            (new, st.tracking.files.contains(real))
        };
        record::note_run(core, real, module, !tracked, new)?;
        activation::alias_if_active(core, real, module.as_any())?;
        if new {
            notify::emit(py, "imported", session, &[real.to_owned()]);
        }
    }
    Ok(())
}

/// A real-name import that bypassed the hooks inside a block: hand out the session's
/// module instead of a global one.
pub(crate) fn alias_load(
    core: &Bound<'_, SessionCore>,
    module: &Bound<'_, PyModule>,
    qualified: &str,
) -> PyResult<()> {
    let py = core.py();
    let mods = interp::sys_modules(py);
    let Some(name) = module_name(module.as_any()) else {
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

/// Runs one step of an extension module's initialisation (create or exec) inside the
/// session: C code importing by real name during its init gets the session's modules,
/// and submodules it registers by real name are given qualified names too.
pub(crate) fn init_extension<'py>(
    slf: &Bound<'py, SessionCore>,
    step: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let session = slf.get();
    let initialised: Option<String> = match arg.cast::<PyModule>() {
        Ok(module) => module_name(module.as_any()),
        Err(_) => arg
            .getattr(intern!(py, "name"))
            .ok()
            .and_then(|n| n.extract().ok()),
    };
    let real = initialised.as_deref().and_then(|q| session.strip(q));
    if arg.cast::<PyModule>().is_err() {
        // Creating: the library is loaded and its C-API slots point at this session
        // before its initialisation runs.
        if let Ok(origin) = arg.getattr(intern!(py, "origin"))?.extract::<String>() {
            capi::prepare_extension(slf, &origin)?;
        }
    }
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
        if let Some(name) = module_name(module.as_any()) {
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
            if module_name(module.as_any()).as_deref() != Some(q.as_str()) {
                module.setattr(intern!(py, "__name__"), &q)?;
            }
        }
    }
    Ok(result)
}
