//! The file side of `Session.watch` (docs/contract.md §7): which files changed since the
//! watcher last looked, by stamp then content, without the GIL.
//!
//! A watcher keeps its own baseline per file, separate from what the session
//! executed: a save whose reload fails is "seen" and not reported again until the
//! next save (the old code keeps running; `stale()` still lists the module). It
//! runs no Python code: the thread that polls (`subsession._watch`) only calls
//! [`Watch::poll`], and reloads run on the host's main thread. (A touched file whose
//! code came from its `.pyc` is compiled to compare it with that code: a builtin,
//! no module code runs.)

use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::prelude::*;

use super::same_code;
use crate::state::SessionCore;
use crate::tracking::stale::{self, Entry, Fingerprint, Stamp};

/// What the watcher saw of one file: its stamp and fingerprint.
type Seen = (Option<Stamp>, Option<Fingerprint>);

/// A polling watcher of one session's module files.
#[pyclass(frozen, module = "subsession._core")]
pub(crate) struct Watch {
    core: Py<SessionCore>,
    /// Per real name: the stamp and fingerprint the watcher saw last, when that
    /// differs from what the session executed.
    seen: Mutex<HashMap<String, Seen>>,
}

#[pymethods]
impl Watch {
    #[new]
    fn new(core: Bound<'_, SessionCore>) -> Self {
        Watch {
            core: core.unbind(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Real names of the session's modules whose file content changed since the
    /// last poll (or since they were executed). Stats and reads run without the GIL;
    /// a closed session has none.
    fn poll(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let core = self.core.bind(py);
        let session = core.get();
        let groups = {
            let mut st = session.try_lock(py)?;
            if st.closed {
                return Ok(Vec::new());
            }
            st.tracking.files.snapshot()
        };
        let seen = &self.seen;
        let (mut changed, unsure) = py.detach(|| {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let mut changed = Vec::new();
            let mut unsure: Vec<(Entry, Stamp)> = Vec::new();
            for group in groups.iter() {
                stale::scan_group(group, |entry, now| {
                    if now == entry.stamp {
                        // What the session executed: up to date.
                        if !seen.is_empty() {
                            seen.remove(&entry.name);
                        }
                        return;
                    }
                    let (was, print) = seen
                        .get(&entry.name)
                        .copied()
                        .unwrap_or((entry.stamp, entry.print));
                    if now == was {
                        return;
                    }
                    if let (Some(now), Some(was), Some(Fingerprint::Pyc)) = (now, was, print) {
                        if now.size == was.size {
                            // Judged below, with the GIL.
                            let mut probe = entry.clone();
                            probe.stamp = Some(was);
                            unsure.push((probe, now));
                            return;
                        }
                    }
                    let current = now
                        .and_then(|_| stale::hash_file(&entry.path))
                        .map(Fingerprint::Source);
                    if current.is_some() && current == print {
                        // A touch: same bytes under a new stamp.
                        seen.insert(entry.name.clone(), (now, print));
                        return;
                    }
                    seen.insert(entry.name.clone(), (now, current));
                    changed.push(entry.name.clone());
                });
            }
            (changed, unsure)
        });
        for (entry, now) in unsure {
            let found = same_code::resolve(py, &entry.path, entry.stamp, now);
            let print = found.source_hash.map(Fingerprint::Source);
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(entry.name.clone(), (Some(now), print));
            if !found.same {
                changed.push(entry.name);
            }
        }
        let st = session.try_lock(py)?;
        changed.retain(|n| st.modules.contains_key(n) || st.tracking.adopted.contains(n));
        changed.sort();
        Ok(changed)
    }

    /// How many files the watcher looks at (the session's module files).
    fn files(&self, py: Python<'_>) -> PyResult<usize> {
        let core = self.core.bind(py);
        let groups = core.get().try_lock(py)?.tracking.files.snapshot();
        Ok(groups.iter().map(|g| g.entries().len()).sum())
    }
}
