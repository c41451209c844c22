//! What an import records for reload: the file each session module ran from (with
//! the stamp its code was validated with and a fingerprint of what ran) and the import
//! edges of session code, for dependency order.

use std::path::PathBuf;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule, PyTuple, PyType, PyWeakrefReference};

use crate::base::interp;
use crate::state::{PendingImport, SessionCore, State};
use crate::tracking::stale::{self, Fingerprint, stamp_of};

/// What the stale check records of a module that finished executing: its file, the
/// stamp its code was validated with and a fingerprint of what ran.
pub(crate) type FileRecord = (PathBuf, Option<stale::Stamp>, Option<Fingerprint>);

/// Records what a module that finished executing leaves for reload: its file record
/// (`file`: the file, the stamp its code was validated with, a fingerprint of what
/// ran) and what its class bodies defined (`bodies`). Both are read outside the
/// session's state and recorded with one look at it.
pub(crate) fn note_run(
    core: &Bound<'_, SessionCore>,
    real: &str,
    module: &Bound<'_, PyModule>,
    file: bool,
    bodies: bool,
) -> PyResult<()> {
    let file = if file { file_record(module) } else { None };
    let bodies = if bodies {
        bodies_of(real, module)
    } else {
        None
    };
    if file.is_none() && bodies.is_none() {
        return Ok(());
    }
    let mut st = core.get().try_lock(core.py())?;
    if let Some((path, stamp, print)) = file {
        st.tracking.files.record(real, path, stamp, print);
    }
    let previous = bodies.and_then(|b| st.bodies.insert(real.to_owned(), b.unbind()));
    drop(st);
    drop(previous); // outside the lock
    Ok(())
}

/// [`FileRecord`] of `module`.
fn file_record(module: &Bound<'_, PyModule>) -> Option<FileRecord> {
    let py = module.py();
    let file = module
        .dict()
        .get_item(intern!(py, "__file__"))
        .ok()
        .flatten()
        .and_then(|f| f.extract::<String>().ok());
    let path = PathBuf::from(file?);
    let loader = module
        .getattr(intern!(py, "__spec__"))
        .and_then(|s| s.getattr(intern!(py, "loader")))
        .ok();
    // The session's source loader kept the stat it validated the code with.
    let seen = loader
        .as_ref()
        .and_then(|l| l.getattr(intern!(py, "_stamp")).ok())
        .and_then(|t| t.extract::<(i128, u64)>().ok());
    let stamp = match seen {
        Some((mtime_ns, size)) => Some(stale::Stamp { mtime_ns, size }),
        None => stamp_of(&path),
    };
    // What was executed, for telling an edit from a touch, from the bytes the
    // session's loader read (`_ran`): the source it compiled is hashed; code from
    // the `.pyc` needs nothing (its header names the stamp). Another loader (an
    // adopted module's) leaves the file to be read here. Not for an extension
    // module: it cannot be initialised again, so any new stamp reports it
    // (hashing its library at import read ~90 MB for a numpy/scipy/pandas stack).
    let extension = path
        .to_str()
        .is_some_and(|p| interp::get(py).is_ok_and(|it| it.is_extension_file(p)));
    let ran = loader
        .as_ref()
        .and_then(|l| l.getattr(intern!(py, "_ran")).ok())
        .filter(|r| !r.is_none());
    let print = if extension {
        None
    } else if let Some(ran) = ran {
        if let Some(l) = &loader {
            // The bytes are not needed any more: do not keep a source per module.
            let _ = l.setattr(intern!(py, "_ran"), py.None());
        }
        match ran.cast::<PyBytes>() {
            Ok(source) => Some(Fingerprint::Source(stale::hash_bytes(source.as_bytes()))),
            Err(_) => Some(Fingerprint::Pyc),
        }
    } else {
        stamp
            .and_then(|s| py.detach(|| stale::hash_if_stamp(&path, s)))
            .map(Fingerprint::Source)
    };
    Some((path, stamp, print))
}

/// Past this many distinct unsettled statements an import settles them, which bounds
/// the log (~2 MB); a tool's start-up stays below it (sympy, pandas, networkx and
/// scipy.stats together run ~20,000 import statements, fewer distinct ones), so its
/// edges are made only if a reload asks.
const PENDING_LIMIT: usize = 1 << 16;

/// Notes an import statement of session code, for dependency order. Only the
/// statement's objects are kept; the edges are made when a reload asks
/// ([`settle_imports`]).
pub(crate) fn note_import(
    core: &Bound<'_, SessionCore>,
    globals: Option<&Bound<'_, PyAny>>,
    absolute: Option<&Bound<'_, PyAny>>,
    fromlist: Option<&Bound<'_, PyAny>>,
    result: &Bound<'_, PyAny>,
) {
    let py = core.py();
    let Some(importer) = globals
        .and_then(|g| g.cast::<PyDict>().ok())
        .and_then(|g| g.get_item(intern!(py, "__name__")).ok().flatten())
    else {
        return;
    };
    let base = match absolute {
        Some(a) => a.clone(),
        None => match result.getattr(intern!(py, "__name__")) {
            Ok(n) => n,
            Err(_) => return,
        },
    };
    let key = (
        importer.as_ptr() as usize,
        base.as_ptr() as usize,
        fromlist.map_or(0, |f| f.as_ptr() as usize),
    );
    // Busy (this thread is inside subsession already): the statement is not recorded.
    let Ok(mut st) = core.get().try_lock(py) else {
        return;
    };
    if !st.pending_seen.insert(key) {
        return; // logged already
    }
    let pending = PendingImport {
        importer: importer.unbind(),
        base: base.unbind(),
        relative: absolute.is_none(),
        fromlist: fromlist
            .filter(|f| !f.is_none())
            .map(|f| f.clone().unbind()),
    };
    st.pending_imports.push(pending);
    if st.pending_imports.len() >= PENDING_LIMIT {
        settle_imports(core.get(), py, &mut st);
    }
}

/// Turns the logged import statements into graph edges `importer -> imported`.
pub(crate) fn settle_imports(session: &SessionCore, py: Python<'_>, st: &mut State) {
    let pending = std::mem::take(&mut st.pending_imports);
    st.pending_seen.clear();
    for statement in &pending {
        let Ok(importer) = statement.importer.bind(py).extract::<String>() else {
            continue;
        };
        let Some(importer) = session.strip(&importer) else {
            continue;
        };
        let Ok(base) = statement.base.bind(py).extract::<String>() else {
            continue;
        };
        // A relative import names the module it resolved to (qualified).
        let base = if statement.relative {
            match session.strip(&base) {
                Some(real) => real.to_owned(),
                None => continue,
            }
        } else {
            base
        };
        let names = interp::fromlist_names(statement.fromlist.as_ref().map(|f| f.bind(py)));
        // `from pkg import sub` depends on the submodule, not on pkg's own code (pkg
        // may import this very module); a name that is not a submodule comes from pkg.
        let mut needs_base = names.is_empty();
        for x in names {
            let sub = format!("{base}.{x}");
            if st.modules.contains_key(&sub) {
                if sub != importer {
                    st.tracking.graph.add_edge(importer, &sub);
                }
            } else {
                needs_base = true;
            }
        }
        if needs_base && base != importer {
            st.tracking.graph.add_edge(importer, &base);
        }
    }
    drop(pending); // strings and the statements' fromlists: nothing runs code
}

/// What each class of `module` (defined there, bound to a global) holds right after
/// the module's code ran: `{global name: (weakref to the class, tuple of its __dict__
/// keys)}`. That is what its body (and decorators, and the module's own code)
/// defined; a host that attaches to the class later (Blender's `bl_rna`, a registry)
/// is not in it, so a deep reload leaves those attributes alone. A tuple of strings:
/// the collector stops tracking it at its first pass (a frozenset per class was
/// traversed by every collection for the session's life).
pub(crate) fn class_bodies<'py>(module: &Bound<'py, PyModule>) -> PyResult<Bound<'py, PyDict>> {
    let py = module.py();
    let globals = module.dict();
    let out = PyDict::new(py);
    let Some(name) = globals.get_item(intern!(py, "__name__"))? else {
        return Ok(out);
    };
    let tuple = py.get_type::<PyTuple>();
    for (key, value) in globals.iter() {
        let Ok(class) = value.cast::<PyType>() else {
            continue;
        };
        // A class defined here got the very `__name__` object as `__module__`.
        let here = class
            .getattr(intern!(py, "__module__"))
            .is_ok_and(|m| m.is(&name) || m.eq(&name).unwrap_or(false));
        if !here {
            continue;
        }
        let Ok(reference) = PyWeakrefReference::new(class) else {
            continue;
        };
        // tuple(cls.__dict__): one C-level pass over the class's keys.
        let keys = tuple.call1((class.getattr(intern!(py, "__dict__"))?,))?;
        out.set_item(key, (reference, keys))?;
    }
    Ok(out)
}

/// [`class_bodies`] of `module`, or `None` (logged) when they cannot be read.
fn bodies_of<'py>(real: &str, module: &Bound<'py, PyModule>) -> Option<Bound<'py, PyDict>> {
    match class_bodies(module) {
        Ok(bodies) => Some(bodies),
        Err(e) => {
            log::debug!(target: "subsession", "class bodies of {real} not recorded: {e}");
            None
        }
    }
}
