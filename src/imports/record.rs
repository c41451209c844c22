//! What an import records for reload: the file each session module ran from (with
//! the stamp its code was validated with and a hash of what ran) and the import
//! edges of session code, for dependency order.

use std::path::PathBuf;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use crate::base::interp;
use crate::base::names::module_name;
use crate::state::SessionCore;
use crate::tracking::stale::{self, stamp_of};

/// True once a module's file is tracked (reloads update the stamp themselves, after
/// the whole batch succeeded).
pub(crate) fn is_tracked(core: &Bound<'_, SessionCore>, real: &str) -> bool {
    core.get().lock(core.py()).tracking.files.contains(real)
}

/// Records a module's source file and its stamp when it finishes executing.
pub(crate) fn note_loaded(core: &Bound<'_, SessionCore>, real: &str, module: &Bound<'_, PyModule>) {
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
        // if the file still has the stamp the code was validated with. Not for an
        // extension module: it cannot be initialised again, so any new stamp reports
        // it (hashing its library at import read ~90 MB for a numpy/scipy/pandas stack,
        // ~40 % of that start-up's overhead in a session).
        let extension = path
            .to_str()
            .is_some_and(|p| interp::get(py).is_ok_and(|it| it.is_extension_file(p)));
        let hash = if extension {
            None
        } else {
            stamp.and_then(|s| py.detach(|| stale::hash_if_stamp(&path, s)))
        };
        core.get()
            .lock(py)
            .tracking
            .files
            .record(real, path, stamp, hash);
    }
}

/// Records import edges `importer -> imported` for an import statement of session code.
pub(crate) fn note_import(
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
        None => match module_name(result)
            .as_deref()
            .and_then(|n| session.strip(n))
        {
            Some(real) => real.to_owned(),
            None => return,
        },
    };
    let names = interp::fromlist_names(fromlist);
    // Busy (this thread is inside subsession already): the edge is not recorded.
    let Ok(mut st) = session.try_lock(py) else {
        return;
    };
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
            st.tracking.graph.add_edge(&importer, &target);
        }
    }
}
