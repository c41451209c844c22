//! Handles to the interpreter objects the engine works on, looked up once.
//!
//! `sys.modules`, `sys.path` and `os.environ` are mutated in place and never
//! replaced by the engine, so holding them is safe; the originals of the hooked
//! functions are kept so that hooks can delegate and so nothing is hooked twice.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyModule};

pub(crate) struct Interp {
    pub(crate) sys: Py<PyModule>,
    pub(crate) builtins: Py<PyModule>,
    pub(crate) builtins_dict: Py<PyDict>,
    pub(crate) original_import: Py<PyAny>,
    pub(crate) bootstrap: Py<PyModule>,
    pub(crate) original_gcd_import: Py<PyAny>,
    pub(crate) resolve_name: Py<PyAny>,
    pub(crate) calc_package: Py<PyAny>,
    pub(crate) sanity_check: Py<PyAny>,
    pub(crate) path_finder: Py<PyAny>,
    pub(crate) module_spec: Py<PyAny>,
    pub(crate) source_loader: Py<PyAny>,
    pub(crate) sourceless_loader: Py<PyAny>,
    pub(crate) extension_loader: Py<PyAny>,
    pub(crate) extension_suffixes: Vec<String>,
    pub(crate) environ: Py<PyAny>,
    pub(crate) os: Py<PyModule>,
    pub(crate) reversed: Py<PyAny>,
    pub(crate) loaders: Py<PyModule>,
    pub(crate) stdlib_dirs: Vec<PathBuf>,
}

impl Interp {
    /// True for a path ending in one of this interpreter's extension suffixes.
    pub(crate) fn is_extension_file(&self, path: &str) -> bool {
        self.extension_suffixes
            .iter()
            .any(|s| path.ends_with(s.as_str()))
    }
}

static INTERP: PyOnceLock<Interp> = PyOnceLock::new();

/// The handles; `None` until `subsession` was imported (`_core.install`).
pub(crate) fn get(py: Python<'_>) -> PyResult<&Interp> {
    INTERP.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err(
            "subsession._core is not installed; import subsession first",
        )
    })
}

pub(crate) fn init<'py>(py: Python<'py>, loaders: &Bound<'py, PyModule>) -> PyResult<&'py Interp> {
    if let Some(existing) = INTERP.get(py) {
        return Ok(existing);
    }
    let builtins = py.import("builtins")?;
    let bootstrap = py.import("importlib._bootstrap")?;
    let machinery = py.import("importlib.machinery")?;
    let os = py.import("os")?;
    let sysconfig = py.import("sysconfig")?;
    let paths = sysconfig.call_method0("get_paths")?;
    let mut stdlib_dirs = Vec::new();
    for key in ["stdlib", "platstdlib"] {
        if let Some(p) = paths
            .get_item(key)
            .ok()
            .and_then(|p| p.extract::<String>().ok())
        {
            let dir = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p));
            if !stdlib_dirs.contains(&dir) {
                stdlib_dirs.push(dir);
            }
        }
    }
    let interp = Interp {
        sys: py.import("sys")?.unbind(),
        builtins_dict: builtins.dict().unbind(),
        original_import: builtins.getattr("__import__")?.unbind(),
        builtins: builtins.unbind(),
        original_gcd_import: bootstrap.getattr("_gcd_import")?.unbind(),
        resolve_name: bootstrap.getattr("_resolve_name")?.unbind(),
        calc_package: bootstrap.getattr("_calc___package__")?.unbind(),
        sanity_check: bootstrap.getattr("_sanity_check")?.unbind(),
        bootstrap: bootstrap.unbind(),
        path_finder: machinery.getattr("PathFinder")?.unbind(),
        module_spec: machinery.getattr("ModuleSpec")?.unbind(),
        source_loader: machinery.getattr("SourceFileLoader")?.unbind(),
        sourceless_loader: machinery.getattr("SourcelessFileLoader")?.unbind(),
        extension_loader: machinery.getattr("ExtensionFileLoader")?.unbind(),
        extension_suffixes: machinery.getattr("EXTENSION_SUFFIXES")?.extract()?,
        environ: os.getattr("environ")?.unbind(),
        os: os.unbind(),
        reversed: py.import("builtins")?.getattr("reversed")?.unbind(),
        loaders: loaders.clone().unbind(),
        stdlib_dirs,
    };
    let _ = INTERP.set(py, interp);
    get(py)
}

/// `sys.modules` (the interpreter's own dict, even if `sys.modules` was rebound).
pub(crate) fn sys_modules(py: Python<'_>) -> Bound<'_, PyDict> {
    // SAFETY: returns a borrowed reference to the interpreter's module dict, which
    // lives as long as the interpreter; we take a new reference at once.
    unsafe {
        let ptr = pyo3::ffi::PyImport_GetModuleDict();
        Bound::from_borrowed_ptr(py, ptr).cast_into_unchecked()
    }
}

/// `sys.path` as the live list (an error if someone replaced it with a non-list).
pub(crate) fn sys_path(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let path = get(py)?.sys.bind(py).getattr(pyo3::intern!(py, "path"))?;
    Ok(path.cast_into::<PyList>()?)
}

/// Calls the original C `__import__` directly (no Python-level dispatch).
pub(crate) fn import_level<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    globals: Option<&Bound<'py, PyAny>>,
    locals: Option<&Bound<'py, PyAny>>,
    fromlist: Option<&Bound<'py, PyAny>>,
    level: i32,
) -> PyResult<Bound<'py, PyAny>> {
    let ptr = |o: Option<&Bound<'py, PyAny>>| o.map_or(std::ptr::null_mut(), |o| o.as_ptr());
    // SAFETY: all pointers are valid borrowed references or NULL, which the C API
    // accepts for globals/locals/fromlist; the result is a new reference or NULL.
    unsafe {
        let result = pyo3::ffi::PyImport_ImportModuleLevelObject(
            name.as_ptr(),
            ptr(globals),
            ptr(locals),
            ptr(fromlist),
            level,
        );
        Bound::from_owned_ptr_or_err(py, result)
    }
}

/// True when `fromlist` is a non-empty sequence.
pub(crate) fn has_fromlist(fromlist: Option<&Bound<'_, PyAny>>) -> bool {
    match fromlist {
        None => false,
        Some(f) if f.is_none() => false,
        Some(f) => f.is_truthy().unwrap_or(false),
    }
}

/// The string entries of a fromlist, `*` excluded.
pub(crate) fn fromlist_names(fromlist: Option<&Bound<'_, PyAny>>) -> Vec<String> {
    let Some(f) = fromlist.filter(|f| !f.is_none()) else {
        return Vec::new();
    };
    let Ok(iter) = f.try_iter() else {
        return Vec::new();
    };
    iter.flatten()
        .filter_map(|x| x.extract::<String>().ok())
        .filter(|x| x != "*")
        .collect()
}
