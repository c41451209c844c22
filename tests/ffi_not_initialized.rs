//! Its own test binary, so its own process: Python is NEVER initialised here.
//! libpython is loaded and global (this binary links it through pyo3), but nobody
//! called Py_Initialize. Every Python-touching function must answer
//! NOT_INITIALIZED, and must not initialise the interpreter as a side effect.
mod common;

use common::*;
use std::ffi::c_char;

fn python_initialized() -> bool {
    // SAFETY: may be called at any time, even before initialisation.
    unsafe { pyo3::ffi::Py_IsInitialized() != 0 }
}

fn every_call_is_not_initialized(abi: &Abi) {
    let mut out: *mut c_char = std::ptr::null_mut();
    let n = cs("s");
    let m = cs("os.getcwd");
    let results = unsafe {
        [
            (abi.create)(n.as_ptr(), std::ptr::null()),
            (abi.create)(n.as_ptr(), cs(r#"{"paths": []}"#).as_ptr()),
            (abi.exec)(n.as_ptr(), cs("pass").as_ptr()),
            (abi.import)(n.as_ptr(), cs("json").as_ptr()),
            (abi.call)(n.as_ptr(), m.as_ptr(), std::ptr::null(), &mut out),
            (abi.reload)(n.as_ptr(), 1, 1, &mut out),
            (abi.close)(n.as_ptr(), &mut out),
            (abi.list)(&mut out),
        ]
    };
    for (i, rc) in results.into_iter().enumerate() {
        assert_eq!(rc, NOT_INITIALIZED, "call {i}");
        let err = abi.err();
        assert!(err.contains("not initialized"), "call {i}: {err}");
        assert!(err.contains("nothing was initialised"), "call {i}: {err}");
    }
    assert!(out.is_null());
    // argument checks still come first: they need no interpreter
    assert_eq!(
        unsafe { (abi.exec)(std::ptr::null(), n.as_ptr()) },
        NULL_ARGUMENT
    );
    assert_eq!(abi.create("s", Some("{bad")), INVALID_CONFIG);
}

#[test]
fn calls_fail_cleanly_without_an_interpreter() {
    let abi = Abi::load();
    assert!(!python_initialized());
    assert_eq!(unsafe { (abi.abi_version)() }, 1);
    assert_eq!(
        abi.result_name(NOT_INITIALIZED),
        "SUBSESSION_RESULT_NOT_INITIALIZED"
    );
    every_call_is_not_initialized(&abi);
    // also from threads that are not the main thread
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| every_call_is_not_initialized(&abi));
        }
    });
    unsafe { (abi.string_free)(std::ptr::null_mut()) };
    assert!(!python_initialized(), "no call may initialise Python");
}
