//! Property tests: every string parameter of every function gets NULL, arbitrary
//! bytes (invalid UTF-8 included), empty, long and huge strings, and names of
//! sessions that exist. Whatever comes in, a call returns a valid result code with
//! a consistent last error and out-parameter, and leaves the GIL free: this thread
//! does not hold it afterwards and another thread can attach.
mod common;

use common::*;
use proptest::prelude::*;
use pyo3::prelude::*;
use std::ffi::{CString, c_char, c_int};
use std::sync::LazyLock;
use std::time::Duration;

/// The session every case can reach by name (besides random names).
const LIVE: &str = "props_live";

static ABI: LazyLock<Abi> = LazyLock::new(|| {
    Python::initialize();
    let abi = Abi::load();
    let root = python_root("props", &abi.path);
    Python::attach(|py| {
        let path = py
            .import("sys")
            .and_then(|s| s.getattr("path"))
            .expect("sys.path");
        path.call_method1("insert", (0, root.to_string_lossy().as_ref()))
            .expect("sys.path.insert");
    });
    assert_eq!(abi.create(LIVE, None), OK, "{}", abi.err());
    abi
});

/// `PyGILState_Check` of the running libpython (not in the limited API pyo3 binds).
fn this_thread_holds_gil() -> bool {
    // SAFETY: dlsym with a NUL-terminated name; the symbol is `int f(void)`.
    unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, c"PyGILState_Check".as_ptr());
        assert!(!p.is_null(), "PyGILState_Check not found");
        let f: unsafe extern "C" fn() -> c_int = std::mem::transmute(p);
        f() != 0
    }
}

fn assert_gil_free() {
    assert!(
        !this_thread_holds_gil(),
        "the call left the GIL held on this thread"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        Python::attach(|_py| ());
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("another thread could not attach: the GIL was left held");
}

/// A string argument: None = NULL. NULs are dropped (a C string ends at the
/// first one anyway, which the plain "short" strategies already cover).
fn arg() -> impl Strategy<Value = Option<Vec<u8>>> {
    let bytes = prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => proptest::collection::vec(any::<u8>(), 0..4096),
        3 => "[a-z_.]{0,16}".prop_map(String::into_bytes),
        3 => Just(LIVE.as_bytes().to_vec()),
        2 => prop_oneof![Just("os"), Just("os.getcwd"), Just("json"), Just("{}"), Just("null"), Just("")]
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => (0usize..(2 << 20)).prop_map(|n| vec![b'a'; n]),
    ];
    prop_oneof![1 => Just(None), 9 => bytes.prop_map(Some)]
}

fn c(arg: &Option<Vec<u8>>) -> Option<CString> {
    arg.as_ref().map(|b| {
        CString::new(b.iter().copied().filter(|&x| x != 0).collect::<Vec<u8>>())
            .expect("NULs removed")
    })
}

fn ptr(arg: &Option<CString>) -> *const c_char {
    arg.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// The argument error a call must report: parameters are checked in order and
/// the first NULL (where required) or invalid UTF-8 string wins.
fn arg_error(params: &[(&Option<CString>, bool)]) -> Option<c_int> {
    params.iter().find_map(|(p, required)| match p {
        None if *required => Some(NULL_ARGUMENT),
        None => None,
        Some(c) => c.to_str().is_err().then_some(INVALID_UTF8),
    })
}

/// What every call must satisfy, whatever its input.
fn check(abi: &Abi, rc: c_int, out: Option<*mut c_char>, expected: Option<c_int>) {
    assert!((OK..=PANIC).contains(&rc), "not a result code: {rc}");
    assert_ne!(
        rc,
        PANIC,
        "a panic escaped into the boundary: {}",
        abi.err()
    );
    assert_ne!(rc, NOT_INITIALIZED, "{}", abi.err());
    match expected {
        Some(code) => assert_eq!(rc, code, "{}", abi.err()),
        None => assert!(
            rc != NULL_ARGUMENT && rc != INVALID_UTF8,
            "{rc}: {}",
            abi.err()
        ),
    }
    match abi.last_error() {
        None => assert_eq!(rc, OK, "failure without a message"),
        Some(m) => assert_ne!(rc, OK, "success with a message: {m}"),
    }
    if let Some(p) = out {
        if rc == OK {
            abi.take(p);
        } else {
            assert!(p.is_null(), "out set on failure");
        }
    }
    assert_gil_free();
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES=N runs a longer search (default 96 per property).
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(96),
        // a failure is printed with its minimal input; do not write files into tests/
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn create(name in arg(), config in arg()) {
        let abi = &*ABI;
        let (n, cfg) = (c(&name), c(&config));
        let rc = unsafe { (abi.create)(ptr(&n), ptr(&cfg)) };
        check(abi, rc, None, arg_error(&[(&n, true), (&cfg, false)]));
        if rc == OK {
            // keep the registry small: close what a case managed to create
            let n = n.expect("created with a name");
            prop_assert_eq!(unsafe { (abi.close)(n.as_ptr(), std::ptr::null_mut()) }, OK);
        }
    }

    #[test]
    fn exec(name in arg(), source in arg()) {
        let abi = &*ABI;
        let (n, s) = (c(&name), c(&source));
        let rc = unsafe { (abi.exec)(ptr(&n), ptr(&s)) };
        check(abi, rc, None, arg_error(&[(&n, true), (&s, true)]));
    }

    #[test]
    fn import(name in arg(), module in arg()) {
        let abi = &*ABI;
        let (n, m) = (c(&name), c(&module));
        let rc = unsafe { (abi.import)(ptr(&n), ptr(&m)) };
        check(abi, rc, None, arg_error(&[(&n, true), (&m, true)]));
    }

    #[test]
    fn call(name in arg(), module in arg(), function in arg(), want_out in any::<bool>()) {
        let abi = &*ABI;
        let (n, m, f) = (c(&name), c(&module), c(&function));
        let mut out: *mut c_char = std::ptr::null_mut();
        let out_ptr = if want_out { &mut out as *mut *mut c_char } else { std::ptr::null_mut() };
        let rc = unsafe { (abi.call)(ptr(&n), ptr(&m), ptr(&f), out_ptr) };
        check(abi, rc, Some(out), arg_error(&[(&n, true), (&m, true), (&f, false)]));
    }

    #[test]
    fn reload(name in arg(), all in any::<c_int>(), deep in any::<c_int>(), want_out in any::<bool>()) {
        let abi = &*ABI;
        let n = c(&name);
        let mut out: *mut c_char = std::ptr::null_mut();
        let out_ptr = if want_out { &mut out as *mut *mut c_char } else { std::ptr::null_mut() };
        let rc = unsafe { (abi.reload)(ptr(&n), all, deep, out_ptr) };
        check(abi, rc, Some(out), arg_error(&[(&n, true)]));
    }

    #[test]
    fn close(name in arg(), want_out in any::<bool>()) {
        let abi = &*ABI;
        // half the time, close a session that exists
        let n = if want_out {
            prop_assert_eq!(abi.create("props_closing", None), OK, "{}", abi.err());
            Some(cs("props_closing"))
        } else {
            // never close the shared live session from here
            c(&name).filter(|n| n.as_bytes() != LIVE.as_bytes())
                .or_else(|| name.as_ref().map(|_| cs("props_not_live")))
        };
        let mut out: *mut c_char = std::ptr::null_mut();
        let rc = unsafe { (abi.close)(ptr(&n), &mut out) };
        check(abi, rc, Some(out), arg_error(&[(&n, true)]));
        if want_out {
            prop_assert_eq!(rc, OK);
        }
    }

    #[test]
    fn list(null_out in any::<bool>()) {
        let abi = &*ABI;
        let mut out: *mut c_char = std::ptr::null_mut();
        let out_ptr = if null_out { std::ptr::null_mut() } else { &mut out as *mut *mut c_char };
        let rc = unsafe { (abi.list)(out_ptr) };
        check(abi, rc, Some(out), null_out.then_some(NULL_ARGUMENT));
    }

    #[test]
    fn result_name(code in any::<c_int>()) {
        let abi = &*ABI;
        let name = abi.result_name(code);
        prop_assert!(name.starts_with("SUBSESSION_RESULT_"));
        prop_assert_eq!((OK..=PANIC).contains(&code), name != "SUBSESSION_RESULT_UNKNOWN");
    }
}

#[test]
fn live_session_survives_the_properties() {
    // Runs alongside the properties: the shared session still answers.
    let abi = &*ABI;
    assert_eq!(abi.exec(LIVE, "pass"), OK, "{}", abi.err());
}
