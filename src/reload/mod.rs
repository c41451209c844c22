//! Hot reload (docs/contract.md §5): stale detection, reload in dependency order
//! inside the session, rollback of the whole batch on failure, and deep reload
//! ([`deep`]: functions and classes updated in place). The file side of reload on save
//! is [`watch`].
//!
//! Imports record, per session, who imports whom and each module's file stamp
//! (`imports::record`); `stale` compares stamps without holding the GIL.

pub(crate) mod deep;
pub(crate) mod same_code;
pub(crate) mod watch;

use std::collections::HashSet;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::activation;
use crate::base::errors::{ReloadError, SessionError};
use crate::base::interp;
use crate::base::names::module_name;
use crate::imports::record;
use crate::state::{SessionCore, notify};
use crate::tracking::stale::{self};

/// The `sys.modules` key of a session module: its qualified name, or its real name
/// when the session adopted it.
fn key_of(core: &Bound<'_, SessionCore>, real: &str) -> String {
    let session = core.get();
    if session.lock(core.py()).tracking.adopted.contains(real) {
        real.to_owned()
    } else {
        session.qualified(real)
    }
}

/// The facade's helpers for hooks and Maya registrations (`subsession._live`).
fn live(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    static LIVE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    LIVE.get_or_try_init(py, || {
        Ok(py.import(intern!(py, "subsession._live"))?.unbind())
    })
    .map(|m| m.bind(py).clone())
}

/// `importlib.reload` (the module found once: an import per reload went through the
/// hooks; the function read each time, as a patched one must be honoured).
fn importlib_reload(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static IMPORTLIB: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    IMPORTLIB
        .get_or_try_init(py, || {
            PyResult::Ok(py.import(intern!(py, "importlib"))?.unbind())
        })?
        .bind(py)
        .getattr(intern!(py, "reload"))
}

/// Real names of modules whose file changed since they were executed.
pub(crate) fn stale(core: &Bound<'_, SessionCore>) -> PyResult<Vec<String>> {
    let py = core.py();
    core.get().ensure_open(py)?;
    let groups = core.get().try_lock(py)?.tracking.files.snapshot();
    // The file system calls run without the GIL: other threads (Maya's UI) go on.
    let verdicts = py.detach(move || stale::changed(&groups));
    let mut changed = Vec::new();
    let mut touched = Vec::new();
    for verdict in verdicts {
        match verdict {
            stale::Verdict::Changed(name) => changed.push(name),
            stale::Verdict::Touched(name, stamp) => touched.push((name, stamp, None)),
            // Compiling runs Python: outside the session's lock.
            stale::Verdict::Unsure(entry, now) => {
                let found = same_code::resolve(py, &entry.path, entry.stamp, now);
                let print = found.source_hash.map(stale::Fingerprint::Source);
                if found.same {
                    touched.push((entry.name, now, print));
                } else {
                    changed.push(entry.name);
                }
            }
        }
    }
    {
        let mut st = core.get().try_lock(py)?;
        for (name, stamp, print) in touched {
            st.tracking.files.touch(&name, stamp, print);
        }
        changed.retain(|name| st.modules.contains_key(name) || st.tracking.adopted.contains(name));
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
    let adopted = |n: &str| session.lock(py).tracking.adopted.contains(n);
    let real = if let Ok(name) = module.extract::<String>() {
        session.strip(&name).unwrap_or(&name).to_owned()
    } else if let Some(name) = module_name(module).filter(|n| adopted(n)) {
        name
    } else {
        let name = module_name(module).ok_or_else(|| {
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
pub(crate) fn reload_one<'py>(
    core: &Bound<'py, SessionCore>,
    module: &Bound<'py, PyAny>,
    deep: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (real, m) = resolve_module(core, module)?;
    reload_batch(core, std::slice::from_ref(&real), deep)?;
    Ok(m.into_any())
}

/// `s.reload_stale()`: changed modules and every session module depending on them.
pub(crate) fn reload_stale(core: &Bound<'_, SessionCore>, deep: bool) -> PyResult<Vec<String>> {
    let changed = stale(core)?;
    reload_changed(core, &changed, deep)
}

/// Reloads `changed` (real names known to have changed, e.g. by a watcher) and every
/// session module depending on them, dependencies first; returns the order.
pub(crate) fn reload_changed(
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
        let mut st = core.get().try_lock(py)?;
        record::settle_imports(core.get(), py, &mut st);
        // Looked up per name met, not collected: a reload of one leaf must not cost
        // O(modules of the session).
        let known = |n: &str| st.modules.contains_key(n) || st.tracking.adopted.contains(n);
        let changed: Vec<String> = changed.iter().filter(|n| known(n)).cloned().collect();
        let plan = st.tracking.graph.reload_order(&changed, known);
        for cycle in &plan.cycles {
            log::warn!(target: "subsession", "import cycle, reloaded in name order: {}", cycle.join(" -> "));
        }
        plan.order
    };
    reload_batch(core, &order, deep)?;
    Ok(order)
}

/// Every module of the session, dependencies first.
pub(crate) fn reload_all(core: &Bound<'_, SessionCore>, deep: bool) -> PyResult<Vec<String>> {
    let py = core.py();
    core.get().ensure_open(py)?;
    let order = {
        let mut st = core.get().try_lock(py)?;
        record::settle_imports(core.get(), py, &mut st);
        let all: Vec<String> = st
            .modules
            .keys()
            .chain(st.tracking.adopted.iter())
            .cloned()
            .collect();
        let known: HashSet<&str> = all.iter().map(String::as_str).collect();
        st.tracking
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
    let reload = importlib_reload(py)?;
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
    let mut bodies: Vec<(String, Bound<'_, PyDict>)> = Vec::new();
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
            let old_bodies = session
                .lock(py)
                .bodies
                .get(real.as_str())
                .map(|b| b.clone_ref(py));
            reload.call1((&module,))?;
            let fresh = record::class_bodies(&module)?;
            if deep {
                let old_bodies = old_bodies.map(|b| b.into_bound(py));
                deep::update_in_place(&mut undo, &before, &module, old_bodies.as_ref())?;
                deep::follow_kept_classes(&fresh, &module)?;
            }
            bodies.push((real.clone(), fresh));
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
        return Err(reload_error(core, err));
    }
    for (real, module, _, _) in &done {
        record::note_run(core, real, module, true, false)?;
    }
    {
        let mut st = session.try_lock(py)?;
        let replaced: Vec<_> = bodies
            .into_iter()
            .filter_map(|(real, fresh)| st.bodies.insert(real, fresh.unbind()))
            .collect();
        drop(st);
        drop(replaced); // released outside the lock
    }
    for (real, module, _, state) in &done {
        live.call_method1(
            intern!(py, "after_reload"),
            (facade, real.as_str(), module, state),
        )?;
    }
    notify::emit(
        py,
        "reloaded",
        session,
        &done.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
    );
    left
}

/// `subsession.adopt`: takes over already imported global modules (real names kept)
/// with their files and the import edges found among them.
pub(crate) fn adopt(
    core: &Bound<'_, SessionCore>,
    modules: Vec<(String, Bound<'_, PyModule>)>,
    edges: Vec<(String, String)>,
) -> PyResult<()> {
    let py = core.py();
    core.get().ensure_open(py)?;
    for (real, _) in &modules {
        core.get()
            .try_lock(py)?
            .tracking
            .adopted
            .insert(real.clone());
    }
    for (real, module) in &modules {
        // What the classes hold now stands for their bodies: attributes a host
        // attached before the adoption cannot be told apart.
        let tracked = core.get().try_lock(py)?.tracking.files.contains(real);
        record::note_run(core, real, module, !tracked, true)?;
    }
    let mut st = core.get().try_lock(py)?;
    for (a, b) in edges {
        if a != b {
            st.tracking.graph.add_edge(&a, &b);
        }
    }
    Ok(())
}

/// The real names of the modules a session adopted.
pub(crate) fn adopted(core: &Bound<'_, SessionCore>) -> Vec<String> {
    let mut names: Vec<String> = core
        .get()
        .lock(core.py())
        .tracking
        .adopted
        .iter()
        .cloned()
        .collect();
    names.sort();
    names
}

/// One frame of a traceback: file, line, function.
type Frame = (String, i64, String);

fn frames(py: Python<'_>, err: &PyErr) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut tb = err.traceback(py).map(|t| t.into_any());
    while let Some(t) = tb.filter(|t| !t.is_none()) {
        let frame = (|| -> PyResult<Frame> {
            let code = t.getattr("tb_frame")?.getattr("f_code")?;
            Ok((
                code.getattr("co_filename")?.extract()?,
                t.getattr("tb_lineno")?.extract().unwrap_or(0),
                code.getattr("co_name")?.extract()?,
            ))
        })();
        if let Ok(frame) = frame {
            out.push(frame);
        }
        tb = t.getattr("tb_next").ok();
    }
    out
}

/// The ReloadError for a failed batch: its first line names the user's file and line
/// as a traceback does, then a short traceback of the session's own frames; the
/// original exception is its `__cause__`.
fn reload_error(core: &Bound<'_, SessionCore>, err: PyErr) -> PyErr {
    let py = core.py();
    let own = |file: &str| {
        core.get()
            .lock(py)
            .tracking
            .files
            .has_path(std::path::Path::new(file))
    };
    let error = ReloadError::new_err(describe_failure(py, &err, own));
    error.set_cause(py, Some(err));
    error
}

/// The source line `line` of `file`, as a traceback shows it.
fn source_line(py: Python<'_>, file: &str, line: i64) -> Option<String> {
    let linecache = py.import("linecache").ok()?;
    // The file was just edited: drop a cached older copy, as `traceback` does.
    let _ = linecache.call_method1("checkcache", (file,));
    let text: String = linecache
        .call_method1("getline", (file, line))
        .ok()?
        .extract()
        .ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The message of a failed reload. First line: where it failed — for a SyntaxError its
/// own location, else the deepest frame inside the session's own files (`own`), not
/// the standard library's `json/decoder.py` a bad `json.loads` raised in — and the
/// error. Then the session's frames, outermost first, and where the error was raised
/// when that is outside them.
fn describe_failure(py: Python<'_>, err: &PyErr, own: impl Fn(&str) -> bool) -> String {
    let value = err.value(py);
    let kind = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Error".into());
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    let is_syntax = value.is_instance_of::<pyo3::exceptions::PySyntaxError>();
    let syntax = value
        .getattr("filename")
        .ok()
        .and_then(|f| f.extract::<String>().ok())
        .zip(
            value
                .getattr("lineno")
                .ok()
                .and_then(|l| l.extract::<i64>().ok()),
        )
        .filter(|_| is_syntax);
    let frames = frames(py, err);
    let mine: Vec<&Frame> = frames.iter().filter(|f| own(&f.0)).collect();
    let location = syntax.clone().or_else(|| {
        mine.last()
            .or(frames.last().as_ref())
            .map(|f| (f.0.clone(), f.1))
    });
    let mut text = match &location {
        Some((file, line)) => format!(
            "reload failed, previous version kept: File \"{file}\", line {line}: {kind}: {message}"
        ),
        None => format!("reload failed, previous version kept: {kind}: {message}"),
    };
    if let Some((file, line)) = syntax {
        if let Some(source) = source_line(py, &file, line) {
            text.push_str(&format!("\n    {source}"));
        }
        return text;
    }
    for (file, line, func) in &mine {
        text.push_str(&format!("\n  File \"{file}\", line {line}, in {func}"));
        if let Some(source) = source_line(py, file, *line) {
            text.push_str(&format!("\n    {source}"));
        }
    }
    if let (Some(innermost), Some(last_mine)) = (frames.last(), mine.last()) {
        // `<frozen importlib._bootstrap>` (an import that failed) is no place to go.
        if !std::ptr::eq(innermost, *last_mine) && !innermost.0.starts_with('<') {
            text.push_str(&format!(
                "\n  (raised in \"{}\", line {})",
                innermost.0, innermost.1
            ));
        }
    }
    text
}
