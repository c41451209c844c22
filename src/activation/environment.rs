//! `os.environ` during blocks: applying a session's variables, restoring what blocks
//! changed, and reading back what a block changed, at a cost that follows the writes,
//! never the size of the environment (docs/design.md §3.3).
//!
//! Every write to the process environment from Python goes through `os.putenv` and
//! `os.unsetenv`: `os.environ.__setitem__`/`__delitem__` call them as globals of the
//! `os` module (CPython 3.9 on). Both are replaced, once, by hooks that, while any
//! block is active, note each key's value before the write in a journal. A block then
//! knows what it must restore (the first journal entry of each key since it began) and
//! what its code changed (the keys written since its variables were applied), without
//! comparing the whole environment. Only variables whose value differs are written.

use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};
use pyo3::{intern, wrap_pyfunction};
use rustc_hash::FxHashSet;

use super::stack::is_active;
use crate::base::interp;

/// One write to the environment while a block was active: the key's values before it.
struct Write {
    seq: u64,
    /// The key as `os.environ._data` holds it (bytes on POSIX, upper-case str on
    /// Windows); also what the original `putenv`/`unsetenv` accept.
    key: Py<PyAny>,
    /// The same key as plain bytes, for comparing keys without the GIL's help.
    ident: Vec<u8>,
    /// `os.environ._data[key]` before the write.
    data: Option<Py<PyAny>>,
    /// The C environment's value before the write (what child processes inherit).
    c: Option<OsString>,
}

struct Journal {
    next: u64,
    writes: Vec<Write>,
    /// Compact again once the journal has grown past this.
    compact_at: usize,
}

const COMPACT_FLOOR: usize = 512;

/// Touched only with the GIL held, and no Python code runs while it is locked (a
/// finaliser that writes the environment would otherwise wait on itself).
static JOURNAL: Mutex<Journal> = Mutex::new(Journal {
    next: 1,
    writes: Vec::new(),
    compact_at: COMPACT_FLOOR,
});

fn journal() -> std::sync::MutexGuard<'static, Journal> {
    JOURNAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The original `os.putenv`, `os.unsetenv`, the hooks that replace them, and
/// `os.environ`'s data dict.
struct Originals {
    putenv: Py<PyAny>,
    unsetenv: Py<PyAny>,
    put_hook: Py<PyAny>,
    unset_hook: Py<PyAny>,
    data: Option<Py<PyDict>>,
    /// `os.environ` encodes as UTF-8 bytes (POSIX with a UTF-8 file system encoding):
    /// a Rust string's bytes are then its encoded form, no Python call needed.
    utf8_bytes: bool,
}

static ORIGINALS: PyOnceLock<Originals> = PyOnceLock::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn originals(py: Python<'_>) -> PyResult<&Originals> {
    ORIGINALS.get_or_try_init(py, || {
        let it = interp::get(py)?;
        let os = it.os.bind(py);
        let data = it
            .environ
            .bind(py)
            .getattr(intern!(py, "_data"))
            .ok()
            .and_then(|d| d.cast_into::<PyDict>().ok());
        let encoding: String = it
            .sys
            .bind(py)
            .call_method0("getfilesystemencoding")?
            .extract()?;
        let utf8_bytes = cfg!(unix)
            && matches!(encoding.to_ascii_lowercase().as_str(), "utf-8" | "utf8")
            && data.as_ref().is_some_and(|d| {
                d.keys()
                    .iter()
                    .next()
                    .is_none_or(|k| k.is_instance_of::<PyBytes>())
            });
        Ok(Originals {
            putenv: os.getattr("putenv")?.unbind(),
            unsetenv: os.getattr("unsetenv")?.unbind(),
            put_hook: wrap_pyfunction!(putenv, py)?.into_any().unbind(),
            unset_hook: wrap_pyfunction!(unsetenv, py)?.into_any().unbind(),
            data: data.map(Bound::unbind),
            utf8_bytes,
        })
    })
}

/// Puts the journalling hooks in `os` (again, if code replaced them): one dict lookup
/// per outermost block once they are in place.
pub(super) fn install_hooks(py: Python<'_>) -> PyResult<()> {
    let orig = originals(py)?;
    let os = interp::get(py)?.os.bind(py);
    let dict = os.dict();
    let current = dict.get_item(intern!(py, "putenv"))?;
    if INSTALLED.load(Ordering::Acquire) && current.is_some_and(|c| c.is(orig.put_hook.bind(py))) {
        return Ok(());
    }
    dict.set_item("putenv", orig.put_hook.bind(py))?;
    dict.set_item("unsetenv", orig.unset_hook.bind(py))?;
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// `os.putenv` while subsession is loaded: the original, journalled during blocks.
#[pyfunction]
fn putenv(py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let orig = originals(py)?;
    let seq = if is_active() { note(py, key) } else { None };
    let done = orig.putenv.bind(py).call1((key, value));
    if done.is_err() {
        forget(seq);
    }
    done.map(drop)
}

/// `os.unsetenv` while subsession is loaded: the original, journalled during blocks.
#[pyfunction]
fn unsetenv(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
    let orig = originals(py)?;
    let seq = if is_active() { note(py, key) } else { None };
    let done = orig.unsetenv.bind(py).call1((key,));
    if done.is_err() {
        forget(seq);
    }
    done.map(drop)
}

/// A write the original refused (a bad key) changed nothing: its entry goes.
fn forget(seq: Option<u64>) {
    if let Some(seq) = seq {
        journal().writes.retain(|w| w.seq != seq);
    }
}

/// `key` as `os.environ._data` keys it, or None for a key it could not hold.
fn data_key<'py>(py: Python<'py>, key: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    if cfg!(unix) && key.is_instance_of::<PyBytes>() {
        return Some(key.clone());
    }
    let environ = interp::get(py).ok()?.environ.bind(py);
    environ.call_method1(intern!(py, "encodekey"), (key,)).ok()
}

fn ident_of(key: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(b) = key.cast::<PyBytes>() {
        return Some(b.as_bytes().to_vec());
    }
    key.extract::<String>().ok().map(String::into_bytes)
}

#[cfg(unix)]
fn c_name(key: &Bound<'_, PyAny>) -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt;
    key.cast::<PyBytes>()
        .ok()
        .map(|b| OsStr::from_bytes(b.as_bytes()).to_os_string())
}

#[cfg(not(unix))]
fn c_name(key: &Bound<'_, PyAny>) -> Option<OsString> {
    key.extract::<String>().ok().map(OsString::from)
}

/// The C environment's value of a `_data` key.
fn c_value(key: &Bound<'_, PyAny>) -> Option<OsString> {
    let name = c_name(key)?;
    if name.is_empty() {
        return None;
    }
    std::env::var_os(name)
}

fn data_value<'py>(py: Python<'py>, key: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    env_data(py).ok().flatten()?.get_item(key).ok().flatten()
}

/// Journals `key`'s values before a write; the entry's sequence number.
fn note(py: Python<'_>, key: &Bound<'_, PyAny>) -> Option<u64> {
    let key = data_key(py, key)?;
    let ident = ident_of(&key)?;
    let data = data_value(py, &key).map(Bound::unbind);
    let c = c_value(&key);
    Some(push(Write {
        seq: 0,
        key: key.unbind(),
        ident,
        data,
        c,
    }))
}

fn push(mut write: Write) -> u64 {
    let mut j = journal();
    write.seq = j.next;
    j.next += 1;
    let seq = write.seq;
    j.writes.push(write);
    seq
}

/// The journal position now: what a block restores to, or compares with, later.
pub(super) fn mark() -> u64 {
    journal().next
}

/// `os.environ`'s encoded data dict (live; `os.environ` is never replaced).
fn env_data(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    Ok(originals(py)?.data.as_ref().map(|d| d.bind(py).clone()))
}

/// `text` encoded as `os.environ` encodes keys (`key`) or values.
fn encode<'py>(py: Python<'py>, text: &str, key: bool) -> PyResult<Bound<'py, PyAny>> {
    if originals(py)?.utf8_bytes {
        return Ok(PyBytes::new(py, text.as_bytes()).into_any());
    }
    let environ = interp::get(py)?.environ.bind(py);
    let method = if key {
        intern!(py, "encodekey")
    } else {
        intern!(py, "encodevalue")
    };
    environ.call_method1(method, (text,))
}

/// A key and its values at some mark: (`_data` key, `_data` value, C value).
type Then = (Py<PyAny>, Option<Py<PyAny>>, Option<OsString>);

/// Each key written since `since`, with its values as they were then (the first
/// entry of each key at or after `since`).
fn firsts_since(py: Python<'_>, since: u64) -> Vec<Then> {
    let j = journal();
    let start = j.writes.partition_point(|w| w.seq < since);
    let mut seen: FxHashSet<&[u8]> = FxHashSet::default();
    j.writes[start..]
        .iter()
        .filter(|w| seen.insert(w.ident.as_slice()))
        .map(|w| {
            (
                w.key.clone_ref(py),
                w.data.as_ref().map(|d| d.clone_ref(py)),
                w.c.clone(),
            )
        })
        .collect()
}

fn same_data(a: Option<&Bound<'_, PyAny>>, b: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    match (a, b) {
        (None, None) => Ok(true),
        (Some(a), Some(b)) => Ok(a.is(b) || a.eq(b)?),
        _ => Ok(false),
    }
}

/// Sets `key` in `os.environ._data` and in the C environment, each only if it
/// differs, journalled as any write while a block is active.
fn write(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    data: Option<&Bound<'_, PyAny>>,
    c: Option<&OsStr>,
) -> PyResult<()> {
    let orig = originals(py)?;
    let now_data = data_value(py, key);
    let now_c = c_value(key);
    let c_differs = now_c.as_deref() != c;
    let data_differs = !same_data(now_data.as_ref(), data)?;
    if !c_differs && !data_differs {
        return Ok(());
    }
    if let Some(ident) = ident_of(key) {
        push(Write {
            seq: 0,
            key: key.clone().unbind(),
            ident,
            data: now_data.as_ref().map(|d| d.clone().unbind()),
            c: now_c,
        });
    }
    if c_differs {
        match c {
            Some(v) => orig.putenv.bind(py).call1((key, v))?,
            None => orig.unsetenv.bind(py).call1((key,))?,
        };
    }
    if data_differs {
        if let Some(d) = env_data(py)? {
            match data {
                Some(v) => d.set_item(key, v)?,
                None => d.del_item(key)?,
            }
        }
    }
    Ok(())
}

/// Puts back every variable written since `since` as it was then, in `os.environ`
/// and in the C environment. O(variables written since), whatever the environment's
/// size.
pub(super) fn revert_since(py: Python<'_>, since: u64) -> PyResult<()> {
    let mut first_error = None;
    for (key, data, c) in firsts_since(py, since) {
        let r = write(
            py,
            key.bind(py),
            data.as_ref().map(|d| d.bind(py)),
            c.as_deref(),
        );
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What the environment's code changed since `since`: (variable, new value or None if
/// removed), judged by the C environment (what child processes get). A value that is
/// not valid Unicode is not kept.
pub(super) fn changes_since(py: Python<'_>, since: u64) -> PyResult<Vec<(String, Option<String>)>> {
    let environ = interp::get(py)?.environ.bind(py);
    let mut changes = Vec::new();
    for (key, _, before) in firsts_since(py, since) {
        let key = key.bind(py);
        let now = c_value(key);
        if now == before {
            continue;
        }
        let name: String = match environ.call_method1(intern!(py, "decodekey"), (key,)) {
            Ok(n) => n.extract()?,
            Err(e) => return Err(e),
        };
        match now {
            None => changes.push((name, None)),
            Some(v) => match v.into_string() {
                Ok(v) => changes.push((name, Some(v))),
                Err(_) => {
                    log::debug!("environment variable {name}: value is not Unicode, not kept")
                }
            },
        }
    }
    changes.sort();
    Ok(changes)
}

/// Applies a session's variables. `rebase`: the journal mark of the environment the
/// variables apply on top of (an outer or another thread's block may have changed
/// it since); `inherit == false` removes every other variable, also those C code set
/// behind `os.environ`'s back (readline's `LINES`/`COLUMNS`), and is the one case
/// that costs O(environment).
pub(super) fn apply_env(
    py: Python<'_>,
    env: &[(String, Option<String>)],
    inherit: bool,
    rebase: Option<u64>,
) -> PyResult<()> {
    if let Some(since) = rebase {
        revert_since(py, since)?;
    }
    if !inherit {
        let keep: FxHashSet<Vec<u8>> = env
            .iter()
            .filter(|(_, v)| v.is_some())
            .filter_map(|(k, _)| encode(py, k, true).ok().and_then(|k| ident_of(&k)))
            .collect();
        let mut doomed: Vec<Bound<'_, PyAny>> = Vec::new();
        let mut listed: FxHashSet<Vec<u8>> = FxHashSet::default();
        if let Some(data) = env_data(py)? {
            for k in data.keys() {
                if let Some(id) = ident_of(&k) {
                    if !keep.contains(&id) {
                        doomed.push(k);
                    }
                    listed.insert(id);
                }
            }
        }
        for (k, _) in std::env::vars_os() {
            let Some(key) = c_key(py, &k)? else { continue };
            let Some(id) = ident_of(&key) else { continue };
            if !keep.contains(&id) && !listed.contains(&id) {
                doomed.push(key);
            }
        }
        for key in doomed {
            write(py, &key, None, None)?;
        }
    }
    for (k, v) in env {
        let key = encode(py, k, true)?;
        match v {
            None => write(py, &key, None, None)?,
            Some(v) => {
                let data = encode(py, v, false)?;
                write(py, &key, Some(&data), Some(OsStr::new(v)))?;
            }
        }
    }
    Ok(())
}

/// A C environment variable's name as `os.environ._data` would key it.
#[cfg(unix)]
fn c_key<'py>(py: Python<'py>, name: &OsStr) -> PyResult<Option<Bound<'py, PyAny>>> {
    use std::os::unix::ffi::OsStrExt;
    Ok(Some(PyBytes::new(py, name.as_bytes()).into_any()))
}

#[cfg(not(unix))]
fn c_key<'py>(py: Python<'py>, name: &OsStr) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(name) = name.to_str() else {
        return Ok(None);
    };
    Ok(Some(
        pyo3::types::PyString::new(py, &name.to_uppercase()).into_any(),
    ))
}

/// Forgets the journal once no block is active: nothing can be restored to it.
pub(super) fn clear_journal() {
    let dropped = {
        let mut j = journal();
        j.compact_at = COMPACT_FLOOR;
        std::mem::take(&mut j.writes)
    };
    // Dropped outside the lock: releasing a value may run a finaliser that writes the
    // environment.
    drop(dropped);
}

/// Keeps only the entries some live mark needs (the first of each key after each
/// mark), so a block open for hours beside many short ones does not grow the journal
/// without bound.
pub(super) fn compact(marks: &mut Vec<u64>) {
    let dropped = {
        let mut j = journal();
        if j.writes.len() < j.compact_at {
            return;
        }
        marks.sort_unstable();
        marks.dedup();
        let mut kept = Vec::with_capacity(j.writes.len());
        let mut dropped = Vec::new();
        let mut seen: FxHashSet<Vec<u8>> = FxHashSet::default();
        let mut next_mark = 0;
        for w in std::mem::take(&mut j.writes) {
            while next_mark < marks.len() && marks[next_mark] <= w.seq {
                next_mark += 1;
                seen.clear();
            }
            if next_mark == 0 || !seen.insert(w.ident.clone()) {
                // Before every mark, or not the first of its key since the last mark.
                dropped.push(w);
            } else {
                kept.push(w);
            }
        }
        j.writes = kept;
        j.compact_at = (2 * j.writes.len()).max(COMPACT_FLOOR);
        dropped
    };
    drop(dropped);
}
