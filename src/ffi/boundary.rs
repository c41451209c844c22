//! The boundary: failures as result codes, the thread-local last error, and the
//! one place panics are caught (`guard`).

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;

/// A failed call: the code returned to C and the message kept for last_error().
pub(super) struct Failure {
    pub(super) code: subsession_result,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(code: subsession_result, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

pub(super) type Outcome<T> = Result<T, Failure>;

thread_local! {
    /// Per thread, so concurrent callers never read each other's messages; a
    /// CString so the pointer handed out is NUL-terminated and stays valid until
    /// this thread's next call replaces it.
    pub(super) static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub(super) fn set_last_error(message: Option<&str>) {
    // C strings cannot hold NUL: show it instead of truncating the message there.
    let value = message.map(|m| {
        CString::new(m.replace('\0', "\\0")).unwrap_or_else(|_| c"(unprintable error)".into())
    });
    // try_with: during thread teardown the slot may be gone; losing a message then
    // beats panicking.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = value;
        }
    });
}

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned())
}

/// The panic boundary every entry point runs in: clears the last error, runs
/// `body`, records a failure's message and returns its code.
pub(super) fn guard(body: impl FnOnce() -> Outcome<()>) -> subsession_result {
    set_last_error(None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => R::Ok,
        Ok(Err(failure)) => {
            set_last_error(Some(&failure.message));
            failure.code
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            // Dropping a payload can itself panic (a Drop impl): never let it out.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(Some(&format!(
                "internal error (Rust panic) in subsession: {message}; please report it"
            )));
            R::Panic
        }
    }
}
