//! Whether a file whose stamp moved still holds the code that ran, for a module whose
//! code came from its `.pyc`: that import never read the source, so there is no hash
//! of it to compare (reading and hashing it cost ~10 µs per import, a tenth of a
//! session import). The `.pyc` whose header still names the old stamp is the record
//! of what ran; the new source, compiled, is compared with it as code (code objects
//! compare by value: bytecode, constants, names, line table; not by file name).
//!
//! Anything unexpected (no `.pyc`, a header for another stamp, a source that does not
//! compile) answers "changed": a needless reload is safe, a missed one is not.

use std::path::Path;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::tracking::stale::{self, Stamp};

/// What comparing the new source with the `.pyc` found.
pub(crate) struct Resolution {
    /// The new source compiles to the code that ran: a touch, not a change.
    pub(crate) same: bool,
    /// The hash of the new source, the fingerprint from now on (the `.pyc` header
    /// still names the old stamp, so it cannot vouch for the new one).
    pub(crate) source_hash: Option<u64>,
}

/// Compares the source at `path`, now stamped `now`, with the code its `.pyc` holds
/// for the stamp `was` the module ran with.
pub(crate) fn resolve(py: Python<'_>, path: &Path, was: Option<Stamp>, now: Stamp) -> Resolution {
    let Some(source) = py.detach(|| stale::read_if_stamp(path, now)) else {
        return Resolution {
            same: false,
            source_hash: None,
        };
    };
    let same = was.is_some_and(|was| same_code(py, path, was, &source).unwrap_or(false));
    Resolution {
        same,
        source_hash: Some(stale::hash_bytes(&source)),
    }
}

fn same_code(py: Python<'_>, path: &Path, was: Stamp, source: &[u8]) -> PyResult<bool> {
    let Some(path_str) = path.to_str() else {
        return Ok(false);
    };
    let util = py.import(intern!(py, "importlib.util"))?;
    let pyc: String = util
        .call_method1(intern!(py, "cache_from_source"), (path_str,))?
        .extract()?;
    let Ok(data) = py.detach(|| std::fs::read(&pyc)) else {
        return Ok(false);
    };
    let magic: Vec<u8> = util.getattr(intern!(py, "MAGIC_NUMBER"))?.extract()?;
    if data.len() < 16 || data[..4] != magic[..] {
        return Ok(false);
    }
    let word = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let source_bytes = PyBytes::new(py, source);
    if word(4) & 1 != 0 {
        // A hash-based `.pyc` names its source by hash (PEP 552).
        let hash: Vec<u8> = util
            .call_method1(intern!(py, "source_hash"), (&source_bytes,))?
            .extract()?;
        return Ok(data[8..16] == hash[..]);
    }
    // importlib writes `int(st_mtime) & 0xFFFFFFFF` and `st_size & 0xFFFFFFFF`.
    let was_secs = (was.mtime_ns / 1_000_000_000) as i64 as u32;
    if word(8) != was_secs || word(12) != was.size as u32 {
        return Ok(false);
    }
    let marshal = py.import(intern!(py, "marshal"))?;
    let ran = marshal.call_method1(intern!(py, "loads"), (PyBytes::new(py, &data[16..]),))?;
    // What SourceFileLoader.source_to_code does with the same bytes.
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "dont_inherit"), true)?;
    let compile = py
        .import(intern!(py, "builtins"))?
        .getattr(intern!(py, "compile"))?;
    let new = compile.call((source_bytes, path_str, "exec"), Some(&kwargs))?;
    ran.eq(new)
}
