//! Loading a library and listing what the load brought into the process: the library
//! and the dependencies it pulled in, each with its import slots found in memory.

use super::{FormatError, LoadedImage};

/// What one load brought in.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) images: Vec<LoadedImage>,
    /// Time spent listing the new images and reading their tables (not loading).
    pub(crate) read_nanos: u64,
}

/// Loads the library at `path` as the interpreter will load it (Unix: with the
/// interpreter's `dlopen` flags), and lists the libraries this load added to the
/// process with the slots of `wanted` in each. The library stays loaded for the
/// process's life, as CPython keeps extension modules; the interpreter's own load of
/// the same path then finds it loaded, already patched.
pub(crate) fn load(path: &str, flags: i32, wanted: &[&str]) -> Result<Loaded, FormatError> {
    imp::load(path, flags, wanted)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{CStr, c_int, c_void};

    use super::super::elf::{self, ProgramHeader};
    use super::super::format_error;
    use super::super::image::{Image, Segment};
    use super::{FormatError, Loaded, LoadedImage};

    struct Seen {
        base: usize,
        path: String,
        headers: Vec<ProgramHeader>,
    }

    /// What one walk of the loaded objects collects. An object is known by the address
    /// of its program headers (unique while it is loaded; a load address alone is
    /// not: the executable's may be 0).
    struct Walk<'a> {
        known: &'a [usize],
        keys: Vec<usize>,
        new: Vec<Seen>,
    }

    /// Keys of every loaded object, and the details of those not in `known` (sorted).
    fn walk(known: &[usize]) -> Walk<'_> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: usize,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: the loader passes a valid info; data is the Walk below.
            let (info, walk) = unsafe { (&*info, &mut *(data as *mut Walk<'_>)) };
            let key = info.dlpi_phdr as usize;
            walk.keys.push(key);
            if walk.known.binary_search(&key).is_ok() || info.dlpi_phdr.is_null() {
                return 0;
            }
            let path = if info.dlpi_name.is_null() {
                String::new()
            } else {
                // SAFETY: a NUL-terminated name owned by the loader.
                unsafe { CStr::from_ptr(info.dlpi_name) }
                    .to_string_lossy()
                    .into_owned()
            };
            // SAFETY: dlpi_phnum program headers at dlpi_phdr.
            let headers =
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
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
                    .collect();
            walk.new.push(Seen {
                base: info.dlpi_addr as usize,
                path,
                headers,
            });
            0
        }
        let mut walk = Walk {
            known,
            keys: Vec::new(),
            new: Vec::new(),
        };
        // SAFETY: the callback only reads what the loader hands it.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut walk as *mut Walk<'_>).cast()) };
        walk
    }

    pub(super) fn load(path: &str, flags: i32, wanted: &[&str]) -> Result<Loaded, FormatError> {
        let started = std::time::Instant::now();
        let mut before = walk(&[]).keys;
        before.sort_unstable();
        let listing = started.elapsed();
        super::super::open_library(path, flags)?;
        let started = std::time::Instant::now();
        let new = walk(&before).new;
        // Each object's image is laid out once, for its dependencies and its slots.
        let mapped: Vec<Result<Image<'static>, FormatError>> =
            new.iter().map(memory_image).collect();
        let taken = brought_in(path, &new, &mapped);
        let images: Vec<LoadedImage> = new
            .into_iter()
            .zip(mapped)
            .zip(taken)
            .filter_map(|((s, image), taken)| {
                taken.then(|| LoadedImage {
                    slots: image.and_then(|i| elf::import_slots(&i, &s.headers, s.base, wanted)),
                    path: s.path,
                    base: s.base,
                })
            })
            .collect();
        let read = listing + started.elapsed();
        Ok(Loaded {
            images,
            read_nanos: u64::try_from(read.as_nanos()).unwrap_or(u64::MAX),
        })
    }

    /// Of the objects that appeared during the load, the library at `path` and what it
    /// needs, directly or not. Another thread may load a library of its own meanwhile
    /// (ctypes releases the GIL around `dlopen`): that one is not the session's.
    /// Returns, per object of `new`, whether it is one of them.
    fn brought_in(
        path: &str,
        new: &[Seen],
        mapped: &[Result<Image<'static>, FormatError>],
    ) -> Vec<bool> {
        let names: Vec<(Option<String>, Vec<String>)> = new
            .iter()
            .zip(mapped)
            .map(|(s, image)| {
                image
                    .as_ref()
                    .ok()
                    .and_then(|image| elf::dependencies(image, &s.headers, s.base).ok())
                    .unwrap_or_default()
            })
            .collect();
        let file_name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
        let mut taken: Vec<bool> = new.iter().map(|s| s.path == path).collect();
        let mut wanted: Vec<String> = Vec::new();
        for (i, (_, needed)) in names.iter().enumerate() {
            if taken[i] {
                wanted.extend(needed.iter().cloned());
            }
        }
        // Each round takes at least one more object, so this ends.
        loop {
            let mut grew = false;
            for (i, s) in new.iter().enumerate() {
                if taken[i] {
                    continue;
                }
                let own = [names[i].0.clone(), Some(file_name(&s.path))];
                if own.iter().flatten().any(|n| wanted.contains(n)) {
                    taken[i] = true;
                    wanted.extend(names[i].1.iter().cloned());
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        taken
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
    use super::{FormatError, Loaded};

    pub(super) fn load(path: &str, flags: i32, wanted: &[&str]) -> Result<Loaded, FormatError> {
        // The reader times nothing apart from the load here: the bench runs on Linux.
        let images = super::super::macho::load(path, flags, wanted)?;
        Ok(Loaded {
            images,
            read_nanos: 0,
        })
    }
}

#[cfg(windows)]
mod imp {
    use super::{FormatError, Loaded};

    pub(super) fn load(path: &str, flags: i32, wanted: &[&str]) -> Result<Loaded, FormatError> {
        // The reader times nothing apart from the load here: the bench runs on Linux.
        let images = super::super::pe::load(path, flags, wanted)?;
        Ok(Loaded {
            images,
            read_nanos: 0,
        })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
    use super::super::format_error;
    use super::{FormatError, Loaded};

    pub(super) fn load(_path: &str, _flags: i32, _wanted: &[&str]) -> Result<Loaded, FormatError> {
        Err(format_error("import tables are not read on this platform"))
    }
}
