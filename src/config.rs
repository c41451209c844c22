//! Studio config (SPEC §5). Owned by the config work; stub until it lands.
use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
