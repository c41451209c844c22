//! The C API as a session's own libraries see it.
//!
//! Before a session's extension module initialises, the core loads its library and
//! points the library's import-table slots for the C-API import functions (and those
//! of every library its load brings in) at handlers bound to that session
//! (docs/design.md, "Compiled code"). Its C code then imports in its session whenever
//! it runs: during its own initialisation (the host's same-named modules are not
//! there for it), inside a block, and after it from host code (numpy's `y.mean()`
//! importing `numpy._core._methods` lazily; pandas' `PyCapsule_Import("pandas...")`).
//! `PyThreadState_GetDict` hands each session its own per-thread dict, so two copies
//! of one library (lxml's parser context) never meet there.
//!
//! Handlers are plain functions, one set per session slot (`K`, a const generic):
//! a call from C finds its session with one array read, no lookup by address.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3::exceptions::{PyAttributeError, PySystemError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyModule, PyString};

use super::hooks;
use crate::base::names::PREFIX;
use crate::native::{self, REDIRECTED};
use crate::state::SessionCore;

/// Sessions whose libraries can be redirected over the life of the process (slots are
/// never reused: a closed session's libraries stay loaded and keep calling).
const CAPACITY: usize = 128;

struct Owner {
    core: Py<SessionCore>,
    /// This session's key in each thread's state dict.
    state_key: Py<PyString>,
}

static OWNERS: [OnceLock<Owner>; CAPACITY] = [const { OnceLock::new() }; CAPACITY];
/// The `SessionCore` behind each assigned slot, by address (kept alive by `OWNERS`).
static ASSIGNED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The session each redirected extension file's C code imports in (its label), by path:
/// a second session handed that loaded file is told whose modules its C code sees.
static OWNER_OF_FILE: Mutex<Option<std::collections::HashMap<String, String>>> = Mutex::new(None);

/// The label of the session whose handlers the loaded extension file at `origin` calls.
pub(crate) fn owner_of_file(py: Python<'_>, origin: &str) -> Option<String> {
    OWNER_OF_FILE
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(origin).cloned())
}

/// What redirection has done so far: libraries patched, slots written, nanoseconds
/// spent reading tables and writing slots (the bench reports the cost per library).
static LIBRARIES: AtomicUsize = AtomicUsize::new(0);
static SLOTS_WRITTEN: AtomicUsize = AtomicUsize::new(0);
static PATCH_NANOS: AtomicU64 = AtomicU64::new(0);

fn owner(k: usize) -> Option<&'static Owner> {
    OWNERS.get(k)?.get()
}

/// The slot of `core`, assigned on its first compiled library; None when all are taken.
fn slot_of(core: &Bound<'_, SessionCore>) -> Option<usize> {
    let py = core.py();
    let address = core.as_ptr() as usize;
    let mut assigned = ASSIGNED
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner());
    if let Some(k) = assigned.iter().position(|&a| a == address) {
        return Some(k);
    }
    let k = assigned.len();
    let cell = OWNERS.get(k)?;
    let state_key = PyString::new(py, &format!("{}.thread_state", core.get().prefix)).unbind();
    cell.set(Owner {
        core: core.clone().unbind(),
        state_key,
    })
    .ok()?;
    assigned.push(address);
    Some(k)
}

/// Loads the extension library at `origin` for `core`, before the interpreter
/// initialises it, and points the C-API slots of what the load brought in at `core`'s
/// handlers. A library whose table cannot be read is loaded as it is, with a WARNING.
pub(crate) fn prepare_extension(core: &Bound<'_, SessionCore>, origin: &str) -> PyResult<()> {
    let py = core.py();
    let Some(k) = slot_of(core) else {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                target: "subsession",
                "{origin}: more than {CAPACITY} sessions loaded compiled libraries in this \
                 process; the compiled code of the later ones (this library first) imports \
                 by real name, as outside a session"
            );
        }
        return Ok(());
    };
    let flags: i32 = if cfg!(unix) {
        py.import(intern!(py, "sys"))?
            .call_method0(intern!(py, "getdlopenflags"))?
            .extract()?
    } else {
        0
    };
    let images = match native::loaded::load(origin, flags, &REDIRECTED) {
        Ok(images) => images,
        Err(e) => {
            // The interpreter's own load reports the real error (a missing dependency).
            log::debug!(target: "subsession", "{origin}: not preloaded: {e}");
            return Ok(());
        }
    };
    // What redirection adds to a load: reading the tables (timed inside `load`, the
    // loading itself excluded: the interpreter would do it anyway) and the writes.
    let started = std::time::Instant::now();
    let handlers = handlers(k);
    let mut spent = images.read_nanos;
    for image in images.images {
        let slots = match image.slots {
            Ok(slots) => slots,
            Err(e) => {
                log::warn!(
                    target: "subsession",
                    "{}: its import table could not be read ({e}); its C code imports \
                     by real name, as outside a session",
                    image.path
                );
                continue;
            }
        };
        if slots.is_empty() {
            continue;
        }
        if image.path == origin {
            OWNER_OF_FILE
                .lock_py_attached(py)
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Default::default)
                .insert(origin.to_owned(), core.get().label());
        }
        LIBRARIES.fetch_add(1, Ordering::Relaxed);
        for slot in slots {
            let Some(i) = REDIRECTED.iter().position(|n| *n == slot.symbol) else {
                continue;
            };
            // SAFETY: the slot was read from this image's own table, and the handler
            // has the signature of the function the slot names (see `handlers`).
            let written = unsafe {
                native::patch::write_slot(image.base + slot.offset, handlers[i], slot.read_only)
            };
            match written {
                Ok(()) => {
                    SLOTS_WRITTEN.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => log::warn!(
                    target: "subsession",
                    "{}: {} could not be redirected ({e}); that call imports by real name",
                    image.path,
                    slot.symbol
                ),
            }
        }
    }
    spent += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    PATCH_NANOS.fetch_add(spent, Ordering::Relaxed);
    Ok(())
}

/// (libraries redirected, slots written, nanoseconds spent): for the bench and tests.
pub(crate) fn stats() -> (usize, usize, u64) {
    (
        LIBRARIES.load(Ordering::Relaxed),
        SLOTS_WRITTEN.load(Ordering::Relaxed),
        PATCH_NANOS.load(Ordering::Relaxed),
    )
}

// --- calls from C ----------------------------------------------------------------------

/// Runs a handler for a call from C. The caller holds the GIL (every redirected
/// function requires it). A Python error is left set with NULL returned, as the real
/// function does; a panic becomes a SystemError, never an unwind into C.
unsafe fn from_c<T>(
    k: usize,
    f: impl FnOnce(&Bound<'_, SessionCore>) -> PyResult<*mut T>,
) -> *mut T {
    // SAFETY: the C API's contract: these functions are called with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let Some(owner) = owner(k) else {
            return Err(PySystemError::new_err(
                "subsession: a C-API call from an unknown session",
            ));
        };
        f(owner.core.bind(py))
    }));
    match run {
        Ok(Ok(ptr)) => ptr,
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PySystemError::new_err("subsession: internal error in a redirected C-API call")
                .restore(py);
            std::ptr::null_mut()
        }
    }
}

fn c_name<'py>(py: Python<'py>, name: *const c_char) -> PyResult<Bound<'py, PyString>> {
    if name.is_null() {
        return Err(PySystemError::new_err("NULL module name"));
    }
    // SAFETY: the C API takes a NUL-terminated UTF-8 name here.
    let text = unsafe { CStr::from_ptr(name) }
        .to_str()
        .map_err(|e| pyo3::exceptions::PyUnicodeDecodeError::new_err(e.to_string()))?;
    Ok(PyString::new(py, text))
}

/// A module name passed from C as an object (NULL is the caller's bug: SystemError).
unsafe fn name_arg<'py>(py: Python<'py>, ptr: *mut ffi::PyObject) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a valid borrowed reference or NULL, from the caller.
    unsafe { borrowed(py, ptr) }.ok_or_else(|| PySystemError::new_err("NULL module name"))
}

/// A borrowed argument from C, `None` for NULL.
unsafe fn borrowed<'py>(py: Python<'py>, ptr: *mut ffi::PyObject) -> Option<Bound<'py, PyAny>> {
    // SAFETY: a valid borrowed reference or NULL, from the caller.
    unsafe { Bound::from_borrowed_ptr_or_opt(py, ptr) }
}

/// `PyImport_Import` in the session: the module itself (not its top package), as
/// `sys.modules` holds it after the import.
fn import_name(
    core: &Bound<'_, SessionCore>,
    name: &Bound<'_, PyAny>,
) -> PyResult<*mut ffi::PyObject> {
    let text = name.cast::<PyString>()?.to_cow()?;
    Ok(hooks::session_import_module(core, &text, None)?.into_ptr())
}

/// The key a session keeps `name` under in `sys.modules`: its qualified name, unless
/// the name is shared with the host (standard library, host packages, `keep_global`).
fn session_key<'py>(
    core: &Bound<'py, SessionCore>,
    name: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = core.py();
    let text = name.cast::<PyString>()?.to_cow()?;
    if text.starts_with(PREFIX) || core.get().is_shared(py, &text) {
        return Ok(name.clone());
    }
    Ok(PyString::new(py, &core.get().qualified(&text)).into_any())
}

unsafe extern "C" fn import_module<const K: usize>(name: *const c_char) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            import_name(core, c_name(core.py(), name)?.as_any())
        })
    }
}

unsafe extern "C" fn import<const K: usize>(name: *mut ffi::PyObject) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            let name = name_arg(core.py(), name)?;
            import_name(core, &name)
        })
    }
}

fn import_level_impl(
    core: &Bound<'_, SessionCore>,
    name: &Bound<'_, PyAny>,
    globals: *mut ffi::PyObject,
    locals: *mut ffi::PyObject,
    fromlist: *mut ffi::PyObject,
    level: c_int,
) -> PyResult<*mut ffi::PyObject> {
    let py = core.py();
    // SAFETY: borrowed references or NULL, from the C caller.
    let (globals, locals, fromlist) = unsafe {
        (
            borrowed(py, globals),
            borrowed(py, locals),
            borrowed(py, fromlist),
        )
    };
    let module = hooks::session_import(
        core,
        name,
        globals.as_ref(),
        locals.as_ref(),
        fromlist.as_ref(),
        level,
        false,
    )?;
    Ok(module.into_ptr())
}

unsafe extern "C" fn import_level<const K: usize>(
    name: *const c_char,
    globals: *mut ffi::PyObject,
    locals: *mut ffi::PyObject,
    fromlist: *mut ffi::PyObject,
    level: c_int,
) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            let name = c_name(core.py(), name)?;
            import_level_impl(core, name.as_any(), globals, locals, fromlist, level)
        })
    }
}

unsafe extern "C" fn import_level_object<const K: usize>(
    name: *mut ffi::PyObject,
    globals: *mut ffi::PyObject,
    locals: *mut ffi::PyObject,
    fromlist: *mut ffi::PyObject,
    level: c_int,
) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            let name = name_arg(core.py(), name)?;
            import_level_impl(core, &name, globals, locals, fromlist, level)
        })
    }
}

unsafe extern "C" fn get_module<const K: usize>(name: *mut ffi::PyObject) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            let name = name_arg(core.py(), name)?;
            let key = session_key(core, &name)?;
            // New reference, or NULL with no error when the module is not there.
            Ok(ffi::PyImport_GetModule(key.as_ptr()))
        })
    }
}

/// `PyImport_AddModuleObject` in the session (a borrowed reference).
fn add_module_impl(
    core: &Bound<'_, SessionCore>,
    name: &Bound<'_, PyAny>,
) -> PyResult<*mut ffi::PyObject> {
    let key = session_key(core, name)?;
    // SAFETY: a valid name object; the result is borrowed from sys.modules.
    let module = unsafe { ffi::PyImport_AddModuleObject(key.as_ptr()) };
    if module.is_null() {
        return Err(PyErr::fetch(core.py()));
    }
    Ok(module)
}

unsafe extern "C" fn add_module<const K: usize>(name: *const c_char) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            add_module_impl(core, c_name(core.py(), name)?.as_any())
        })
    }
}

unsafe extern "C" fn add_module_object<const K: usize>(
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            let name = name_arg(core.py(), name)?;
            add_module_impl(core, &name)
        })
    }
}

unsafe extern "C" fn add_module_ref<const K: usize>(name: *const c_char) -> *mut ffi::PyObject {
    unsafe {
        from_c(K, |core| {
            let module = add_module_impl(core, c_name(core.py(), name)?.as_any())?;
            ffi::Py_IncRef(module);
            Ok(module)
        })
    }
}

/// `PyCapsule_Import` in the session: the first dotted part is imported in the
/// session, the rest are attributes (a submodule not yet an attribute is imported).
unsafe extern "C" fn capsule_import<const K: usize>(
    name: *const c_char,
    _no_block: c_int,
) -> *mut c_void {
    unsafe {
        from_c(K, |core| {
            let py = core.py();
            let full = c_name(py, name)?;
            let text = full.to_cow()?;
            let mut parts = text.split('.');
            let first = parts.next().unwrap_or_default();
            let mut path = first.to_owned();
            // SAFETY: import_name returns a new reference.
            let mut object =
                Bound::from_owned_ptr(py, import_name(core, PyString::new(py, first).as_any())?);
            for part in parts {
                path.push('.');
                path.push_str(part);
                object = match object.getattr(part) {
                    Ok(next) => next,
                    Err(e)
                        if object.cast::<PyModule>().is_ok()
                            && e.is_instance_of::<PyAttributeError>(py) =>
                    {
                        Bound::from_owned_ptr(
                            py,
                            import_name(core, PyString::new(py, &path).as_any())?,
                        )
                    }
                    Err(e) => return Err(e),
                };
            }
            if ffi::PyCapsule_IsValid(object.as_ptr(), name) == 0 {
                return Err(PyAttributeError::new_err(format!(
                    "PyCapsule_Import \"{text}\" is not valid"
                )));
            }
            Ok(ffi::PyCapsule_GetPointer(object.as_ptr(), name))
        })
    }
}

/// The session's own dict inside this thread's state dict. Never raises: NULL only
/// where the real function returns NULL (no thread state) or memory runs out.
unsafe extern "C" fn thread_state_dict<const K: usize>() -> *mut ffi::PyObject {
    unsafe {
        let shared = ffi::PyThreadState_GetDict();
        let Some(owner) = owner(K) else { return shared };
        if shared.is_null() {
            return shared;
        }
        let key = owner.state_key.as_ptr();
        // Borrowed, and keeps an exception the caller has pending.
        let own = ffi::PyDict_GetItem(shared, key);
        if !own.is_null() {
            return own;
        }
        let own = ffi::PyDict_New();
        if own.is_null() {
            return own;
        }
        let stored = ffi::PyDict_SetItem(shared, key, own);
        ffi::Py_DecRef(own);
        if stored < 0 {
            ffi::PyErr_Clear();
            return std::ptr::null_mut();
        }
        own
    }
}

/// The handlers of slot `K`, in the order of [`REDIRECTED`].
fn entries<const K: usize>() -> [usize; REDIRECTED.len()] {
    type CName = unsafe extern "C" fn(*const c_char) -> *mut ffi::PyObject;
    type Obj = unsafe extern "C" fn(*mut ffi::PyObject) -> *mut ffi::PyObject;
    type Level = unsafe extern "C" fn(
        *const c_char,
        *mut ffi::PyObject,
        *mut ffi::PyObject,
        *mut ffi::PyObject,
        c_int,
    ) -> *mut ffi::PyObject;
    type LevelObj = unsafe extern "C" fn(
        *mut ffi::PyObject,
        *mut ffi::PyObject,
        *mut ffi::PyObject,
        *mut ffi::PyObject,
        c_int,
    ) -> *mut ffi::PyObject;
    type Capsule = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
    type StateDict = unsafe extern "C" fn() -> *mut ffi::PyObject;
    [
        import_module::<K> as CName as usize,
        import_module::<K> as CName as usize, // PyImport_ImportModuleNoBlock
        import::<K> as Obj as usize,
        import_level::<K> as Level as usize,
        import_level_object::<K> as LevelObj as usize,
        get_module::<K> as Obj as usize,
        add_module::<K> as CName as usize,
        add_module_object::<K> as Obj as usize,
        add_module_ref::<K> as CName as usize,
        capsule_import::<K> as Capsule as usize,
        thread_state_dict::<K> as StateDict as usize,
    ]
}

macro_rules! sixteen {
    ($b:literal) => {
        [
            entries::<{ $b }>,
            entries::<{ $b + 1 }>,
            entries::<{ $b + 2 }>,
            entries::<{ $b + 3 }>,
            entries::<{ $b + 4 }>,
            entries::<{ $b + 5 }>,
            entries::<{ $b + 6 }>,
            entries::<{ $b + 7 }>,
            entries::<{ $b + 8 }>,
            entries::<{ $b + 9 }>,
            entries::<{ $b + 10 }>,
            entries::<{ $b + 11 }>,
            entries::<{ $b + 12 }>,
            entries::<{ $b + 13 }>,
            entries::<{ $b + 14 }>,
            entries::<{ $b + 15 }>,
        ]
    };
}

type Entries = fn() -> [usize; REDIRECTED.len()];
static TABLE: [[Entries; 16]; CAPACITY / 16] = [
    sixteen!(0),
    sixteen!(16),
    sixteen!(32),
    sixteen!(48),
    sixteen!(64),
    sixteen!(80),
    sixteen!(96),
    sixteen!(112),
];

fn handlers(k: usize) -> [usize; REDIRECTED.len()] {
    TABLE[k / 16][k % 16]()
}
