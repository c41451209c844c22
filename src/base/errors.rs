//! The exceptions `subsession` raises: one root, `SessionError`, a `RuntimeError` as
//! Maya's own commands raise (docs/contract.md, "Errors").

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

create_exception!(
    subsession,
    SessionError,
    PyRuntimeError,
    "Base class of every error subsession raises (a RuntimeError, Maya's convention)."
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

/// `subsession.ConfigError(SessionError, ValueError)`: an invalid studio config.
/// `create_exception!` takes one base, so this type is made once with `type()`.
pub(crate) fn config_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    TYPE.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "subsession")?;
        namespace.set_item(
            "__doc__",
            "An invalid studio config; the message reads file:line:column: key: what is wrong.",
        )?;
        let bases = (py.get_type::<SessionError>(), py.get_type::<PyValueError>());
        let made = py
            .get_type::<PyType>()
            .call1(("ConfigError", bases, namespace))?;
        Ok(made.cast_into::<PyType>()?.unbind())
    })
    .map(|t| t.bind(py))
}
