//! Installing the import machinery: once per interpreter (the finder on
//! `sys.meta_path`, the `__import__` and `_gcd_import` hooks, the sharing policy's
//! standard-library names), and once per session (its code's `__import__`, proxies
//! and root package).

use std::collections::HashSet;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};

use super::finder::SessionFinder;
use super::hooks;
use crate::base::{interp, policy};
use crate::state::SessionCore;

/// Installs the finder and the hooks, once per interpreter.
#[pyfunction]
pub(crate) fn install(py: Python<'_>, loaders: &Bound<'_, PyModule>) -> PyResult<()> {
    let it = interp::init(py, loaders)?;
    let sys = py.import("sys")?;
    let stdlib: HashSet<String> = match sys.getattr("stdlib_module_names") {
        Ok(names) => names
            .try_iter()?
            .flatten()
            .filter_map(|n| n.extract().ok())
            .collect(),
        Err(_) => {
            let mut names = policy::scan_stdlib_dirs(&it.stdlib_dirs);
            let dynload: Vec<_> = it
                .stdlib_dirs
                .iter()
                .map(|d| d.join("lib-dynload"))
                .collect();
            names.extend(policy::scan_stdlib_dirs(&dynload));
            names
        }
    };
    let mut stdlib = stdlib;
    let builtin: Vec<String> = sys.getattr("builtin_module_names")?.extract()?;
    stdlib.extend(builtin);
    policy::init(stdlib);

    let meta_path = sys.getattr("meta_path")?.cast_into::<PyList>()?;
    let installed = meta_path.iter().any(|f| {
        f.get_type()
            .name()
            .is_ok_and(|n| n.to_cow().is_ok_and(|n| n == "SessionFinder"))
    });
    if !installed {
        meta_path.insert(0, Bound::new(py, SessionFinder)?)?;
    }
    let builtins = it.builtins.bind(py);
    let current = builtins.getattr("__import__")?;
    if current.is(it.original_import.bind(py)) {
        builtins.setattr("__import__", hooks::make_import_hook(py)?)?;
    }
    let bootstrap = it.bootstrap.bind(py);
    if bootstrap
        .getattr("_gcd_import")?
        .is(it.original_gcd_import.bind(py))
    {
        bootstrap.setattr("_gcd_import", wrap_pyfunction!(hooks::gcd_import, py)?)?;
    }
    Ok(())
}

/// Wires a new session's record into the import system: its code's `__import__`, the
/// `importlib`/`pkgutil` proxies its code sees, and the root package of its qualified
/// names (no path of its own: the finder resolves its children on the session's
/// search path).
pub(crate) fn wire_session(core: &Bound<'_, SessionCore>) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    let importer = Bound::new(
        py,
        hooks::SessionImport {
            session: core.clone().unbind(),
        },
    )?;
    let importer = hooks::make_session_import(&importer)?;
    session.builtins.bind(py).set_item("__import__", importer)?;
    let loaders = interp::get(py)?.loaders.bind(py);
    let _ = session
        .importlib_proxy
        .set(loaders.getattr("ImportlibProxy")?.call1((core,))?.unbind());
    let _ = session
        .pkgutil_proxy
        .set(loaders.getattr("PkgutilProxy")?.call1((core,))?.unbind());
    let root = PyModule::new(py, &session.prefix)?;
    root.setattr(
        "__path__",
        loaders.getattr("SessionRootPath")?.call1((core,))?,
    )?;
    root.setattr("__package__", &session.prefix)?;
    interp::sys_modules(py).set_item(&session.prefix, root)
}
