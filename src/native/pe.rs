//! PE (Windows): the slots are import address table (IAT) entries, named by the
//! import lookup table (INT) that runs parallel to each IAT. Only PE32+ images
//! (x86_64, arm64) are read.
//!
//! Delay-load imports (data directory 13) are left alone: their IAT starts out
//! pointing at the delay-load helper, which overwrites the slot on the first call,
//! so a redirect written before that call would be lost.

use super::image::{Image, Segment, to_usize};
use super::{FormatError, ImportSlot, format_error};

const PE_SIGNATURE: u32 = 0x0000_4550; // "PE\0\0"
const PE32_MAGIC: u16 = 0x10b;
const PE32_PLUS_MAGIC: u16 = 0x20b;
const MACHINES: [u16; 3] = [
    0x8664, // AMD64
    0xaa64, // ARM64
    0xa641, // ARM64EC
];
const IMPORT_DIRECTORY: usize = 1;
const IMAGE_SCN_MEM_WRITE: u32 = 0x8000_0000;
#[cfg(windows)]
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;
const ORDINAL_FLAG: u64 = 1 << 63;
const DESCRIPTOR_SIZE: usize = 20;
const SECTION_HEADER_SIZE: usize = 40;
/// Longest import name read (C++ mangled names can be long; C-API ones are short).
const MAX_NAME: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Section {
    rva: u32,
    virtual_size: u32,
    raw_size: u32,
    raw_pointer: u32,
    characteristics: u32,
}

impl Section {
    /// The size the loader maps: `VirtualSize`, or the raw size when a linker left
    /// `VirtualSize` zero.
    fn mapped_size(&self) -> u32 {
        if self.virtual_size == 0 {
            self.raw_size
        } else {
            self.virtual_size
        }
    }

    fn holds(&self, rva: usize) -> bool {
        let start = self.rva as usize;
        rva >= start && rva - start < self.mapped_size() as usize
    }
}

#[derive(Debug)]
struct Headers {
    size_of_image: usize,
    size_of_headers: usize,
    /// (RVA, size) of the import directory, if the image has one.
    imports: Option<(usize, usize)>,
    sections: Vec<Section>,
}

/// The headers at RVA 0 (the file's first bytes are mapped there unchanged).
fn headers(image: &Image<'_>) -> Result<Headers, FormatError> {
    if image.u16(0).ok() != Some(0x5a4d) {
        return Err(format_error("not a PE file (no MZ header)"));
    }
    let pe = image.u32(0x3c)? as usize;
    if image.u32(pe)? != PE_SIGNATURE {
        return Err(format_error("not a PE file (no PE signature)"));
    }
    let coff = pe + 4;
    let machine = image.u16(coff)?;
    let nsections = usize::from(image.u16(coff + 2)?);
    let optional_size = usize::from(image.u16(coff + 16)?);
    let optional = coff + 20;
    match image.u16(optional)? {
        PE32_PLUS_MAGIC => {}
        PE32_MAGIC => return Err(format_error("a 32-bit (PE32) image: only PE32+ is read")),
        magic => return Err(format_error(format!("PE optional header magic {magic:#x}"))),
    }
    if !MACHINES.contains(&machine) {
        return Err(format_error(format!(
            "PE machine {machine:#x} is not x86_64 or arm64"
        )));
    }
    let size_of_image = image.u32(optional + 56)? as usize;
    let size_of_headers = image.u32(optional + 60)? as usize;
    let directories = image.u32(optional + 108)? as usize;
    // A directory exists only if both the count and the optional header's size say so.
    let directory_at = optional + 112 + 8 * IMPORT_DIRECTORY;
    let imports = if IMPORT_DIRECTORY < directories && directory_at + 8 <= optional + optional_size
    {
        let rva = image.u32(directory_at)? as usize;
        let size = image.u32(directory_at + 4)? as usize;
        (rva != 0).then_some((rva, size))
    } else {
        None
    };
    let table = optional + optional_size;
    let sections = (0..nsections)
        .map(|i| {
            let at = table + i * SECTION_HEADER_SIZE;
            Ok(Section {
                virtual_size: image.u32(at + 8)?,
                rva: image.u32(at + 12)?,
                raw_size: image.u32(at + 16)?,
                raw_pointer: image.u32(at + 20)?,
                characteristics: image.u32(at + 36)?,
            })
        })
        .collect::<Result<Vec<_>, FormatError>>()?;
    Ok(Headers {
        size_of_image,
        size_of_headers,
        imports,
        sections,
    })
}

/// A PE file laid out as the loader maps it: the headers at RVA 0, each section's raw
/// data at its RVA (the zero-filled tail past the raw data is left unmapped).
fn file_image(data: &[u8]) -> Result<Image<'_>, FormatError> {
    let whole = Image::new(vec![Segment {
        offset: 0,
        bytes: data,
    }]);
    let h = headers(&whole)?;
    let mut segments = Vec::with_capacity(h.sections.len() + 1);
    // The headers end where the first section begins, whatever SizeOfHeaders says.
    let first = h
        .sections
        .iter()
        .map(|s| s.rva as usize)
        .min()
        .unwrap_or(usize::MAX);
    let head = h.size_of_headers.min(first).min(data.len());
    segments.push(Segment {
        offset: 0,
        bytes: data.get(..head).unwrap_or_default(),
    });
    for s in &h.sections {
        let len = s.raw_size.min(s.mapped_size()) as usize;
        if len == 0 {
            continue; // .bss and the like: nothing in the file
        }
        let start = s.raw_pointer as usize;
        let bytes = start
            .checked_add(len)
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| format_error("PE section past the end of the file"))?;
        segments.push(Segment {
            offset: s.rva as usize,
            bytes,
        });
    }
    Ok(Image::new(segments))
}

/// The import slots of `wanted` symbols in a PE file.
pub(crate) fn file_slots(data: &[u8], wanted: &[&str]) -> Result<Vec<ImportSlot>, FormatError> {
    import_slots(&file_image(data)?, wanted)
}

/// The slots of `wanted` symbols in an image whose RVA 0 is its load address (a file
/// image, or a loaded module).
pub(crate) fn import_slots(
    image: &Image<'_>,
    wanted: &[&str],
) -> Result<Vec<ImportSlot>, FormatError> {
    let h = headers(image)?;
    let Some((directory, _size)) = h.imports else {
        return Ok(Vec::new());
    };
    // The size field is not trusted (linkers disagree on it); the all-zero descriptor
    // ends the table, and no table is longer than the image.
    let max_descriptors = h.size_of_image / DESCRIPTOR_SIZE;
    let mut slots = Vec::new();
    for i in 0..max_descriptors {
        let at = directory + i * DESCRIPTOR_SIZE;
        let descriptor = image.bytes(at, DESCRIPTOR_SIZE)?;
        if descriptor.iter().all(|&b| b == 0) {
            return Ok(slots);
        }
        let lookup = image.u32(at)? as usize;
        let iat = image.u32(at + 16)? as usize;
        if iat == 0 {
            continue;
        }
        // Without a lookup table the names are only in the IAT itself, which the
        // loader overwrites with addresses: readable in a file, not in memory.
        let names = if lookup != 0 { lookup } else { iat };
        thunk_slots(image, &h, names, iat, wanted, &mut slots)?;
    }
    Err(format_error(
        "PE import directory without its terminating entry",
    ))
}

fn thunk_slots(
    image: &Image<'_>,
    h: &Headers,
    names: usize,
    iat: usize,
    wanted: &[&str],
    slots: &mut Vec<ImportSlot>,
) -> Result<(), FormatError> {
    for i in 0..h.size_of_image / 8 {
        let entry = image.u64(names + 8 * i)?;
        if entry == 0 {
            return Ok(());
        }
        if entry & ORDINAL_FLAG != 0 {
            continue; // imported by number: no name to match
        }
        let hint_name = to_usize(entry & 0x7fff_ffff)?;
        if hint_name >= h.size_of_image || entry >> 31 != 0 {
            // An address, not an RVA: a bound or already-resolved IAT read as names.
            return Ok(());
        }
        let name = image.c_str(hint_name + 2, MAX_NAME)?;
        let Some(index) = wanted.iter().position(|w| w.as_bytes() == name) else {
            continue;
        };
        let offset = iat + 8 * i;
        slots.push(ImportSlot {
            symbol: wanted[index].to_owned(),
            offset,
            read_only: h
                .sections
                .iter()
                .find(|s| s.holds(offset))
                .is_none_or(|s| s.characteristics & IMAGE_SCN_MEM_WRITE == 0),
        });
    }
    Err(format_error(
        "PE import lookup table without its terminating entry",
    ))
}

/// Loads `path` as CPython (3.8+) loads an extension module, and lists the modules
/// the load added to the process with the slots of `wanted` in each. `flags` is the
/// `dlopen` mode of Unix: unused.
#[cfg(windows)]
pub(crate) fn load(
    path: &str,
    _flags: i32,
    wanted: &[&str],
) -> Result<Vec<super::LoadedImage>, FormatError> {
    use super::LoadedImage;

    let wide: Vec<u16> = path.encode_utf16().chain(std::iter::once(0)).collect();
    if wide[..wide.len() - 1].contains(&0) {
        return Err(format_error("a path with a NUL character"));
    }
    let before = win::modules()?;
    // SAFETY: loading a module runs its DllMain, as the interpreter's own load of it
    // would a moment later.
    let module = unsafe {
        win::LoadLibraryExW(
            wide.as_ptr(),
            std::ptr::null_mut(),
            win::LOAD_LIBRARY_SEARCH_DEFAULT_DIRS | win::LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR,
        )
    };
    if module.is_null() {
        return Err(format_error(format!(
            "LoadLibraryExW failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut added: Vec<usize> = win::modules()?
        .into_iter()
        .filter(|m| !before.contains(m))
        .collect();
    if !added.contains(&(module as usize)) {
        added.insert(0, module as usize); // already loaded: at least the module itself
    }
    Ok(added
        .into_iter()
        .map(|base| {
            // SAFETY: `base` is a module of this process that stays loaded (never
            // freed: see `loaded::load`).
            let slots =
                unsafe { memory_image(base) }.and_then(|image| import_slots(&image, wanted));
            LoadedImage {
                path: win::file_name(base),
                base,
                slots,
            }
        })
        .collect())
}

/// A loaded module's headers and readable sections, read in place.
///
/// # Safety
/// `base` must be the load address of a module that stays loaded.
#[cfg(windows)]
unsafe fn memory_image(base: usize) -> Result<Image<'static>, FormatError> {
    // The first page always holds the headers the loader read the module from.
    // SAFETY: the caller's promise; a module's first page is mapped and readable.
    let first = unsafe { std::slice::from_raw_parts(base as *const u8, 0x1000) };
    let h = headers(&Image::new(vec![Segment {
        offset: 0,
        bytes: first,
    }]))?;
    let head = h.size_of_headers.clamp(0x1000, h.size_of_image.max(0x1000));
    // SAFETY: the loader maps SizeOfHeaders bytes of headers at the base.
    let mut segments = vec![Segment {
        offset: 0,
        bytes: unsafe { std::slice::from_raw_parts(base as *const u8, head) },
    }];
    for s in &h.sections {
        let start = s.rva as usize;
        let len = (s.mapped_size() as usize).min(h.size_of_image.saturating_sub(start));
        if s.characteristics & IMAGE_SCN_MEM_READ == 0 || len == 0 || start < head {
            continue;
        }
        // SAFETY: a readable section inside SizeOfImage of a loaded module.
        let bytes = unsafe { std::slice::from_raw_parts((base + start) as *const u8, len) };
        segments.push(Segment {
            offset: start,
            bytes,
        });
    }
    Ok(Image::new(segments))
}

#[cfg(windows)]
mod win {
    use core::ffi::c_void;

    use super::super::{FormatError, format_error};

    pub(super) const LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR: u32 = 0x100;
    pub(super) const LOAD_LIBRARY_SEARCH_DEFAULT_DIRS: u32 = 0x1000;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        pub(super) fn LoadLibraryExW(
            name: *const u16,
            file: *mut c_void,
            flags: u32,
        ) -> *mut c_void;
        fn GetCurrentProcess() -> *mut c_void;
        fn K32EnumProcessModules(
            process: *mut c_void,
            modules: *mut *mut c_void,
            bytes: u32,
            needed: *mut u32,
        ) -> i32;
        fn GetModuleFileNameW(module: *mut c_void, name: *mut u16, size: u32) -> u32;
    }

    /// The load addresses of the process's modules.
    pub(super) fn modules() -> Result<Vec<usize>, FormatError> {
        let mut list: Vec<*mut c_void> = vec![std::ptr::null_mut(); 256];
        // Other threads may load modules meanwhile: grow until the list fits.
        for _ in 0..8 {
            let bytes = u32::try_from(list.len() * std::mem::size_of::<*mut c_void>())
                .map_err(|_| format_error("too many modules"))?;
            let mut needed = 0u32;
            // SAFETY: `list` holds `bytes` bytes; the pseudo-handle needs no closing.
            let ok = unsafe {
                K32EnumProcessModules(GetCurrentProcess(), list.as_mut_ptr(), bytes, &mut needed)
            };
            if ok == 0 {
                return Err(format_error(format!(
                    "K32EnumProcessModules failed: {}",
                    std::io::Error::last_os_error()
                )));
            }
            let count = needed as usize / std::mem::size_of::<*mut c_void>();
            if needed <= bytes {
                list.truncate(count);
                return Ok(list.into_iter().map(|m| m as usize).collect());
            }
            list.resize(count + 64, std::ptr::null_mut());
        }
        Err(format_error("the module list kept growing"))
    }

    pub(super) fn file_name(module: usize) -> String {
        let mut name = vec![0u16; 32768];
        // SAFETY: `name` holds the number of characters passed.
        let len = unsafe { GetModuleFileNameW(module as *mut c_void, name.as_mut_ptr(), 32768) };
        String::from_utf16_lossy(&name[..(len as usize).min(name.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION_RVA: usize = 0x1000;
    const FILE_ALIGN: usize = 0x200;

    /// A PE32+ file with one section (RVA 0x1000, file offset 0x200, writable or not)
    /// importing `names` from python3.dll, the last one by ordinal 7.
    fn tiny_pe(names: &[&str], writable: bool, with_lookup: bool) -> Vec<u8> {
        let mut file = vec![0u8; FILE_ALIGN];
        file[..2].copy_from_slice(b"MZ");
        file[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        file[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        file[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        file[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        file[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        file[opt..opt + 2].copy_from_slice(&PE32_PLUS_MAGIC.to_le_bytes());
        file[opt + 56..opt + 60].copy_from_slice(&0x3000u32.to_le_bytes());
        file[opt + 60..opt + 64].copy_from_slice(&(FILE_ALIGN as u32).to_le_bytes());
        file[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        // Section contents: descriptors (2), INT, IAT, hint/name entries, DLL name.
        let count = names.len() + 1; // + the ordinal import
        let int_at = 2 * DESCRIPTOR_SIZE;
        let iat_at = int_at + 8 * (count + 1);
        let mut body = vec![0u8; iat_at + 8 * (count + 1)];
        let rva = |at: usize| (SECTION_RVA + at) as u32;
        let mut thunks = Vec::new();
        for name in names {
            thunks.push(u64::from(rva(body.len())));
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(name.as_bytes());
            body.push(0);
        }
        thunks.push(ORDINAL_FLAG | 7);
        let dll = rva(body.len());
        body.extend_from_slice(b"python3.dll\0");
        for (i, t) in thunks.iter().enumerate() {
            body[int_at + 8 * i..int_at + 8 * i + 8].copy_from_slice(&t.to_le_bytes());
            body[iat_at + 8 * i..iat_at + 8 * i + 8].copy_from_slice(&t.to_le_bytes());
        }
        let lookup = if with_lookup { rva(int_at) } else { 0 };
        body[..4].copy_from_slice(&lookup.to_le_bytes());
        body[12..16].copy_from_slice(&dll.to_le_bytes());
        body[16..20].copy_from_slice(&rva(iat_at).to_le_bytes());
        let dirs = opt + 112;
        file[dirs + 8..dirs + 12].copy_from_slice(&rva(0).to_le_bytes());
        file[dirs + 12..dirs + 16].copy_from_slice(&(2 * DESCRIPTOR_SIZE as u32).to_le_bytes());
        let table = opt + 240;
        let size = body.len().next_multiple_of(FILE_ALIGN);
        let flags = 0x4000_0040u32 | if writable { IMAGE_SCN_MEM_WRITE } else { 0 };
        file[table..table + 6].copy_from_slice(b".idata");
        file[table + 8..table + 12].copy_from_slice(&(body.len() as u32).to_le_bytes());
        file[table + 12..table + 16].copy_from_slice(&(SECTION_RVA as u32).to_le_bytes());
        file[table + 16..table + 20].copy_from_slice(&(size as u32).to_le_bytes());
        file[table + 20..table + 24].copy_from_slice(&(FILE_ALIGN as u32).to_le_bytes());
        file[table + 36..table + 40].copy_from_slice(&flags.to_le_bytes());
        body.resize(size, 0);
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn finds_the_slot_of_one_import() {
        let file = tiny_pe(&["PyImport_Import", "Py_IncRef"], false, true);
        let slots = file_slots(&file, &["PyImport_Import", "PyCapsule_Import"]).expect("valid PE");
        let iat = SECTION_RVA + 2 * DESCRIPTOR_SIZE + 8 * 4;
        assert_eq!(
            slots,
            vec![ImportSlot {
                symbol: "PyImport_Import".to_owned(),
                offset: iat,
                read_only: true,
            }]
        );
    }

    #[test]
    fn reads_the_iat_when_there_is_no_lookup_table_and_sees_write_access() {
        let file = tiny_pe(&["Py_IncRef", "PyCapsule_Import"], true, false);
        let slots = file_slots(&file, &["PyCapsule_Import"]).expect("valid PE");
        assert_eq!(slots.len(), 1);
        assert_eq!(
            slots[0].offset,
            SECTION_RVA + 2 * DESCRIPTOR_SIZE + 8 * 4 + 8
        );
        assert!(!slots[0].read_only);
    }

    #[test]
    fn in_memory_the_names_come_from_the_lookup_table() {
        let mut file = tiny_pe(&["Py_IncRef", "PyImport_Import"], false, true);
        // The loader has replaced the IAT's name RVAs with addresses.
        let iat = FILE_ALIGN + 2 * DESCRIPTOR_SIZE + 8 * 4;
        for i in 0..3 {
            let address = 0x7ffb_1234_0000u64 + 16 * i as u64;
            file[iat + 8 * i..iat + 8 * i + 8].copy_from_slice(&address.to_le_bytes());
        }
        let loaded = Image::new(vec![
            Segment {
                offset: 0,
                bytes: &file[..FILE_ALIGN],
            },
            Segment {
                offset: SECTION_RVA,
                bytes: &file[FILE_ALIGN..],
            },
        ]);
        let slots = import_slots(&loaded, &["PyImport_Import"]).expect("readable");
        assert_eq!(slots.len(), 1);
        assert_eq!(
            slots[0].offset,
            SECTION_RVA + 2 * DESCRIPTOR_SIZE + 8 * 4 + 8
        );
        // Without a lookup table a loaded module's names are gone: no slot, no error.
        let mut bare = file.clone();
        bare[FILE_ALIGN..FILE_ALIGN + 4].copy_from_slice(&0u32.to_le_bytes());
        let loaded = Image::new(vec![
            Segment {
                offset: 0,
                bytes: &bare[..FILE_ALIGN],
            },
            Segment {
                offset: SECTION_RVA,
                bytes: &bare[FILE_ALIGN..],
            },
        ]);
        assert_eq!(import_slots(&loaded, &["PyImport_Import"]), Ok(Vec::new()));
    }

    #[test]
    fn rejects_pe32_and_other_machines() {
        let mut file = tiny_pe(&["PyImport_Import"], false, true);
        file[0x44 + 20..0x44 + 22].copy_from_slice(&PE32_MAGIC.to_le_bytes());
        let err = file_slots(&file, &["PyImport_Import"]).expect_err("PE32");
        assert!(err.0.contains("PE32"), "{err}");
        let mut file = tiny_pe(&["PyImport_Import"], false, true);
        file[0x44..0x46].copy_from_slice(&0x14cu16.to_le_bytes());
        assert!(file_slots(&file, &["PyImport_Import"]).is_err());
    }

    #[test]
    fn truncated_or_garbage_files_are_errors() {
        let file = tiny_pe(&["PyImport_Import", "PyCapsule_Import"], false, true);
        for len in 0..file.len() {
            let _ = file_slots(&file[..len], &["PyImport_Import"]);
        }
        for len in [0, 2, 0x40, 0x44, 0x100] {
            assert!(
                file_slots(&file[..len], &["PyImport_Import"]).is_err(),
                "{len}"
            );
        }
        // Every byte of the headers and tables, flipped: errors or results, no panic.
        for at in 0..file.len() {
            for value in [0x00, 0xff, 0x7f, 0x80] {
                let mut bad = file.clone();
                bad[at] = value;
                let _ = file_slots(&bad, &["PyImport_Import", "PyCapsule_Import"]);
            }
        }
        for at in (0..file.len() - 8).step_by(4) {
            let mut bad = file.clone();
            bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let _ = file_slots(&bad, &["PyImport_Import"]);
        }
        assert!(file_slots(b"MZ", &[]).is_err());
        assert!(file_slots(&[0xffu8; 4096], &[]).is_err());
    }

    #[test]
    fn a_table_without_end_is_an_error_not_a_loop() {
        let mut file = tiny_pe(&["PyImport_Import"], false, true);
        // Overwrite the terminating descriptor and all that follows with garbage.
        let body = FILE_ALIGN;
        for b in &mut file[body + DESCRIPTOR_SIZE..] {
            *b = 0x41;
        }
        assert!(file_slots(&file, &["PyImport_Import"]).is_err());
    }
}
