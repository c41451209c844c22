//! Writing one import slot of a loaded library.
//!
//! A slot is pointer-sized and aligned, so the write is one store other threads see
//! whole. Slots the loader made read-only (RELRO, `__DATA_CONST`) get their page
//! writable for the store and read-only again after it.

use super::{FormatError, format_error};

/// Stores `value` into the pointer at `address`.
///
/// # Safety
/// `address` must be an import slot of a library loaded in this process (found by the
/// format readers), and `value` a function with the signature the slot's symbol has.
pub(crate) unsafe fn write_slot(
    address: usize,
    value: usize,
    read_only: bool,
) -> Result<(), FormatError> {
    if address % std::mem::align_of::<usize>() != 0 {
        return Err(format_error(format!(
            "unaligned import slot at {address:#x}"
        )));
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        let _writable = Writable::page_of(address, read_only)?;
        std::ptr::write_volatile(address as *mut usize, value);
    }
    Ok(())
}

/// Reads the pointer at `address` (what the loader put in a slot).
///
/// # Safety
/// `address` must be an import slot of a loaded library.
pub(crate) unsafe fn read_slot(address: usize) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe { std::ptr::read_volatile(address as *const usize) }
}

/// The page holding a slot, writable while this lives.
struct Writable {
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    page: usize,
    restore: Option<u32>,
}

#[cfg(unix)]
impl Writable {
    unsafe fn page_of(address: usize, read_only: bool) -> Result<Self, FormatError> {
        // SAFETY: sysconf has no preconditions.
        let size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let page = address & !(size - 1);
        if !read_only {
            return Ok(Self {
                page,
                restore: None,
            });
        }
        // SAFETY: the page belongs to a mapped library (the caller's promise).
        let rc = unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(format_error(format!(
                "the page at {page:#x} cannot be made writable ({})",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Self {
            page,
            restore: Some(libc::PROT_READ as u32),
        })
    }
}

#[cfg(unix)]
impl Drop for Writable {
    fn drop(&mut self) {
        if let Some(prot) = self.restore {
            // SAFETY: the page was made writable above; this only takes write away.
            let size =
                usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
            unsafe { libc::mprotect(self.page as *mut libc::c_void, size, prot as i32) };
        }
    }
}

#[cfg(windows)]
mod win {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        pub(super) fn VirtualProtect(
            address: *mut core::ffi::c_void,
            size: usize,
            new_protect: u32,
            old_protect: *mut u32,
        ) -> i32;
    }
    pub(super) const PAGE_READWRITE: u32 = 0x04;
}

#[cfg(windows)]
impl Writable {
    unsafe fn page_of(address: usize, _read_only: bool) -> Result<Self, FormatError> {
        // The IAT's protection is whatever the section says (often read-only):
        // VirtualProtect reports it, so it is always switched and restored.
        let mut old = 0u32;
        // SAFETY: the slot belongs to a mapped module (the caller's promise).
        let ok = unsafe {
            win::VirtualProtect(
                address as *mut core::ffi::c_void,
                std::mem::size_of::<usize>(),
                win::PAGE_READWRITE,
                &mut old,
            )
        };
        if ok == 0 {
            return Err(format_error(format!(
                "the import slot at {address:#x} cannot be made writable ({})",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Self {
            page: address,
            restore: Some(old),
        })
    }
}

#[cfg(windows)]
impl Drop for Writable {
    fn drop(&mut self) {
        if let Some(old) = self.restore {
            let mut ignored = 0u32;
            // SAFETY: restores the protection VirtualProtect reported above.
            unsafe {
                win::VirtualProtect(
                    self.page as *mut core::ffi::c_void,
                    std::mem::size_of::<usize>(),
                    old,
                    &mut ignored,
                )
            };
        }
    }
}

#[cfg(not(any(unix, windows)))]
impl Writable {
    unsafe fn page_of(_address: usize, _read_only: bool) -> Result<Self, FormatError> {
        Err(format_error(
            "import slots cannot be written on this platform",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_read_only_page_and_restores_it() {
        // A page of our own, made read-only, stands in for a RELRO GOT page.
        #[cfg(unix)]
        unsafe {
            let size = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
            let page = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            assert_eq!(libc::mprotect(page, size, libc::PROT_READ), 0);
            let slot = page as usize + 64;
            write_slot(slot, 0xdead_beef, true).expect("writable for the store");
            assert_eq!(read_slot(slot), 0xdead_beef);
            assert!(write_slot(slot + 1, 1, true).is_err(), "unaligned");
            libc::munmap(page, size);
        }
    }
}
