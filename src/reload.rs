//! Hot reload and unload (docs/contract.md §5, §6).
//!
//! While a session imports, it records who imports whom and each module's file
//! stamp (mtime + size). `stale` compares stamps without holding the GIL; reloads
//! run in dependency order (dependencies first) inside the session, and a failure
//! rolls every module of the batch back to its previous globals.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule};

use crate::errors::{ReloadError, SessionError};
use crate::session::SessionCore;
use crate::stale::{self, stamp_of};
use crate::{activation, deep, graph, interp, leaks, registry};

/// Per session: file stamps and the import graph.
#[derive(Default)]
pub struct Tracking {
    pub files: stale::FileIndex,
    pub graph: graph::ImportGraph,
    /// Global modules taken over by `subsession.adopt`: they keep their real names.
    pub adopted: HashSet<String>,
}

/// The `sys.modules` key of a session module: its qualified name, or its real name
/// when the session adopted it.
fn key_of(core: &Bound<'_, SessionCore>, real: &str) -> String {
    let session = core.get();
    if session.lock(core.py()).reload.adopted.contains(real) {
        real.to_owned()
    } else {
        session.qualified(real)
    }
}

/// The facade's helpers for hooks and Maya registrations (`subsession._live`).
fn live(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import(intern!(py, "subsession._live"))
}

/// True once a module's file is tracked (reloads update the stamp themselves, after
/// the whole batch succeeded).
pub fn is_tracked(core: &Bound<'_, SessionCore>, real: &str) -> bool {
    core.get().lock(core.py()).reload.files.contains(real)
}

/// Records a module's source file and its stamp when it finishes executing.
pub fn note_loaded(core: &Bound<'_, SessionCore>, real: &str, module: &Bound<'_, PyModule>) {
    let py = core.py();
    let file = module
        .dict()
        .get_item(intern!(py, "__file__"))
        .ok()
        .flatten()
        .and_then(|f| f.extract::<String>().ok());
    if let Some(file) = file {
        let path = PathBuf::from(file);
        // The session's source loader kept the stat it validated the code with.
        let seen = module
            .getattr(intern!(py, "__spec__"))
            .and_then(|s| s.getattr(intern!(py, "loader")))
            .and_then(|l| l.getattr(intern!(py, "_stamp")))
            .and_then(|t| t.extract::<(i128, u64)>())
            .ok();
        let stamp = match seen {
            Some((mtime_ns, size)) => Some(stale::Stamp { mtime_ns, size }),
            None => stamp_of(&path),
        };
        // The content that was executed, for telling an edit from a touch: hashed only
        // if the file still has the stamp the code was validated with.
        let hash = stamp.and_then(|s| py.detach(|| stale::hash_if_stamp(&path, s)));
        core.get()
            .lock(py)
            .reload
            .files
            .record(real, path, stamp, hash);
    }
}

/// Records import edges `importer -> imported` for an import statement of session code.
pub fn note_import(
    core: &Bound<'_, SessionCore>,
    globals: Option<&Bound<'_, PyAny>>,
    absolute: Option<&str>,
    fromlist: Option<&Bound<'_, PyAny>>,
    result: &Bound<'_, PyAny>,
) {
    let py = core.py();
    let session = core.get();
    let Some(importer) = globals
        .and_then(|g| g.cast::<PyDict>().ok())
        .and_then(|g| g.get_item(intern!(py, "__name__")).ok().flatten())
        .and_then(|n| n.extract::<String>().ok())
    else {
        return;
    };
    let Some(importer) = session.strip(&importer).map(str::to_owned) else {
        return;
    };
    let base = match absolute {
        Some(a) => a.to_owned(),
        None => match activation::module_name(result)
            .as_deref()
            .and_then(|n| session.strip(n))
        {
            Some(real) => real.to_owned(),
            None => return,
        },
    };
    let names = interp::fromlist_names(fromlist);
    let mut st = session.lock(py);
    // `from pkg import sub` depends on the submodule, not on pkg's own code (pkg may
    // import this very module); a name that is not a submodule comes from pkg itself.
    let mut imported: Vec<String> = Vec::new();
    let mut needs_base = names.is_empty();
    for x in names {
        let sub = format!("{base}.{x}");
        if st.modules.contains_key(&sub) {
            imported.push(sub);
        } else {
            needs_base = true;
        }
    }
    if needs_base {
        imported.push(base);
    }
    for target in imported {
        if target != importer {
            st.reload.graph.add_edge(&importer, &target);
        }
    }
}

/// Real names of modules whose file changed since they were executed.
pub fn stale(core: &Bound<'_, SessionCore>) -> PyResult<Vec<String>> {
    let py = core.py();
    core.get().ensure_open(py)?;
    let groups = core.get().lock(py).reload.files.snapshot();
    // The file system calls run without the GIL: other threads (Maya's UI) go on.
    let verdicts = py.detach(move || stale::changed(&groups));
    let mut changed = Vec::new();
    {
        let mut st = core.get().lock(py);
        for verdict in verdicts {
            match verdict {
                stale::Verdict::Changed(name) => {
                    if st.modules.contains_key(&name) || st.reload.adopted.contains(&name) {
                        changed.push(name);
                    }
                }
                stale::Verdict::Touched(name, stamp) => st.reload.files.touch(&name, stamp),
            }
        }
    }
    changed.sort();
    Ok(changed)
}

fn resolve_module<'py>(
    core: &Bound<'py, SessionCore>,
    module: &Bound<'py, PyAny>,
) -> PyResult<(String, Bound<'py, PyModule>)> {
    let py = core.py();
    let session = core.get();
    session.ensure_open(py)?;
    let adopted = |n: &str| session.lock(py).reload.adopted.contains(n);
    let real = if let Ok(name) = module.extract::<String>() {
        session.strip(&name).unwrap_or(&name).to_owned()
    } else if let Some(name) = activation::module_name(module).filter(|n| adopted(n)) {
        name
    } else {
        let name = activation::module_name(module).ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(
                "reload() takes a module object or a module name",
            )
        })?;
        match session.strip(&name) {
            Some(real) => real.to_owned(),
            None => {
                return Err(SessionError::new_err(format!(
                    "module {name} does not belong to session {}; reload it with the session \
                     that imported it (or importlib.reload for global modules)",
                    session.label()
                )));
            }
        }
    };
    let found = interp::sys_modules(py).get_item(key_of(core, &real))?;
    match found {
        Some(m) => Ok((real, m.cast_into::<PyModule>()?)),
        None => Err(SessionError::new_err(format!(
            "module {real} is not imported in session {}; import it there first",
            session.label()
        ))),
    }
}

/// `s.reload(m)`: re-executes one module in place, inside the session.
pub fn reload_one<'py>(
    core: &Bound<'py, SessionCore>,
    module: &Bound<'py, PyAny>,
    deep: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (real, m) = resolve_module(core, module)?;
    reload_batch(core, std::slice::from_ref(&real), deep)?;
    Ok(m.into_any())
}

/// `s.reload_stale()`: changed modules and every session module depending on them.
pub fn reload_stale(core: &Bound<'_, SessionCore>, deep: bool) -> PyResult<Vec<String>> {
    let changed = stale(core)?;
    reload_changed(core, &changed, deep)
}

/// Reloads `changed` (real names known to have changed, e.g. by a watcher) and every
/// session module depending on them, dependencies first; returns the order.
pub fn reload_changed(
    core: &Bound<'_, SessionCore>,
    changed: &[String],
    deep: bool,
) -> PyResult<Vec<String>> {
    core.get().ensure_open(core.py())?;
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let py = core.py();
    let order = {
        let st = core.get().lock(py);
        let known: HashSet<&str> = st
            .modules
            .keys()
            .chain(st.reload.adopted.iter())
            .map(String::as_str)
            .collect();
        let changed: Vec<String> = changed
            .iter()
            .filter(|n| known.contains(n.as_str()))
            .cloned()
            .collect();
        let plan = st
            .reload
            .graph
            .reload_order(&changed, |n| known.contains(n));
        for cycle in &plan.cycles {
            log::warn!(target: "subsession", "import cycle, reloaded in name order: {}", cycle.join(" -> "));
        }
        plan.order
    };
    reload_batch(core, &order, deep)?;
    Ok(order)
}

/// Every module of the session, dependencies first.
pub fn reload_all(core: &Bound<'_, SessionCore>, deep: bool) -> PyResult<Vec<String>> {
    let py = core.py();
    core.get().ensure_open(py)?;
    let order = {
        let st = core.get().lock(py);
        let all: Vec<String> = st
            .modules
            .keys()
            .chain(st.reload.adopted.iter())
            .cloned()
            .collect();
        let known: HashSet<&str> = all.iter().map(String::as_str).collect();
        st.reload
            .graph
            .reload_order(&all, |n| known.contains(n))
            .order
    };
    reload_batch(core, &order, deep)?;
    Ok(order)
}

/// Reloads `names` in order with the session active. On the first failure every
/// module of the batch gets its previous globals back and the error names the file
/// and line.
///
/// Around each module's re-execution `subsession._live` removes the Maya
/// registrations its previous execution made and calls its `__before_reload__`;
/// `__after_reload__(state)` runs once the whole batch succeeded (or, after a
/// rollback, on the old code again). A raising hook is logged, never fatal.
fn reload_batch(core: &Bound<'_, SessionCore>, names: &[String], deep: bool) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    session.ensure_open(py)?;
    let importlib = py.import("importlib")?;
    let live = live(py)?;
    let facade = session.facade.bind(py);
    let mods = interp::sys_modules(py);
    type Done<'py> = (
        String,
        Bound<'py, PyModule>,
        Bound<'py, PyDict>,
        Bound<'py, PyAny>,
    );
    let mut done: Vec<Done<'_>> = Vec::new();
    let mut undo = deep::Undo::default();
    let token = activation::enter(core)?;
    let outcome = (|| -> PyResult<()> {
        for real in names {
            let Some(module) = mods.get_item(key_of(core, real))? else {
                continue;
            };
            let module = module.cast_into::<PyModule>()?;
            let before = module.dict().copy()?;
            let state = live.call_method1(
                intern!(py, "before_reload"),
                (facade, real.as_str(), &module),
            )?;
            done.push((real.clone(), module.clone(), before.clone(), state));
            importlib.call_method1(intern!(py, "reload"), (&module,))?;
            if deep {
                deep::update_in_place(&mut undo, &before, &module)?;
            }
        }
        Ok(())
    })();
    let left = activation::exit(core, Some(token)).map(drop);
    if let Err(err) = outcome {
        // All or nothing: objects updated in place first, then every module's globals;
        // the file stamps stay old, so the modules are still stale.
        undo.rollback();
        for (_, module, before, _) in done.iter().rev() {
            let dict = module.dict();
            dict.clear();
            dict.update(before.as_mapping())?;
        }
        for (real, module, _, state) in &done {
            live.call_method1(
                intern!(py, "after_reload"),
                (facade, real.as_str(), module, state),
            )?;
        }
        return Err(ReloadError::new_err(describe_failure(py, &err)));
    }
    for (real, module, _, _) in &done {
        note_loaded(core, real, module);
    }
    for (real, module, _, state) in &done {
        live.call_method1(
            intern!(py, "after_reload"),
            (facade, real.as_str(), module, state),
        )?;
    }
    crate::notify::emit(
        py,
        "reloaded",
        session,
        &done.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
    );
    left
}

/// `subsession.adopt`: takes over already imported global modules (real names kept)
/// with their files and the import edges found among them.
pub fn adopt(
    core: &Bound<'_, SessionCore>,
    modules: Vec<(String, Bound<'_, PyModule>)>,
    edges: Vec<(String, String)>,
) -> PyResult<()> {
    let py = core.py();
    core.get().ensure_open(py)?;
    for (real, _) in &modules {
        core.get().lock(py).reload.adopted.insert(real.clone());
    }
    for (real, module) in &modules {
        if !is_tracked(core, real) {
            note_loaded(core, real, module);
        }
    }
    let mut st = core.get().lock(py);
    for (a, b) in edges {
        if a != b {
            st.reload.graph.add_edge(&a, &b);
        }
    }
    Ok(())
}

/// The real names of the modules a session adopted.
pub fn adopted(core: &Bound<'_, SessionCore>) -> Vec<String> {
    let mut names: Vec<String> = core
        .get()
        .lock(core.py())
        .reload
        .adopted
        .iter()
        .cloned()
        .collect();
    names.sort();
    names
}

/// One line naming the file and line as tracebacks do, plus the error itself.
fn describe_failure(py: Python<'_>, err: &PyErr) -> String {
    let value = err.value(py);
    let kind = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Error".into());
    // A SyntaxError carries its own location; others: the innermost traceback frame.
    let syntax = value
        .getattr("filename")
        .ok()
        .and_then(|f| f.extract::<String>().ok())
        .zip(
            value
                .getattr("lineno")
                .ok()
                .and_then(|l| l.extract::<i64>().ok()),
        );
    let location = syntax.or_else(|| {
        let mut tb = err.traceback(py)?.into_any();
        loop {
            let next = tb.getattr("tb_next").ok()?;
            if next.is_none() {
                break;
            }
            tb = next;
        }
        let frame = tb.getattr("tb_frame").ok()?;
        let file = frame
            .getattr("f_code")
            .ok()?
            .getattr("co_filename")
            .ok()?
            .extract::<String>()
            .ok()?;
        let line = tb.getattr("tb_lineno").ok()?.extract::<i64>().ok()?;
        Some((file, line))
    });
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    match location {
        Some((file, line)) => format!(
            "reload failed, previous version kept: File \"{file}\", line {line}: {kind}: {message}"
        ),
        None => format!("reload failed, previous version kept: {kind}: {message}"),
    }
}

/// True for an object defined by session code (a function, a class, or an instance of
/// a session class), judged by `__module__`.
fn defined_in_session(obj: &Bound<'_, PyAny>, prefix_dot: &str) -> bool {
    let py = obj.py();
    let module_of = |o: &Bound<'_, PyAny>| {
        o.getattr(intern!(py, "__module__"))
            .ok()
            .and_then(|m| m.extract::<String>().ok())
            .is_some_and(|m| m.starts_with(prefix_dot))
    };
    module_of(obj) || module_of(obj.get_type().as_any())
}

/// Deletes the entries of `dict` that `doomed` picks (collected first: no mutation
/// while iterating).
fn drop_entries(
    dict: &Bound<'_, PyDict>,
    doomed: impl Fn(&Bound<'_, PyAny>, &Bound<'_, PyAny>) -> bool,
) {
    let keys: Vec<Bound<'_, PyAny>> = dict
        .iter()
        .filter(|(k, v)| doomed(k, v))
        .map(|(k, _)| k)
        .collect();
    for k in keys {
        let _ = dict.del_item(k);
    }
}

/// Drops what the standard library keeps process-wide for a closing session's code:
/// typing's caches (`List[Item]` keeps `Item`), typing's `@overload` registry, import
/// hooks the session installed (six's meta-path importer) and its loggers. Without
/// this nearly every closed session stays alive. Best effort: a failure only leaves a
/// survivor for the report.
fn release_process_wide(py: Python<'_>, prefix_dot: &str) {
    let mods = interp::sys_modules(py);
    let mut released: Vec<String> = Vec::new();
    let typing = mods.get_item("typing").ok().flatten();
    if let Some(typing) = &typing {
        if let Ok(cleanups) = typing.getattr("_cleanups") {
            for clear in cleanups.try_iter().into_iter().flatten().flatten() {
                let _ = clear.call0();
            }
        }
        if let Ok(registry) = typing
            .getattr("_overload_registry")
            .and_then(|r| r.cast_into::<PyDict>().map_err(PyErr::from))
        {
            drop_entries(&registry, |k, _| {
                k.extract::<String>()
                    .is_ok_and(|k| k.starts_with(prefix_dot))
            });
        }
    }
    let sys = interp::get(py).map(|it| it.sys.bind(py).clone());
    if let Ok(sys) = sys {
        for hooks in ["meta_path", "path_hooks"] {
            let Ok(list) = sys
                .getattr(hooks)
                .and_then(|l| l.cast_into::<PyList>().map_err(PyErr::from))
            else {
                continue;
            };
            let ours: Vec<Bound<'_, PyAny>> = list
                .iter()
                .filter(|h| defined_in_session(h, prefix_dot))
                .collect();
            for hook in ours {
                if list.call_method1("remove", (&hook,)).is_ok() {
                    released.push(format!(
                        "sys.{hooks} entry {}",
                        hook.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ));
                }
            }
        }
        if let Ok(cache) = sys
            .getattr("path_importer_cache")
            .and_then(|c| c.cast_into::<PyDict>().map_err(PyErr::from))
        {
            drop_entries(&cache, |_, finder| defined_in_session(finder, prefix_dot));
        }
    }
    if let Some(logging) = mods.get_item("logging").ok().flatten() {
        let loggers = logging
            .getattr("root")
            .and_then(|r| r.getattr("manager"))
            .and_then(|m| m.getattr("loggerDict"))
            .and_then(|d| d.cast_into::<PyDict>().map_err(PyErr::from));
        if let Ok(loggers) = loggers {
            let root = prefix_dot.trim_end_matches('.');
            // A placeholder for the prefix itself lists the session's loggers.
            drop_entries(&loggers, |k, v| {
                k.extract::<String>().is_ok_and(|k| {
                    k.starts_with(prefix_dot)
                        || (k == root && v.get_type().name().is_ok_and(|n| n == "PlaceHolder"))
                })
            });
        }
    }
    for what in released {
        log::info!(target: "subsession", "closing: removed the session's {what}");
    }
}

/// `s.close()`: deactivated, modules forgotten, GC run; reports survivors.
pub fn close<'py>(
    core: &Bound<'py, SessionCore>,
    force: bool,
) -> PyResult<(String, Vec<String>, Bound<'py, PyDict>)> {
    let py = core.py();
    let session = core.get();
    let label = session
        .name
        .clone()
        .unwrap_or_else(|| session.prefix.clone());
    {
        // One step under the session's lock: `enter` claims a frame under the same
        // lock, so a block can never begin once closing has (nor closing succeed
        // while a block is beginning).
        let mut st = session.lock(py);
        if st.closed {
            return Ok((label, Vec::new(), PyDict::new(py)));
        }
        if !st.frames.is_empty() {
            return Err(SessionError::new_err(format!(
                "session {} is active; close it after its with-block ends",
                session.label()
            )));
        }
        st.closed = true;
    }
    let mods = interp::sys_modules(py);
    let gc = py.import("gc")?;
    let weakref = py.import("weakref")?;
    let probe_class = interp::get(py)?.loaders.bind(py).getattr("UnloadProbe")?;
    // Find every key holding this session's modules: qualified names and extras.
    let mut keys: Vec<String> = Vec::new();
    for key in mods.keys() {
        if let Ok(k) = key.extract::<String>() {
            if k == session.prefix || k.starts_with(&session.prefix_dot) {
                keys.push(k);
            }
        }
    }
    let adopted = adopted(core);
    keys.extend(adopted.iter().cloned());
    let mut probes: Vec<(String, Bound<'_, PyAny>)> = Vec::new();
    let mut unloaded = Vec::new();
    for key in &keys {
        let Some(module) = mods.get_item(key)? else {
            continue;
        };
        mods.del_item(key)?;
        let real = if adopted.binary_search(key).is_ok() {
            key.clone()
        } else if let Some(real) = session.strip(key) {
            real.to_owned()
        } else {
            continue;
        };
        // A second key for the same module (a mirrored `requests.packages.*` name)
        // is unloaded with it, not reported twice.
        if activation::module_name(&module).as_deref() != Some(key.as_str()) {
            continue;
        }
        if let Ok(m) = module.cast::<PyModule>() {
            // A module's globals outlive the module object when a function of it is
            // still referenced (a Qt callback): watch the dict, through a probe in it.
            let probe = probe_class.call0()?;
            m.dict().set_item(leaks::PROBE_KEY, &probe)?;
            probes.push((real.clone(), weakref.call_method1("ref", (probe,))?));
        }
        unloaded.push(real);
    }
    let extras: Vec<(String, Py<PyAny>)> = {
        let mut st = session.lock(py);
        st.closed = true;
        st.modules.clear();
        st.reload = Tracking::default();
        st.extras.drain().collect()
    };
    for (name, module) in extras {
        if mods.get_item(&name)?.is_some_and(|m| m.is(module.bind(py))) {
            mods.del_item(&name)?;
        }
    }
    activation::forget_session(py, session, &unloaded);
    registry::unregister(py, &session.prefix);
    session.namespace.bind(py).clear();
    release_process_wide(py, &session.prefix_dot);
    gc.call_method0("collect")?;
    let leaks = PyDict::new(py);
    let mut survivors = Vec::new();
    for (real, probe_ref) in &probes {
        let probe = probe_ref.call0()?;
        if !probe.is_none() {
            survivors.push((real.clone(), probe));
        }
    }
    let probes: Vec<Bound<'_, PyAny>> = survivors.iter().map(|(_, p)| p.clone()).collect();
    let dicts = leaks::globals_of(py, &probes)?;
    let found: Vec<(String, Bound<'_, PyDict>)> = survivors
        .iter()
        .zip(dicts)
        .filter_map(|((real, _), d)| d.map(|d| (real.clone(), d)))
        .collect();
    let globals: Vec<Bound<'_, PyDict>> = found.iter().map(|(_, d)| d.clone()).collect();
    let described = leaks::describe(py, &globals, &session.prefix_dot)?;
    let suffixes = &interp::get(py)?.extension_suffixes;
    for ((real, dict), mut holders) in found.iter().zip(described) {
        let file: Option<String> = dict
            .get_item(intern!(py, "__file__"))?
            .and_then(|f| f.extract().ok());
        if file.is_some_and(|f| suffixes.iter().any(|s| f.ends_with(s.as_str()))) {
            // CPython keeps every single-phase extension module's state for the life
            // of the process: no holder in Python explains it.
            holders.insert(0, leaks::EXTENSION_HOLDER.to_owned());
        }
        leaks.set_item(real, PyList::new(py, holders)?)?;
        if force {
            dict.clear();
        }
    }
    // A survivor whose globals the collector cannot list (frozen with gc.freeze(),
    // or held from C) is still a survivor.
    for (real, _) in &survivors {
        if !leaks.contains(real)? {
            leaks.set_item(real, PyList::new(py, [leaks::UNSEEN_HOLDER])?)?;
        }
    }
    drop(globals);
    drop(found);
    drop(survivors);
    unloaded.sort();
    let kept: BTreeSet<String> = leaks
        .keys()
        .iter()
        .filter_map(|k| k.extract().ok())
        .collect();
    log::info!(
        target: "subsession",
        "closed session {label}: {} modules unloaded, {} still alive",
        unloaded.len(),
        kept.len()
    );
    crate::notify::emit(py, "closed", session, &unloaded);
    Ok((label, unloaded, leaks))
}
