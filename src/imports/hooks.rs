//! The import hooks: each import goes to the session its code belongs to.
//!
//! - Session code runs with its own `__builtins__`, whose `__import__` is a
//!   [`SessionImport`]: its absolute imports resolve to the session's qualified names,
//!   whatever thread or time they run at ("sticky" routing).
//! - `builtins.__import__` is replaced once, permanently, by [`global_import`]: with no
//!   block active anywhere it checks one atomic and delegates to the C import. During
//!   a block it sends the block's imports to the session and other threads' imports to
//!   the global modules.
//! - `importlib._bootstrap._gcd_import` (behind `importlib.import_module`) is replaced
//!   by [`gcd_import`]: a dynamic import by real name is attributed to the nearest
//!   calling frame outside the standard library (`importlib.resources.files("pkg")`
//!   called from session code resolves in that session).

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use super::record;
use crate::activation::{self, is_active};
use crate::base::names::{PREFIX, dotted_prefixes, is_session_module, top_level};
use crate::base::{interp, policy};
use crate::state::{SessionCore, registry};

/// The `__import__` of one session's code.
#[pyclass(frozen, module = "subsession._core")]
pub(crate) struct SessionImport {
    pub(crate) session: Py<SessionCore>,
}

#[pymethods]
impl SessionImport {
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.session)
    }

    #[pyo3(signature = (name, globals=None, locals=None, fromlist=None, level=0))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        globals: Option<&Bound<'py, PyAny>>,
        locals: Option<&Bound<'py, PyAny>>,
        fromlist: Option<&Bound<'py, PyAny>>,
        level: i32,
    ) -> PyResult<Bound<'py, PyAny>> {
        session_import(
            self.session.bind(py),
            name,
            globals,
            locals,
            fromlist,
            level,
            true,
        )
    }

    fn __repr__(&self) -> String {
        format!("<subsession import hook of {}>", self.session.get().prefix)
    }
}

/// An import statement of session code (or, with `proxies=false`, of a block).
pub(crate) fn session_import<'py>(
    core: &Bound<'py, SessionCore>,
    name: &Bound<'py, PyAny>,
    globals: Option<&Bound<'py, PyAny>>,
    locals: Option<&Bound<'py, PyAny>>,
    fromlist: Option<&Bound<'py, PyAny>>,
    level: i32,
    proxies: bool,
) -> PyResult<Bound<'py, PyAny>> {
    import_statement(core, name, globals, locals, fromlist, level, proxies)
        .map_err(|e| with_real_names(core, e))
}

/// An ImportError raised for a routed import names the module as the code wrote it:
/// `except ModuleNotFoundError as e: if e.name != "socks": raise` must keep working.
fn with_real_names(core: &Bound<'_, SessionCore>, err: PyErr) -> PyErr {
    let py = core.py();
    if !err.is_instance_of::<pyo3::exceptions::PyImportError>(py) {
        return err;
    }
    let prefix_dot = core.get().prefix_dot.as_str();
    let value = err.value(py);
    let unqualify = |attr: &Bound<'_, pyo3::types::PyString>| -> PyResult<()> {
        let Ok(text) = value.getattr(attr)?.extract::<String>() else {
            return Ok(());
        };
        if text.contains(prefix_dot) {
            value.setattr(attr, text.replace(prefix_dot, ""))?;
        }
        Ok(())
    };
    let fixed = unqualify(intern!(py, "name")).and_then(|()| {
        let msg = intern!(py, "msg");
        unqualify(msg)?;
        // `str(e)` reads msg; `e.args` should say the same.
        if let Ok(text) = value.getattr(msg)?.extract::<String>() {
            value.setattr(intern!(py, "args"), (text,))?;
        }
        Ok(())
    });
    if let Err(e) = fixed {
        log::debug!(target: "subsession", "could not rename an ImportError: {e}");
    }
    err
}

fn import_statement<'py>(
    core: &Bound<'py, SessionCore>,
    name: &Bound<'py, PyAny>,
    globals: Option<&Bound<'py, PyAny>>,
    locals: Option<&Bound<'py, PyAny>>,
    fromlist: Option<&Bound<'py, PyAny>>,
    level: i32,
    proxies: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = core.py();
    let session = core.get();
    if level > 0 {
        // Relative: the importer's (qualified) package already decides.
        let result = interp::import_level(py, name, globals, locals, fromlist, level)?;
        record::note_import(core, globals, None, fromlist, &result);
        return Ok(result);
    }
    let text_cow = name.cast::<PyString>()?.to_cow()?;
    let text: &str = &text_cow;
    let top = top_level(text);
    if proxies && top == "importlib" {
        let module = interp::import_level(py, name, globals, locals, fromlist, 0)?;
        if !interp::has_fromlist(fromlist) || text == "importlib" {
            return Ok(session.importlib_proxy(py)?.into_bound(py));
        }
        if text == "importlib.metadata" {
            return session
                .importlib_proxy(py)?
                .into_bound(py)
                .getattr("metadata");
        }
        return Ok(module);
    }
    if proxies && text == "pkgutil" {
        interp::import_level(py, name, globals, locals, fromlist, 0)?;
        return Ok(session.pkgutil_proxy(py)?.into_bound(py));
    }
    if proxies && text == "pickle" {
        // What session code pickles names real modules (portable pickles).
        interp::import_level(py, name, globals, locals, fromlist, 0)?;
        return interp::get(py)?
            .loaders
            .bind(py)
            .getattr(intern!(py, "PICKLE_PROXY"));
    }
    if policy::shared_by_everyone(text) {
        let result = interp::import_level(py, name, globals, locals, fromlist, 0)?;
        if top == "multiprocessing" || top == "concurrent" {
            portable_multiprocessing(py)?;
        }
        return Ok(result);
    }
    if session.keeps_global(py, text) {
        return import_kept_global(py, name, globals, locals, fromlist, 0);
    }
    session.ensure_open(py)?;
    let qualified = PyString::new(py, &session.qualified(text));
    if mirror_extra(core, text, &qualified)? {
        // The block's code registered the name in sys.modules: as in a plain run,
        // the import statement returns what it put there.
        return interp::import_level(py, name, globals, locals, fromlist, 0);
    }
    let result = if interp::has_fromlist(fromlist) {
        interp::import_level(py, qualified.as_any(), globals, locals, fromlist, 0)?
    } else {
        interp::import_level(py, qualified.as_any(), globals, locals, None, 0)?;
        let top_key = session.qualified(top);
        interp::sys_modules(py)
            .get_item(&top_key)?
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(top_key))?
    };
    if is_active() {
        ensure_aliases(core, text, Some(name), fromlist)?;
    }
    record::note_import(core, globals, Some(name), fromlist, &result);
    Ok(result)
}

/// Session code may file a module under another real name (requests' `packages.py`
/// writes `sys.modules["requests.packages.urllib3"]`); such a name becomes importable
/// in the session under its qualified form, as it would be globally. Returns true
/// when the name is a registration of the running block's code (see activation).
fn mirror_extra(
    core: &Bound<'_, SessionCore>,
    real: &str,
    qualified: &Bound<'_, PyString>,
) -> PyResult<bool> {
    let py = core.py();
    let session = core.get();
    let mods = interp::sys_modules(py);
    if mods.contains(qualified)? {
        return Ok(false);
    }
    if registered_in_block(core, real)? {
        return Ok(true);
    }
    let written = mods.get_item(real)?.filter(|m| session.owns(m));
    let extra = match written {
        Some(m) => Some(m),
        None => session
            .try_lock(py)?
            .extras
            .get(real)
            .map(|m| m.bind(py).clone()),
    };
    if let Some(m) = extra {
        mods.set_item(qualified, m)?;
    }
    Ok(false)
}

/// Once per process, after a session imported multiprocessing: its children that are
/// spawned (not forked) get session objects pickled by real name.
fn portable_multiprocessing(py: Python<'_>) -> PyResult<()> {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(());
    }
    let done = interp::get(py)?
        .loaders
        .bind(py)
        .call_method0(intern!(py, "portable_multiprocessing"))?
        .is_truthy()?;
    if done {
        DONE.store(true, std::sync::atomic::Ordering::Release);
    }
    Ok(())
}

/// True when `real`, or the nearest package above it in sys.modules, is something the
/// running block's code registered there (jinja2's `ModuleLoader` registers a package
/// whose `__path__` holds compiled templates): the standard import resolves it.
fn registered_in_block(core: &Bound<'_, SessionCore>, real: &str) -> PyResult<bool> {
    if !is_active() {
        return Ok(false);
    }
    let mods = interp::sys_modules(core.py());
    let mut name = real;
    loop {
        if mods.contains(name)? {
            return activation::is_block_registration(core, name);
        }
        match name.rsplit_once('.') {
            Some((parent, _)) => name = parent,
            None => return Ok(false),
        }
    }
}

/// After an import in a block: the name, its parents and fromlist submodules are
/// visible by real name (CPython's C import bypasses hooks for those). `key` is the
/// statement's own name object, when it has one: its hash is already computed.
fn ensure_aliases(
    core: &Bound<'_, SessionCore>,
    name: &str,
    key: Option<&Bound<'_, PyAny>>,
    fromlist: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = core.py();
    let mods = interp::sys_modules(py);
    for (at, _) in name.match_indices('.') {
        let parent = &name[..at];
        ensure_alias(core, &mods, &PyString::new(py, parent), parent)?;
    }
    match key {
        Some(key) => ensure_alias(core, &mods, key, name)?,
        None => ensure_alias(core, &mods, &PyString::new(py, name), name)?,
    }
    let Some(fromlist) = fromlist.filter(|f| !f.is_none()) else {
        return Ok(());
    };
    let Ok(items) = fromlist.try_iter() else {
        return Ok(());
    };
    let mut real = String::with_capacity(name.len() + 16);
    for item in items.flatten() {
        let Ok(item) = item.cast_into::<PyString>() else {
            continue;
        };
        let item = item.to_cow()?;
        if item == "*" {
            continue;
        }
        real.clear();
        real.push_str(name);
        real.push('.');
        real.push_str(&item);
        ensure_alias(core, &mods, &PyString::new(py, &real), &real)?;
    }
    Ok(())
}

/// Makes `sys.modules[real]` (`key`) the session's module, if the session has one.
/// The common case, already visible, costs two lookups by keys whose hashes are
/// known and no allocation: the visible module's own `__name__` is the qualified key.
fn ensure_alias(
    core: &Bound<'_, SessionCore>,
    mods: &Bound<'_, PyDict>,
    key: &Bound<'_, PyAny>,
    real: &str,
) -> PyResult<()> {
    let py = core.py();
    let session = core.get();
    let visible = mods.get_item(key)?;
    if let Some(visible) = &visible {
        let own = visible
            .getattr(intern!(py, "__name__"))
            .ok()
            .and_then(|n| n.cast_into::<PyString>().ok());
        if let Some(own) = own {
            let named_here = own.to_cow().is_ok_and(|n| {
                n.len() == session.prefix_dot.len() + real.len()
                    && n.starts_with(session.prefix_dot.as_str())
                    && n.ends_with(real)
            });
            if named_here && mods.get_item(&own)?.is_some_and(|m| m.is(visible)) {
                return Ok(());
            }
        }
    }
    if let Some(m) = mods.get_item(session.qualified(real))? {
        if !visible.is_some_and(|v| v.is(&m)) {
            activation::alias_if_active(core, real, &m)?;
        }
    }
    Ok(())
}

/// `importlib.import_module` for a session: absolute or relative to `package`.
pub(crate) fn session_import_module<'py>(
    core: &Bound<'py, SessionCore>,
    name: &str,
    package: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = core.py();
    let it = interp::get(py)?;
    let level = name.len() - name.trim_start_matches('.').len();
    let absolute: String = if level > 0 {
        let bare = &name[level..];
        it.resolve_name
            .bind(py)
            .call1((bare, package, level))?
            .extract()?
    } else {
        name.to_owned()
    };
    route_absolute(core, &absolute)
}

fn route_absolute<'py>(
    core: &Bound<'py, SessionCore>,
    absolute: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let py = core.py();
    let session = core.get();
    let gcd = interp::get(py)?.original_gcd_import.bind(py);
    if absolute.starts_with(PREFIX) || policy::shared_by_everyone(absolute) {
        return gcd.call1((absolute,));
    }
    if session.keeps_global(py, absolute) {
        if !is_active() {
            return gcd.call1((absolute,));
        }
        if let Some(m) = activation::global_view(py, absolute)? {
            return Ok(m);
        }
        let names: Vec<String> = dotted_prefixes(absolute).map(str::to_owned).collect();
        return activation::with_global_view(py, &names, || gcd.call1((absolute,)));
    }
    session.ensure_open(py)?;
    let qualified = session.qualified(absolute);
    if !interp::sys_modules(py).contains(&qualified)? && registered_in_block(core, absolute)? {
        return gcd.call1((absolute,));
    }
    let module = gcd
        .call1((qualified,))
        .map_err(|e| with_real_names(core, e))?;
    if is_active() {
        ensure_aliases(core, absolute, None, None)?;
    }
    Ok(module)
}

/// `builtins.__import__`, installed once for the life of the process.
#[pyfunction]
#[pyo3(signature = (name, globals=None, locals=None, fromlist=None, level=0))]
pub(crate) fn global_import<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    globals: Option<&Bound<'py, PyAny>>,
    locals: Option<&Bound<'py, PyAny>>,
    fromlist: Option<&Bound<'py, PyAny>>,
    level: i32,
) -> PyResult<Bound<'py, PyAny>> {
    if !is_active() {
        let epoch = activation::epoch();
        let result = interp::import_level(py, name, globals, locals, fromlist, level)?;
        let quiet = !is_active() && activation::epoch() == epoch;
        if quiet || activation::top_session(py).is_some() || !is_session_module(&result) {
            return Ok(result);
        }
        if !is_active() {
            // The block that aliased the name is over: the global import now works.
            return interp::import_level(py, name, globals, locals, fromlist, level);
        }
    }
    if let Some(top) = activation::top_session(py) {
        let core = top.bind(py);
        let text = name.cast::<PyString>().ok().and_then(|s| s.to_cow().ok());
        let Some(text) = text.filter(|_| level == 0) else {
            return interp::import_level(py, name, globals, locals, fromlist, level);
        };
        if policy::shared_by_everyone(&text) {
            return interp::import_level(py, name, globals, locals, fromlist, level);
        }
        if core.get().keeps_global(py, &text) {
            return import_kept_global(py, name, globals, locals, fromlist, level);
        }
        return session_import(core, name, globals, locals, fromlist, 0, false);
    }
    global_view_import(py, name, globals, locals, fromlist, level)
}

/// The full-featured `global_import` as a Python callable, for the fast hook's
/// uncommon calls (keywords, missing arguments, a block active somewhere).
static SLOW_IMPORT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const METH_FASTCALL_KEYWORDS: std::os::raw::c_int = 0x0080 | 0x0002;

/// `builtins.__import__` as a raw vectorcall C function. An import statement calls
/// `__import__` with exactly five positional arguments; while no block is active
/// anywhere this checks one atomic and goes straight to the C import, so global code
/// pays a few nanoseconds for the permanent hook (bench (c)). Everything else takes
/// the pyo3 path. METH_FASTCALL is in CPython's stable ABI from 3.10 and has had the
/// same value and calling convention since 3.7, so the abi3-py39 binary may use it.
unsafe extern "C" fn fast_import(
    _slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes `nargs` valid borrowed references in `args` and NULL or a
    // tuple in `kwnames`; nothing here can panic.
    unsafe {
        let epoch = activation::epoch();
        if kwnames.is_null() && nargs == 5 && !is_active() {
            let level = ffi::PyLong_AsLong(*args.add(4));
            if level == -1 && !ffi::PyErr_Occurred().is_null() {
                return std::ptr::null_mut();
            }
            let result = ffi::PyImport_ImportModuleLevelObject(
                *args,
                *args.add(1),
                *args.add(2),
                *args.add(3),
                level as std::os::raw::c_int,
            );
            // A block that began on another thread while this import ran may have
            // aliased the name: never hand its module to global code.
            let quiet = !is_active() && activation::epoch() == epoch;
            if result.is_null() || quiet || !returned_alias(result) {
                return result;
            }
            ffi::Py_DecRef(result);
        }
        slow_import(args, nargs, kwnames)
    }
}

/// True when `result` is a session module (an alias seen by a thread without a block).
unsafe fn returned_alias(result: *mut ffi::PyObject) -> bool {
    // SAFETY: `result` is a valid new reference owned by the caller.
    unsafe {
        let py = Python::assume_attached();
        let obj = Bound::from_borrowed_ptr(py, result);
        activation::top_session(py).is_none() && is_session_module(&obj)
    }
}

/// Forwards a call to the pyo3 `global_import` (argument parsing, panic boundary).
unsafe fn slow_import(
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see fast_import.
    unsafe {
        let py = Python::assume_attached();
        let Some(slow) = SLOW_IMPORT.get(py) else {
            ffi::PyErr_SetString(
                ffi::PyExc_ImportError,
                c"subsession import hook not installed".as_ptr(),
            );
            return std::ptr::null_mut();
        };
        call_with(slow.as_ptr(), args, nargs, kwnames)
    }
}

/// `callable(*args, **kwargs)` from vectorcall arguments, through `PyObject_Call`
/// (`PyObject_Vectorcall` is not in the stable ABI before 3.12).
unsafe fn call_with(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: see fast_import; the tuple and dict are built from borrowed references.
    unsafe {
        let nkw = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_Size(kwnames)
        };
        let npos = nargs;
        let positional = ffi::PyTuple_New(npos);
        if positional.is_null() {
            return std::ptr::null_mut();
        }
        for i in 0..npos {
            let item = *args.offset(i);
            ffi::Py_IncRef(item);
            ffi::PyTuple_SetItem(positional, i, item);
        }
        let keywords = if nkw > 0 {
            ffi::PyDict_New()
        } else {
            std::ptr::null_mut()
        };
        for i in 0..nkw {
            ffi::PyDict_SetItem(
                keywords,
                ffi::PyTuple_GetItem(kwnames, i),
                *args.offset(npos + i),
            );
        }
        let result = ffi::PyObject_Call(callable, positional, keywords);
        ffi::Py_DecRef(positional);
        if !keywords.is_null() {
            ffi::Py_DecRef(keywords);
        }
        result
    }
}

/// A session's `__import__` (in its code's builtins) as a raw vectorcall C function
/// bound to its [`SessionImport`]: an import statement's five positional arguments go
/// to [`session_import`] without a tuple and a dict built per statement. Anything else
/// (keywords, other counts) calls the `SessionImport` itself.
unsafe extern "C" fn session_fast_import(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython passes the function's `self` (a SessionImport, set at creation),
    // `nargs` valid borrowed references in `args` and NULL or a tuple in `kwnames`.
    unsafe {
        if !kwnames.is_null() || nargs != 5 {
            return call_with(slf, args, nargs, kwnames);
        }
        // `long long`: 64 bits on every platform (`long` is 32 on Windows).
        let level = ffi::PyLong_AsLongLong(*args.add(4));
        if level == -1 && !ffi::PyErr_Occurred().is_null() {
            return std::ptr::null_mut();
        }
        let Ok(level) = i32::try_from(level) else {
            return call_with(slf, args, nargs, kwnames);
        };
        let outcome = std::panic::catch_unwind(|| {
            let py = Python::assume_attached();
            let hook = Bound::from_borrowed_ptr(py, slf);
            let Ok(hook) = hook.cast::<SessionImport>() else {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "subsession import hook is not bound to a session",
                ));
            };
            let arg = |i: usize| {
                let obj = Bound::from_borrowed_ptr(py, *args.add(i));
                Some(obj).filter(|o| !o.is_none())
            };
            let name = Bound::from_borrowed_ptr(py, *args);
            let core = hook.get().session.bind(py);
            session_import(
                core,
                &name,
                arg(1).as_ref(),
                arg(2).as_ref(),
                arg(3).as_ref(),
                level,
                true,
            )
            .map(Bound::into_ptr)
        });
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => {
                err.restore(Python::assume_attached());
                std::ptr::null_mut()
            }
            Err(_) => {
                ffi::PyErr_SetString(
                    ffi::PyExc_SystemError,
                    c"subsession: internal error in the import hook (a panic); please report it"
                        .as_ptr(),
                );
                std::ptr::null_mut()
            }
        }
    }
}

/// The C signature CPython calls a METH_FASTCALL|METH_KEYWORDS function with.
type VectorcallFn = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// A builtin function named `__import__` running `meth`, bound to `slf` (its first C
/// argument; NULL for none). The method definition is made once per `def` slot and
/// lives for the process, as CPython requires.
fn vectorcall_import<'py>(
    py: Python<'py>,
    def: &'static std::sync::OnceLock<usize>,
    meth: VectorcallFn,
    doc: &'static std::ffi::CStr,
    slf: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let def = *def.get_or_init(|| {
        Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: c"__import__".as_ptr(),
            // SAFETY: CPython calls functions flagged METH_FASTCALL|METH_KEYWORDS with
            // the vectorcall signature of `meth`; the pointer is only stored here.
            ml_meth: unsafe { std::mem::transmute::<VectorcallFn, ffi::PyMethodDefPointer>(meth) },
            ml_flags: METH_FASTCALL_KEYWORDS,
            ml_doc: doc.as_ptr(),
        })) as *mut ffi::PyMethodDef as usize
    });
    // SAFETY: `def` lives forever; CPython keeps its own reference to `slf`.
    unsafe {
        let func = ffi::PyCFunction_NewEx(
            def as *mut ffi::PyMethodDef,
            slf.map_or(std::ptr::null_mut(), Bound::as_ptr),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, func)
    }
}

/// The `__import__` of one session's code: [`session_fast_import`] bound to `hook`.
pub(crate) fn make_session_import<'py>(
    hook: &Bound<'py, SessionImport>,
) -> PyResult<Bound<'py, PyAny>> {
    static DEF: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    vectorcall_import(
        hook.py(),
        &DEF,
        session_fast_import,
        c"__import__(name, globals=None, locals=None, fromlist=(), level=0)\n--\n\nsubsession's import hook of one session's code.",
        Some(hook.as_any()),
    )
}

/// Creates the `builtins.__import__` replacement.
pub(crate) fn make_import_hook(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static DEF: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let slow = wrap_pyfunction!(global_import, py)?;
    let _ = SLOW_IMPORT.set(py, slow.into_any().unbind());
    vectorcall_import(
        py,
        &DEF,
        fast_import,
        c"__import__(name, globals=None, locals=None, fromlist=(), level=0)\n--\n\nsubsession's import hook: the builtin import, routed per session.",
        None,
    )
}

/// A `keep_global` name imported by a session: the host's module, never the alias a
/// block of another session shows under that name on another thread.
fn import_kept_global<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    globals: Option<&Bound<'py, PyAny>>,
    locals: Option<&Bound<'py, PyAny>>,
    fromlist: Option<&Bound<'py, PyAny>>,
    level: i32,
) -> PyResult<Bound<'py, PyAny>> {
    if is_active() {
        global_view_import(py, name, globals, locals, fromlist, level)
    } else {
        interp::import_level(py, name, globals, locals, fromlist, level)
    }
}

/// An import by a thread without an activation while some block is active elsewhere.
fn global_view_import<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    globals: Option<&Bound<'py, PyAny>>,
    locals: Option<&Bound<'py, PyAny>>,
    fromlist: Option<&Bound<'py, PyAny>>,
    level: i32,
) -> PyResult<Bound<'py, PyAny>> {
    let absolute = absolute_name(py, name, globals, level).ok();
    if let Some(abs) = &absolute {
        // An absolute statement's own name object is the key (no string made).
        let key = match name.cast::<PyString>() {
            Ok(own) if level == 0 => own.clone(),
            _ => PyString::new(py, abs),
        };
        if let Some(m) = activation::global_view_keyed(py, &key, abs)? {
            if interp::has_fromlist(fromlist) {
                if !m.hasattr(intern!(py, "__path__"))? || has_every_name(&m, fromlist) {
                    return Ok(m);
                }
            } else if level == 0 {
                let top = top_level(abs);
                let t = if top == abs {
                    Some(m)
                } else {
                    activation::global_view(py, top)?
                };
                if let Some(t) = t {
                    return Ok(t);
                }
            }
        }
    }
    let mut names: Vec<String> = Vec::new();
    if let Some(abs) = &absolute {
        names.extend(dotted_prefixes(abs).map(str::to_owned));
        names.extend(
            interp::fromlist_names(fromlist)
                .into_iter()
                .map(|x| format!("{abs}.{x}")),
        );
    }
    activation::with_global_view(py, &names, || {
        interp::import_level(py, name, globals, locals, fromlist, level)
    })
}

/// Whether the package `m` has an attribute for every name of a `from m import ...`.
fn has_every_name(m: &Bound<'_, PyAny>, fromlist: Option<&Bound<'_, PyAny>>) -> bool {
    let Some(items) = fromlist.and_then(|f| f.try_iter().ok()) else {
        return true;
    };
    for item in items {
        let Ok(item) = item.and_then(|x| Ok(x.cast_into::<PyString>()?)) else {
            continue; // not a name: the import reports it
        };
        if item.to_cow().is_ok_and(|x| x == "*") {
            continue;
        }
        if !m.hasattr(&item).unwrap_or(false) {
            return false;
        }
    }
    true
}

fn absolute_name(
    py: Python<'_>,
    name: &Bound<'_, PyAny>,
    globals: Option<&Bound<'_, PyAny>>,
    level: i32,
) -> PyResult<String> {
    let text: String = name.extract()?;
    if level == 0 {
        return Ok(text);
    }
    let it = interp::get(py)?;
    let globals = match globals {
        Some(g) if !g.is_none() => g.clone(),
        _ => PyDict::new(py).into_any(),
    };
    let package = it.calc_package.bind(py).call1((globals,))?;
    it.resolve_name
        .bind(py)
        .call1((text, package, level))?
        .extract()
}

/// `importlib._bootstrap._gcd_import`, installed once for the life of the process.
#[pyfunction]
#[pyo3(signature = (name, package=None, level=0))]
pub(crate) fn gcd_import<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    package: Option<&Bound<'py, PyAny>>,
    level: i32,
) -> PyResult<Bound<'py, PyAny>> {
    let it = interp::get(py)?;
    let original = it.original_gcd_import.bind(py);
    let mut name = name.clone();
    if level > 0 {
        it.sanity_check.bind(py).call1((&name, package, level))?;
        name = it.resolve_name.bind(py).call1((&name, package, level))?;
    }
    let Ok(text) = name.extract::<String>() else {
        return original.call1((name,));
    };
    if text.starts_with(PREFIX) || registry::is_empty(py) {
        return original.call1((name,));
    }
    if let Some(owner) = calling_session(py) {
        return route_absolute(owner.bind(py), &text);
    }
    if let Some(top) = activation::top_session(py) {
        return route_absolute(top.bind(py), &text);
    }
    if !is_active() {
        let epoch = activation::epoch();
        let result = original.call1((&name,))?;
        let quiet = !is_active() && activation::epoch() == epoch;
        if quiet || !is_session_module(&result) {
            return Ok(result);
        }
        if !is_active() {
            return original.call1((&name,));
        }
    }
    if let Some(m) = activation::global_view(py, &text)? {
        return Ok(m);
    }
    let names: Vec<String> = dotted_prefixes(&text).map(str::to_owned).collect();
    activation::with_global_view(py, &names, || original.call1((&name,)))
}

/// The session of the nearest calling frame outside the standard library (and
/// subsession itself), if that frame is session code.
fn calling_session(py: Python<'_>) -> Option<Py<SessionCore>> {
    // SAFETY: PyEval_GetFrame returns a borrowed reference to the running frame (or
    // NULL); we take a new reference before doing anything else.
    let frame = unsafe {
        let ptr = pyo3::ffi::PyEval_GetFrame();
        if ptr.is_null() {
            return None;
        }
        Bound::from_borrowed_ptr(py, ptr.cast())
    };
    let mut frame = frame;
    for _ in 0..64 {
        let name = frame
            .getattr(intern!(py, "f_globals"))
            .ok()
            .and_then(|g| g.get_item(intern!(py, "__name__")).ok())
            .and_then(|n| n.extract::<String>().ok())?;
        if name.starts_with(PREFIX) {
            return registry::owner_of(py, &name);
        }
        let top = top_level(&name);
        if top != "subsession" && !policy::is_stdlib(top) {
            return None;
        }
        frame = frame
            .getattr(intern!(py, "f_back"))
            .ok()
            .filter(|f| !f.is_none())?;
    }
    None
}
