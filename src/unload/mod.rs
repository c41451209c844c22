//! Unload (docs/contract.md §6): `close()` takes every module of the session out of
//! `sys.modules`, forgets what the engine kept of it, releases what the standard
//! library keeps process-wide for its code, collects, and reports each module that
//! is still alive with who holds it ([`leaks`]).

pub(crate) mod leaks;

use std::collections::{BTreeSet, HashMap};

use rustc_hash::FxHashSet;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFunction, PyList, PyModule, PyType};

use crate::activation;
use crate::base::errors::SessionError;
use crate::base::interp;
use crate::base::names::module_name;
use crate::reload;
use crate::state::{SessionCore, notify, registry};
use crate::tracking::Tracking;

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
    if let Some(warnings) = mods.get_item("warnings").ok().flatten() {
        release_warnings(py, &warnings, &mods, prefix_dot);
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

/// Drops the warning filters whose category is a class of the closing session (sympy
/// installs one for its deprecation warning) and the "already warned" entries keyed by
/// such a class: the filters list lives as long as the interpreter, so one filter
/// keeps the session's module alive (and costs a holder search on every close).
fn release_warnings(
    py: Python<'_>,
    warnings: &Bound<'_, PyAny>,
    mods: &Bound<'_, PyDict>,
    prefix_dot: &str,
) {
    let ours = |category: Option<Bound<'_, PyAny>>| {
        category.is_some_and(|c| c.is_instance_of::<PyType>() && defined_in_session(&c, prefix_dot))
    };
    let mut changed = false;
    if let Ok(filters) = warnings
        .getattr("filters")
        .and_then(|f| f.cast_into::<PyList>().map_err(PyErr::from))
    {
        // (action, message, category, module, lineno): removed in place, as
        // `warnings.resetwarnings` does, so `_warnings` keeps the same list.
        let doomed: Vec<usize> = filters
            .iter()
            .enumerate()
            .filter(|(_, f)| ours(f.get_item(2).ok()))
            .map(|(i, _)| i)
            .collect();
        for i in doomed.into_iter().rev() {
            changed |= filters.del_item(i).is_ok();
        }
    }
    // Keys are (text, category, lineno) (or with a module): per module and "once".
    let drop_keyed = |registry: &Bound<'_, PyDict>| {
        drop_entries(registry, |k, _| ours(k.get_item(1).ok()));
    };
    if let Ok(once) = warnings
        .getattr("onceregistry")
        .and_then(|r| r.cast_into::<PyDict>().map_err(PyErr::from))
    {
        drop_keyed(&once);
    }
    for (_, module) in mods.iter() {
        let Ok(m) = module.cast::<PyModule>() else {
            continue;
        };
        if let Ok(Some(registry)) = m.dict().get_item(intern!(py, "__warningregistry__")) {
            if let Ok(registry) = registry.cast::<PyDict>() {
                drop_keyed(registry);
            }
        }
    }
    if changed {
        // Invalidates the caches keyed by the filters' version (3.14 wants its lock).
        if let Ok(f) = warnings.getattr("_filters_mutated") {
            let _ = f.call0();
        } else if let (Ok(lock), Ok(f)) = (
            warnings.getattr("_lock"),
            warnings.getattr("_filters_mutated_lock_held"),
        ) {
            if lock.call_method0("__enter__").is_ok() {
                let _ = f.call0();
                let _ = lock.call_method1("__exit__", (py.None(), py.None(), py.None()));
            }
        }
    }
}

/// The survivors (indexes into `found`: real name, globals) that surviving extension
/// modules keep alive: the extension modules themselves (CPython keeps every
/// single-phase one, and C code keeps what it caches, until the process exits) and,
/// transitively, the modules their globals refer to — a module object, or a function,
/// class or instance of the module. A walk over the survivors' globals, never the heap.
fn held_by_extensions(
    py: Python<'_>,
    found: &[(String, Bound<'_, PyDict>)],
) -> PyResult<FxHashSet<usize>> {
    let it = interp::get(py)?;
    let by_name: HashMap<String, usize> = found
        .iter()
        .enumerate()
        .filter_map(|(i, (_, d))| {
            let name: String = d.get_item(intern!(py, "__name__")).ok()??.extract().ok()?;
            Some((name, i))
        })
        .collect();
    let mut kept: FxHashSet<usize> = FxHashSet::default();
    let mut pending: Vec<usize> = Vec::new();
    for (i, (real, dict)) in found.iter().enumerate() {
        let file: Option<String> = dict
            .get_item(intern!(py, "__file__"))?
            .and_then(|f| f.extract().ok());
        // Cython's runtime modules (`cython_runtime`, the shared `_cython_3_0_11`) are
        // made by compiled modules at init and kept in their C state.
        let cython = real == "cython_runtime" || real.starts_with("_cython_");
        if (cython || file.is_some_and(|f| it.is_extension_file(&f))) && kept.insert(i) {
            pending.push(i);
        }
    }
    let by_dict: HashMap<usize, usize> = found
        .iter()
        .enumerate()
        .map(|(i, (_, d))| (d.as_ptr() as usize, i))
        .collect();
    let named = |owner: &Bound<'_, PyAny>| -> Option<usize> {
        let name: String = owner
            .getattr(intern!(py, "__module__"))
            .ok()?
            .extract()
            .ok()?;
        by_name.get(&name).copied()
    };
    // A function keeps the globals it was defined in, whatever its `__module__` says
    // (numpy renames its public classes' and functions' modules).
    let defined_in = |f: &Bound<'_, PyAny>| -> Option<usize> {
        let globals = f.getattr(intern!(py, "__globals__")).ok()?;
        by_dict.get(&(globals.as_ptr() as usize)).copied()
    };
    let mut classes_seen: FxHashSet<usize> = FxHashSet::default();
    let mut modules_of = |v: &Bound<'_, PyAny>, out: &mut Vec<usize>| {
        if let Ok(m) = v.cast::<PyModule>() {
            let name: Option<String> = m
                .dict()
                .get_item(intern!(py, "__name__"))
                .ok()
                .flatten()
                .and_then(|n| n.extract().ok());
            out.extend(name.and_then(|n| by_name.get(&n).copied()));
            return;
        }
        if v.is_instance_of::<PyFunction>() {
            out.extend(defined_in(v).or_else(|| named(v)));
            return;
        }
        // Anything else by its class (never an instance's own attribute lookup, which
        // may run its code); a class by its module and the functions it defines.
        let class = if v.is_instance_of::<PyType>() {
            v.clone()
        } else {
            v.get_type().into_any()
        };
        if !classes_seen.insert(class.as_ptr() as usize) {
            return;
        }
        out.extend(named(&class));
        if let Ok(attrs) = class.getattr(intern!(py, "__dict__")) {
            if let Ok(values) = attrs.call_method0(intern!(py, "values")) {
                for f in values.try_iter().into_iter().flatten().flatten() {
                    if f.is_instance_of::<PyFunction>() {
                        out.extend(defined_in(&f));
                    }
                }
            }
        }
    };
    let mut targets = Vec::new();
    while let Some(i) = pending.pop() {
        let dict = &found[i].1;
        for (_, v) in dict.iter() {
            targets.clear();
            modules_of(&v, &mut targets);
            for &j in &targets {
                if kept.insert(j) {
                    pending.push(j);
                }
            }
        }
    }
    Ok(kept)
}

/// `s.close()`: deactivated, modules forgotten, GC run; reports survivors.
pub(crate) fn close<'py>(
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
        let mut st = session.try_lock(py)?;
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
    let adopted = reload::adopted(core);
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
        if module_name(&module).as_deref() != Some(key.as_str()) {
            continue;
        }
        if let Ok(m) = module.cast::<PyModule>() {
            // A module's globals outlive the module object when a function of it is
            // still referenced (a Qt callback): watch the dict, through a probe in it.
            // The probe points back at the dict, so a survivor's globals are known
            // without a heap search (the cycle alone keeps neither alive).
            let probe = probe_class.call0()?;
            probe.setattr(intern!(py, "globals"), m.dict())?;
            m.dict().set_item(leaks::PROBE_KEY, &probe)?;
            probes.push((real.clone(), weakref.call_method1("ref", (probe,))?));
        }
        unloaded.push(real);
    }
    let (extras, bodies, pending): (Vec<(String, Py<PyAny>)>, _, _) = {
        let mut st = session.try_lock(py)?;
        st.closed = true;
        st.modules.clear();
        st.tracking = Tracking::default();
        st.pending_seen.clear();
        (
            st.extras.drain().collect(),
            std::mem::take(&mut st.bodies),
            std::mem::take(&mut st.pending_imports),
        )
    };
    drop((bodies, pending)); // released outside the lock
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
    let found: Vec<(String, Bound<'_, PyDict>)> = survivors
        .iter()
        .filter_map(|(real, probe)| {
            let globals = probe.getattr(intern!(py, "globals")).ok()?;
            Some((real.clone(), globals.cast_into::<PyDict>().ok()?))
        })
        .collect();
    // What compiled extension modules keep is kept for the process's life: found once,
    // reported as one group, never searched for holders one by one.
    let kept = held_by_extensions(py, &found)?;
    let (grouped, rest): (Vec<_>, Vec<_>) = found
        .iter()
        .enumerate()
        .partition(|(i, _)| kept.contains(i));
    let globals: Vec<Bound<'_, PyDict>> = rest.iter().map(|(_, (_, d))| d.clone()).collect();
    let described = leaks::describe(py, &globals, &session.prefix_dot)?;
    for ((_, (real, _)), holders) in rest.iter().zip(described) {
        leaks.set_item(real, PyList::new(py, holders)?)?;
    }
    for (_, (real, _)) in &grouped {
        leaks.set_item(real, PyList::new(py, [leaks::EXTENSION_HOLDER])?)?;
    }
    if force {
        for (_, dict) in &found {
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
    notify::emit(py, "closed", session, &unloaded);
    Ok((label, unloaded, leaks))
}
