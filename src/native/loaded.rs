//! Loading a library and listing what the load brought into the process: the library
//! and the dependencies it pulled in, each with its import slots found in memory.

use super::{FormatError, ImportSlot};

/// One library a load brought in.
#[derive(Debug)]
pub(crate) struct LoadedImage {
    pub(crate) path: String,
    /// The load address the slots' offsets are relative to.
    pub(crate) base: usize,
    /// The slots of the wanted symbols, or why the import table could not be read.
    pub(crate) slots: Result<Vec<ImportSlot>, FormatError>,
}

/// Loads the library at `path` as the interpreter will load it (Unix: with the
/// interpreter's `dlopen` flags), and lists the libraries this load added to the
/// process with the slots of `wanted` in each. The library stays loaded for the
/// process's life, as CPython keeps extension modules; the interpreter's own load of
/// the same path then finds it loaded, already patched.
pub(crate) fn load(
    path: &str,
    flags: i32,
    wanted: &[&str],
) -> Result<Vec<LoadedImage>, FormatError> {
    imp::load(path, flags, wanted)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashSet;
    use std::ffi::{CStr, CString, c_int, c_void};

    use super::super::elf::{self, ProgramHeader};
    use super::super::format_error;
    use super::super::image::{Image, Segment};
    use super::{FormatError, LoadedImage};

    struct Seen {
        base: usize,
        path: String,
        headers: Vec<ProgramHeader>,
    }

    fn loaded_objects() -> Vec<Seen> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: usize,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: the loader passes a valid info; data is the Vec below.
            let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Seen>)) };
            let path = if info.dlpi_name.is_null() {
                String::new()
            } else {
                // SAFETY: a NUL-terminated name owned by the loader.
                unsafe { CStr::from_ptr(info.dlpi_name) }
                    .to_string_lossy()
                    .into_owned()
            };
            let count = usize::from(info.dlpi_phnum);
            let headers = if info.dlpi_phdr.is_null() {
                Vec::new()
            } else {
                // SAFETY: dlpi_phnum program headers at dlpi_phdr.
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, count) }
                    .iter()
                    .map(|p| ProgramHeader {
                        kind: p.p_type,
                        offset: p.p_offset,
                        vaddr: p.p_vaddr,
                        filesz: p.p_filesz,
                        memsz: if p.p_flags & libc::PF_R != 0 {
                            p.p_memsz
                        } else {
                            0
                        },
                    })
                    .collect()
            };
            out.push(Seen {
                base: info.dlpi_addr as usize,
                path,
                headers,
            });
            0
        }
        let mut out: Vec<Seen> = Vec::new();
        // SAFETY: the callback only reads what the loader hands it.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut Vec<Seen>).cast()) };
        out
    }

    pub(super) fn load(
        path: &str,
        flags: i32,
        wanted: &[&str],
    ) -> Result<Vec<LoadedImage>, FormatError> {
        let c_path = CString::new(path).map_err(|_| format_error("a path with a NUL byte"))?;
        let before: HashSet<(usize, String)> = loaded_objects()
            .into_iter()
            .map(|s| (s.base, s.path))
            .collect();
        // SAFETY: loading a library runs its initialisers, as the interpreter's own
        // load of it would a moment later.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), flags) };
        if handle.is_null() {
            // SAFETY: dlerror returns a loader-owned string or NULL.
            let why = unsafe { libc::dlerror() };
            let why = if why.is_null() {
                "unknown".to_owned()
            } else {
                unsafe { CStr::from_ptr(why) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format_error(format!("dlopen failed: {why}")));
        }
        Ok(loaded_objects()
            .into_iter()
            .filter(|s| !before.contains(&(s.base, s.path.clone())))
            .map(|s| {
                let slots = memory_image(&s)
                    .and_then(|image| elf::import_slots(&image, &s.headers, s.base, wanted));
                LoadedImage {
                    path: s.path,
                    base: s.base,
                    slots,
                }
            })
            .collect())
    }

    fn memory_image(seen: &Seen) -> Result<Image<'static>, FormatError> {
        let mut segments = Vec::new();
        for h in seen.headers.iter().filter(|h| h.kind == 1 && h.memsz > 0) {
            let offset = usize::try_from(h.vaddr).map_err(|_| format_error("huge vaddr"))?;
            let len = usize::try_from(h.memsz).map_err(|_| format_error("huge segment"))?;
            // SAFETY: a readable PT_LOAD segment of a loaded object stays mapped for
            // the process's life (the object is never unloaded: see `load`).
            let bytes =
                unsafe { std::slice::from_raw_parts((seen.base + offset) as *const u8, len) };
            segments.push(Segment { offset, bytes });
        }
        Ok(Image::new(segments))
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use super::{FormatError, LoadedImage};

    pub(super) fn load(
        path: &str,
        flags: i32,
        wanted: &[&str],
    ) -> Result<Vec<LoadedImage>, FormatError> {
        super::super::macho::load(path, flags, wanted)
    }
}

#[cfg(windows)]
mod imp {
    use super::{FormatError, LoadedImage};

    pub(super) fn load(
        path: &str,
        flags: i32,
        wanted: &[&str],
    ) -> Result<Vec<LoadedImage>, FormatError> {
        super::super::pe::load(path, flags, wanted)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
    use super::super::format_error;
    use super::{FormatError, LoadedImage};

    pub(super) fn load(
        _path: &str,
        _flags: i32,
        _wanted: &[&str],
    ) -> Result<Vec<LoadedImage>, FormatError> {
        Err(format_error("import tables are not read on this platform"))
    }
}
