//! Shared by the C ABI tests: find the cdylib this `cargo test` built, load it with
//! libloading (as a C host would), and make the Python package importable.
//!
//! Python side: the package sources stay in `maya/scripts/subsession/`; each test
//! binary builds `<CARGO_TARGET_TMPDIR>/pyroot-<binary>/subsession/` out of symlinks
//! to those files plus `_core.abi3.so -> the cdylib under test`. So no test writes
//! into the source tree, a stale `_core` from `maturin develop` is never picked
//! up, and Python imports the very file libloading opened (glibc dedups a
//! symlinked path by inode: one loaded object).
#![allow(dead_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};

// Result codes, as in include/subsession.h (checked by `header_matches_codes`).
pub const OK: c_int = 0;
pub const NULL_ARGUMENT: c_int = 1;
pub const INVALID_UTF8: c_int = 2;
pub const NOT_INITIALIZED: c_int = 3;
pub const NO_SUCH_SESSION: c_int = 4;
pub const SESSION_EXISTS: c_int = 5;
pub const INVALID_CONFIG: c_int = 6;
pub const PYTHON_EXCEPTION: c_int = 7;
pub const PANIC: c_int = 8;

pub const CODES: [(&str, c_int); 9] = [
    ("OK", OK),
    ("NULL_ARGUMENT", NULL_ARGUMENT),
    ("INVALID_UTF8", INVALID_UTF8),
    ("NOT_INITIALIZED", NOT_INITIALIZED),
    ("NO_SUCH_SESSION", NO_SUCH_SESSION),
    ("SESSION_EXISTS", SESSION_EXISTS),
    ("INVALID_CONFIG", INVALID_CONFIG),
    ("PYTHON_EXCEPTION", PYTHON_EXCEPTION),
    ("PANIC", PANIC),
];

// The C signatures. Results are read as `int` (what a C enum is), so an
// out-of-range value would show up as a number instead of undefined behaviour.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
pub type ResultNameFn = unsafe extern "C" fn(c_int) -> *const c_char;
pub type LastErrorFn = unsafe extern "C" fn() -> *const c_char;
pub type StringFreeFn = unsafe extern "C" fn(*mut c_char);
pub type TwoStrFn = unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;
pub type CallFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *const c_char, *mut *mut c_char) -> c_int;
pub type ReloadFn = unsafe extern "C" fn(*const c_char, c_int, c_int, *mut *mut c_char) -> c_int;
pub type CloseFn = unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> c_int;
pub type ListFn = unsafe extern "C" fn(*mut *mut c_char) -> c_int;
pub type TestPanicFn = unsafe extern "C" fn(c_int) -> c_int;

/// Path of the cdylib built by this same `cargo test` invocation: next to the test
/// binary (`<target>/<profile>/deps/`) or one level up. Override with
/// `SUBSESSION_CDYLIB=/path/to/libsubsession.so` (e.g. a maturin-built one).
pub fn cdylib_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SUBSESSION_CDYLIB") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent folder");
    let name = format!(
        "{}subsession{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let mut dirs = vec![deps.to_path_buf()];
    dirs.extend(deps.parent().map(Path::to_path_buf));
    for dir in dirs {
        let p = dir.join(&name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found next to {}", exe.display());
}

/// Every C function, resolved from one loaded copy of the library.
pub struct Abi {
    pub lib: libloading::Library,
    pub path: PathBuf,
    pub abi_version: AbiVersionFn,
    pub result_name: ResultNameFn,
    pub last_error: LastErrorFn,
    pub string_free: StringFreeFn,
    pub create: TwoStrFn,
    pub exec: TwoStrFn,
    pub import: TwoStrFn,
    pub call: CallFn,
    pub reload: ReloadFn,
    pub close: CloseFn,
    pub list: ListFn,
    /// Only in `--features ffi-test-hooks` builds.
    pub test_panic: Option<TestPanicFn>,
}

fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> T {
    // SAFETY: the caller names a symbol whose C signature is T.
    unsafe {
        *lib.get::<T>(name.as_bytes())
            .unwrap_or_else(|e| panic!("symbol {name}: {e}"))
    }
}

impl Abi {
    pub fn load() -> Abi {
        Abi::load_from(&cdylib_path())
    }

    pub fn load_from(path: &Path) -> Abi {
        // SAFETY: loading our own library runs no foreign initialisers.
        let lib = unsafe { libloading::Library::new(path) }
            .unwrap_or_else(|e| panic!("dlopen {}: {e}", path.display()));
        // SAFETY: the test hook, when present, has this signature.
        let test_panic = unsafe { lib.get::<TestPanicFn>(b"subsession_test_panic") }
            .ok()
            .map(|s| *s);
        Abi {
            abi_version: sym(&lib, "subsession_abi_version"),
            result_name: sym(&lib, "subsession_result_name"),
            last_error: sym(&lib, "subsession_last_error"),
            string_free: sym(&lib, "subsession_string_free"),
            create: sym(&lib, "subsession_create"),
            exec: sym(&lib, "subsession_exec"),
            import: sym(&lib, "subsession_import"),
            call: sym(&lib, "subsession_call"),
            reload: sym(&lib, "subsession_reload"),
            close: sym(&lib, "subsession_close"),
            list: sym(&lib, "subsession_list"),
            test_panic,
            path: path.to_path_buf(),
            lib,
        }
    }

    pub fn last_error(&self) -> Option<String> {
        // SAFETY: returns NULL or a NUL-terminated thread-local string.
        let p = unsafe { (self.last_error)() };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// The last error, for assertion messages.
    pub fn err(&self) -> String {
        self.last_error()
            .unwrap_or_else(|| "<no last error>".into())
    }

    pub fn result_name(&self, code: c_int) -> String {
        // SAFETY: always a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.result_name)(code)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Takes ownership of a library-allocated string (NULL -> None) and frees it.
    pub fn take(&self, p: *mut c_char) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: p came from the library and is freed exactly once, right here.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        unsafe { (self.string_free)(p) };
        Some(s)
    }

    pub fn create(&self, name: &str, config: Option<&str>) -> c_int {
        let n = cs(name);
        let c = config.map(cs);
        // SAFETY: valid C strings or NULL.
        unsafe {
            (self.create)(
                n.as_ptr(),
                c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        }
    }

    pub fn exec(&self, name: &str, source: &str) -> c_int {
        let (n, s) = (cs(name), cs(source));
        // SAFETY: valid C strings.
        unsafe { (self.exec)(n.as_ptr(), s.as_ptr()) }
    }

    pub fn import(&self, name: &str, module: &str) -> c_int {
        let (n, m) = (cs(name), cs(module));
        // SAFETY: valid C strings.
        unsafe { (self.import)(n.as_ptr(), m.as_ptr()) }
    }

    /// `subsession_call`; `function` None passes NULL ("module.function" form).
    pub fn call(
        &self,
        name: &str,
        module: &str,
        function: Option<&str>,
    ) -> (c_int, Option<String>) {
        let (n, m) = (cs(name), cs(module));
        let f = function.map(cs);
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C strings or NULL, and a valid out pointer.
        let rc = unsafe {
            (self.call)(
                n.as_ptr(),
                m.as_ptr(),
                f.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                &mut out,
            )
        };
        (rc, self.take(out))
    }

    pub fn reload(&self, name: &str, all: bool, deep: bool) -> (c_int, Option<String>) {
        let n = cs(name);
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C string and out pointer.
        let rc = unsafe { (self.reload)(n.as_ptr(), all as c_int, deep as c_int, &mut out) };
        (rc, self.take(out))
    }

    pub fn close(&self, name: &str) -> (c_int, Option<String>) {
        let n = cs(name);
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid C string and out pointer.
        let rc = unsafe { (self.close)(n.as_ptr(), &mut out) };
        (rc, self.take(out))
    }

    pub fn list(&self) -> (c_int, Option<String>) {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid out pointer.
        let rc = unsafe { (self.list)(&mut out) };
        (rc, self.take(out))
    }

    /// Session names from `subsession_list`.
    pub fn names(&self) -> Vec<String> {
        let (rc, json) = self.list();
        assert_eq!(rc, OK, "{}", self.err());
        serde_json::from_str(&json.expect("list returns JSON")).expect("list JSON")
    }
}

/// A C string from test data we wrote ourselves (never contains NUL).
pub fn cs(s: &str) -> CString {
    CString::new(s).expect("test strings have no NUL")
}

/// The package folder of this checkout (`maya/scripts`).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("maya/scripts")
}

/// Builds `<tmp>/pyroot-<tag>/subsession/` (symlinks to the package's files and
/// `_core.abi3.so -> cdylib`) and returns `<tmp>/pyroot-<tag>`, for sys.path.
pub fn python_root(tag: &str, cdylib: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pyroot-{tag}"));
    let _ = std::fs::remove_dir_all(&root);
    let pkg = root.join("subsession");
    std::fs::create_dir_all(&pkg).expect("create pyroot");
    let src = scripts_dir().join("subsession");
    for entry in std::fs::read_dir(&src).expect("read maya/scripts/subsession") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with("_core") || name_str == "__pycache__" {
            continue;
        }
        symlink(&entry.path(), &pkg.join(&name));
    }
    symlink(cdylib, &pkg.join("_core.abi3.so"));
    root
}

#[cfg(unix)]
fn symlink(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to)
        .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", to.display(), from.display()));
}

/// A fresh scratch folder under the target tmp dir.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scratch-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes `<dir>/<module>.py` and bumps its mtime past the previous write, so
/// stale detection (mtime + size) sees every rewrite even within one second.
pub fn write_module(dir: &Path, module: &str, source: &str) {
    let path = dir.join(format!("{module}.py"));
    let previous = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    std::fs::write(&path, source).expect("write module");
    if let Some(prev) = previous {
        let later = prev + std::time::Duration::from_secs(2);
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("reopen module");
        f.set_modified(later).expect("set mtime");
    }
}
