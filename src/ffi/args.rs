//! Argument checks, in one place: every pointer and string from C is checked here
//! before anything else happens, and `out` parameters are written only on success.

use std::ffi::{CStr, CString, c_char};

use super::*;

/// Borrows a required C string argument as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the call.
pub(super) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Outcome<&'a str> {
    if p.is_null() {
        return Err(Failure::new(
            R::NullArgument,
            format!("`{what}` is NULL; pass a NUL-terminated UTF-8 string"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::new(
            R::InvalidUtf8,
            format!(
                "`{what}` is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Like [`str_arg`], but NULL means "not given".
///
/// # Safety
/// As for [`str_arg`].
pub(super) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Outcome<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// An out-parameter for a library-allocated string. Reset to NULL on entry so the
/// caller may free it unconditionally, whatever the result.
pub(super) struct OutStr(*mut *mut c_char);

impl OutStr {
    /// # Safety
    /// `p` is NULL or valid for writing one pointer.
    pub(super) unsafe fn new(p: *mut *mut c_char, what: &str, required: bool) -> Outcome<OutStr> {
        if p.is_null() {
            if required {
                return Err(Failure::new(
                    R::NullArgument,
                    format!("`{what}` is NULL; pass the address of a `char *`"),
                ));
            }
        } else {
            // SAFETY: valid for writes per this function's contract.
            unsafe { *p = std::ptr::null_mut() };
        }
        Ok(OutStr(p))
    }

    pub(super) fn set(&self, value: String) -> Outcome<()> {
        if self.0.is_null() {
            return Ok(()); // optional output the caller does not want
        }
        let c = CString::new(value).map_err(|e| {
            Failure::new(
                R::PythonException,
                format!(
                    "the result contains a NUL byte at offset {}; a C string cannot carry it",
                    e.nul_position()
                ),
            )
        })?;
        // SAFETY: checked non-NULL; validity per `new`'s contract.
        unsafe { *self.0 = c.into_raw() };
        Ok(())
    }
}
