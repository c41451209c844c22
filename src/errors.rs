//! The exceptions `subsession` raises (all subclasses of `SessionError`).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    subsession,
    SessionError,
    PyException,
    "Base class of subsession's errors."
);
create_exception!(
    subsession,
    ClosedSessionError,
    SessionError,
    "The session was closed; create a new one."
);
create_exception!(
    subsession,
    SessionExistsError,
    SessionError,
    "A session of that name already exists."
);
create_exception!(
    subsession,
    NoSuchSessionError,
    SessionError,
    "No open session has that name."
);
create_exception!(
    subsession,
    ReloadError,
    SessionError,
    "A reload failed; the previous module is still in place."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SessionError", py.get_type::<SessionError>())?;
    m.add("ClosedSessionError", py.get_type::<ClosedSessionError>())?;
    m.add("SessionExistsError", py.get_type::<SessionExistsError>())?;
    m.add("NoSuchSessionError", py.get_type::<NoSuchSessionError>())?;
    m.add("ReloadError", py.get_type::<ReloadError>())?;
    Ok(())
}
