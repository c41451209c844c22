//! The floor `scripts/bench` compares an enter+exit with: the real-name `sys.modules`
//! writes an activation of those modules cannot avoid, done from Rust with no
//! bookkeeping (no owner table, no `sys.path`/environment, no checks).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::base::interp;

/// `rounds` times: sets `sys.modules[names[i]] = modules[i]` for every name, then puts
/// back what each name held before the first round (deleting names that held
/// nothing). Benchmark only; the caller times it.
#[pyfunction]
#[pyo3(name = "_floor_swap")]
pub(crate) fn floor_swap(
    py: Python<'_>,
    names: &Bound<'_, PyList>,
    modules: &Bound<'_, PyList>,
    rounds: usize,
) -> PyResult<()> {
    let mods: Bound<'_, PyDict> = interp::sys_modules(py);
    let pairs: Vec<(Bound<'_, PyString>, Bound<'_, PyAny>)> = names
        .iter()
        .zip(modules.iter())
        .map(|(n, m)| Ok((n.cast_into::<PyString>()?, m)))
        .collect::<PyResult<_>>()?;
    let before: Vec<Option<Bound<'_, PyAny>>> = pairs
        .iter()
        .map(|(n, _)| mods.get_item(n))
        .collect::<PyResult<_>>()?;
    for _ in 0..rounds {
        for (name, module) in &pairs {
            mods.set_item(name, module)?;
        }
        for ((name, _), old) in pairs.iter().zip(&before).rev() {
            match old {
                Some(old) => mods.set_item(name, old)?,
                None => mods.del_item(name)?,
            }
        }
    }
    Ok(())
}

/// `(symbol, offset, read_only)` for each slot of a redirected C-API function in the
/// library file at `path` (ELF, Mach-O or PE, whatever this OS is): checks of real
/// binaries built or downloaded for each OS. Raises OSError/ValueError.
#[pyfunction]
#[pyo3(name = "_import_slots")]
pub(crate) fn import_slots(path: std::path::PathBuf) -> PyResult<Vec<(String, usize, bool)>> {
    let data = std::fs::read(&path)?;
    let slots = crate::native::file_slots(&data, &crate::native::REDIRECTED)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{}: {e}", path.display())))?;
    Ok(slots
        .into_iter()
        .map(|s| (s.symbol, s.offset, s.read_only))
        .collect())
}

/// `(libraries, slots, nanoseconds)`: the compiled libraries whose C-API slots were
/// pointed at their session so far, the slots written and the time it took.
#[pyfunction]
#[pyo3(name = "_redirect_stats")]
pub(crate) fn redirect_stats() -> (usize, usize, u64) {
    crate::imports::capi::stats()
}
