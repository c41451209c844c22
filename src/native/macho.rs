//! Mach-O (macOS): the slots are the symbol pointer sections (`__got`,
//! `__la_symbol_ptr`, `__nl_symbol_ptr`, `__auth_got`), each pointer named through the
//! indirect symbol table, as fishhook finds them. Only 64-bit little-endian images
//! (x86_64, arm64) are read; a universal file is read slice by slice.
//!
//! Offsets are from the mach header. dyld maps each segment at `slide + vmaddr` and the
//! header at `slide + vmaddr` of the segment that starts the file, so a segment lies at
//! `vmaddr - that vmaddr` in both a file image and a loaded one.
//!
//! Chained fixups (LC_DYLD_CHAINED_FIXUPS) change how dyld fills the pointers, not
//! the indirect symbol table ld64 writes for `__got` (fishhook relies on it too); the
//! fixup chains themselves are not read. Pointers to C-API functions stored in
//! `__const`/`__data` are not call slots and are not read either.

use super::image::{Image, Segment, to_usize};
use super::{FormatError, ImportSlot, format_error};

const MH_MAGIC: u32 = 0xfeed_face;
const MH_MAGIC_64: u32 = 0xfeed_facf;
const MH_CIGAM_64: u32 = 0xcffa_edfe;
const FAT_MAGIC: u32 = 0xcafe_babe;
const FAT_MAGIC_64: u32 = 0xcafe_babf;
const CPU_TYPE_X86_64: u32 = 0x0100_0007;
const CPU_TYPE_ARM64: u32 = 0x0100_000c;
const HEADER_SIZE: usize = 32;

const LC_SEGMENT_64: u32 = 0x19;
const LC_SYMTAB: u32 = 0x2;
const LC_DYSYMTAB: u32 = 0xb;
const SEGMENT_COMMAND_SIZE: usize = 72;
const SECTION_SIZE: usize = 80;
const NLIST_SIZE: usize = 16;

const SECTION_TYPE: u32 = 0xff;
const S_NON_LAZY_SYMBOL_POINTERS: u32 = 0x6;
const S_LAZY_SYMBOL_POINTERS: u32 = 0x7;
const INDIRECT_SYMBOL_LOCAL: u32 = 0x8000_0000;
const INDIRECT_SYMBOL_ABS: u32 = 0x4000_0000;
/// dyld makes the segment read-only once its pointers are bound.
const SG_READ_ONLY: u32 = 0x10;
#[cfg(target_os = "macos")]
const VM_PROT_READ: u32 = 0x1;
const VM_PROT_WRITE: u32 = 0x2;
/// Segments dyld write-protects after binding (older linkers do not set SG_READ_ONLY).
const READ_ONLY_SEGMENTS: [&[u8]; 2] = [b"__DATA_CONST", b"__AUTH_CONST"];
const MAX_NAME: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct SegmentCommand {
    name: [u8; 16],
    /// Where the command sits in the image (its sections follow it).
    at: usize,
    vmaddr: u64,
    vmsize: u64,
    fileoff: u64,
    filesize: u64,
    initprot: u32,
    nsects: u32,
    flags: u32,
}

impl SegmentCommand {
    fn read_only(&self) -> bool {
        let name = self.name.split(|&b| b == 0).next().unwrap_or_default();
        READ_ONLY_SEGMENTS.contains(&name)
            || self.flags & SG_READ_ONLY != 0
            || self.initprot & VM_PROT_WRITE == 0
    }
}

#[derive(Debug, Default)]
struct Commands {
    segments: Vec<SegmentCommand>,
    /// LC_SYMTAB: symoff, nsyms, stroff, strsize (file offsets).
    symtab: Option<[u32; 4]>,
    /// LC_DYSYMTAB: indirectsymoff, nindirectsyms.
    indirect: Option<[u32; 2]>,
}

impl Commands {
    /// The vmaddr of the header: the segment that maps the start of the file.
    fn base_vmaddr(&self) -> Result<u64, FormatError> {
        self.segments
            .iter()
            .find(|s| s.fileoff == 0 && s.filesize != 0)
            .map(|s| s.vmaddr)
            .ok_or_else(|| format_error("Mach-O without a segment mapping its header"))
    }

    /// The image offset of a __LINKEDIT file offset (symbol and string tables).
    fn linkedit_offset(&self, file_offset: u32, base: u64) -> Result<usize, FormatError> {
        let file_offset = u64::from(file_offset);
        let segment = self
            .segments
            .iter()
            .find(|s| file_offset >= s.fileoff && file_offset - s.fileoff < s.filesize)
            .ok_or_else(|| format_error("Mach-O symbol table outside every segment"))?;
        let offset = segment
            .vmaddr
            .checked_sub(base)
            .and_then(|o| o.checked_add(file_offset - segment.fileoff))
            .ok_or_else(|| format_error("Mach-O segment below its header"))?;
        to_usize(offset)
    }
}

fn big_u32(data: &[u8], at: usize) -> Result<u32, FormatError> {
    data.get(at..at.saturating_add(4))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format_error("truncated universal header"))
}

fn big_u64(data: &[u8], at: usize) -> Result<u64, FormatError> {
    Ok(u64::from(big_u32(data, at)?) << 32 | u64::from(big_u32(data, at + 4)?))
}

/// `at + len`, for offsets taken from the file (a garbage one must not overflow).
fn past(at: usize, len: usize) -> Result<usize, FormatError> {
    at.checked_add(len)
        .ok_or_else(|| format_error("Mach-O offset past the address space"))
}

fn arch_name(cputype: u32) -> Option<&'static str> {
    match cputype {
        CPU_TYPE_X86_64 => Some("x86_64"),
        CPU_TYPE_ARM64 => Some("arm64"),
        _ => None,
    }
}

/// The load commands of the image whose mach header is at offset 0.
fn commands(image: &Image<'_>) -> Result<Commands, FormatError> {
    match image.u32(0).ok() {
        Some(MH_MAGIC_64) => {}
        Some(MH_MAGIC) => return Err(format_error("a 32-bit Mach-O: only 64-bit is read")),
        Some(MH_CIGAM_64) => return Err(format_error("a big-endian Mach-O")),
        _ => return Err(format_error("not a Mach-O file")),
    }
    let cputype = image.u32(4)?;
    if arch_name(cputype).is_none() {
        return Err(format_error(format!(
            "Mach-O CPU type {cputype:#x} is not x86_64 or arm64"
        )));
    }
    let ncmds = image.u32(16)? as usize;
    let sizeofcmds = image.u32(20)? as usize;
    let end = HEADER_SIZE
        .checked_add(sizeofcmds)
        .ok_or_else(|| format_error("Mach-O load commands past the address space"))?;
    // One read up front: every command then lies in mapped bytes.
    image.bytes(HEADER_SIZE, sizeofcmds)?;
    let mut found = Commands::default();
    let mut at = HEADER_SIZE;
    for _ in 0..ncmds.min(sizeofcmds / 8) {
        let cmd = image.u32(at)?;
        let size = image.u32(at + 4)? as usize;
        if size < 8 || at + size > end {
            return Err(format_error("Mach-O load command of a bad size"));
        }
        match cmd {
            LC_SEGMENT_64 if size >= SEGMENT_COMMAND_SIZE => {
                let mut name = [0u8; 16];
                name.copy_from_slice(image.bytes(at + 8, 16)?);
                let segment = SegmentCommand {
                    name,
                    at,
                    vmaddr: image.u64(at + 24)?,
                    vmsize: image.u64(at + 32)?,
                    fileoff: image.u64(at + 40)?,
                    filesize: image.u64(at + 48)?,
                    initprot: image.u32(at + 60)?,
                    nsects: image.u32(at + 64)?,
                    flags: image.u32(at + 68)?,
                };
                if (segment.nsects as usize).saturating_mul(SECTION_SIZE)
                    > size - SEGMENT_COMMAND_SIZE
                {
                    return Err(format_error("Mach-O sections past their segment command"));
                }
                found.segments.push(segment);
            }
            LC_SYMTAB if size >= 24 => {
                found.symtab = Some([
                    image.u32(at + 8)?,
                    image.u32(at + 12)?,
                    image.u32(at + 16)?,
                    image.u32(at + 20)?,
                ]);
            }
            LC_DYSYMTAB if size >= 80 => {
                found.indirect = Some([image.u32(at + 56)?, image.u32(at + 60)?]);
            }
            _ => {}
        }
        at += size;
    }
    Ok(found)
}

/// One thin Mach-O laid out as dyld maps it (offset 0: the mach header).
fn file_image(data: &[u8]) -> Result<Image<'_>, FormatError> {
    let whole = Image::new(vec![Segment {
        offset: 0,
        bytes: data,
    }]);
    let found = commands(&whole)?;
    let base = found.base_vmaddr()?;
    let mut segments = Vec::new();
    for s in found.segments.iter().filter(|s| s.filesize != 0) {
        let offset = s
            .vmaddr
            .checked_sub(base)
            .ok_or_else(|| format_error("Mach-O segment below its header"))?;
        let start = to_usize(s.fileoff)?;
        let len = to_usize(s.filesize.min(s.vmsize))?;
        let bytes = start
            .checked_add(len)
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| format_error("Mach-O segment past the end of the file"))?;
        segments.push(Segment {
            offset: to_usize(offset)?,
            bytes,
        });
    }
    Ok(Image::new(segments))
}

/// The import slots of `wanted` in a Mach-O file: a thin 64-bit one (plain names) or
/// a universal one (each 64-bit slice's slots, named `arch:symbol`).
pub(crate) fn file_slots(data: &[u8], wanted: &[&str]) -> Result<Vec<ImportSlot>, FormatError> {
    let magic = big_u32(data, 0).map_err(|_| format_error("not a library: too short"))?;
    if magic != FAT_MAGIC && magic != FAT_MAGIC_64 {
        if !matches!(
            u32::from_le_bytes(magic.to_be_bytes()),
            MH_MAGIC_64 | MH_MAGIC | MH_CIGAM_64
        ) {
            return Err(format_error("not an ELF, PE or Mach-O file"));
        }
        return import_slots(&file_image(data)?, wanted);
    }
    let wide = magic == FAT_MAGIC_64;
    let entry_size = if wide { 32 } else { 20 };
    let count = big_u32(data, 4)? as usize;
    if count.saturating_mul(entry_size) > data.len() {
        return Err(format_error("universal header lists more slices than fit"));
    }
    let mut slots = Vec::new();
    let mut slices = 0;
    for i in 0..count {
        let at = 8 + i * entry_size;
        let cputype = big_u32(data, at)?;
        let (offset, size) = if wide {
            (big_u64(data, at + 8)?, big_u64(data, at + 16)?)
        } else {
            (
                u64::from(big_u32(data, at + 8)?),
                u64::from(big_u32(data, at + 12)?),
            )
        };
        let Some(arch) = arch_name(cputype) else {
            continue; // 32-bit slices (i386, arm64_32...): never loaded by a 64-bit Python
        };
        let (offset, size) = (to_usize(offset)?, to_usize(size)?);
        let slice = offset
            .checked_add(size)
            .and_then(|end| data.get(offset..end))
            .ok_or_else(|| format_error(format!("{arch} slice past the end of the file")))?;
        let found = import_slots(&file_image(slice)?, wanted)
            .map_err(|e| format_error(format!("{arch} slice: {e}")))?;
        slots.extend(found.into_iter().map(|s| ImportSlot {
            symbol: format!("{arch}:{}", s.symbol),
            ..s
        }));
        slices += 1;
    }
    if slices == 0 {
        return Err(format_error(
            "universal file without an x86_64 or arm64 slice",
        ));
    }
    Ok(slots)
}

/// The slots of `wanted` symbols in an image whose offset 0 is its mach header (a file
/// image, or a loaded image).
pub(crate) fn import_slots(
    image: &Image<'_>,
    wanted: &[&str],
) -> Result<Vec<ImportSlot>, FormatError> {
    let found = commands(image)?;
    let base = found.base_vmaddr()?;
    let (Some([symoff, nsyms, stroff, strsize]), Some([indirectoff, nindirect])) =
        (found.symtab, found.indirect)
    else {
        return Err(format_error("Mach-O without symbol tables"));
    };
    let symbols = found.linkedit_offset(symoff, base)?;
    let strings = found.linkedit_offset(stroff, base)?;
    let indirect = found.linkedit_offset(indirectoff, base)?;
    // Bound reads to the tables the commands declare (no strays into other data).
    image.bytes(indirect, nindirect as usize * 4)?;
    let mut slots = Vec::new();
    for segment in &found.segments {
        for i in 0..segment.nsects as usize {
            let at = segment.at + SEGMENT_COMMAND_SIZE + i * SECTION_SIZE;
            let kind = image.u32(at + 64)? & SECTION_TYPE;
            if kind != S_NON_LAZY_SYMBOL_POINTERS && kind != S_LAZY_SYMBOL_POINTERS {
                continue;
            }
            let addr = image.u64(at + 32)?;
            let size = to_usize(image.u64(at + 40)?)?;
            let first = image.u32(at + 68)? as usize;
            let start = to_usize(
                addr.checked_sub(base)
                    .ok_or_else(|| format_error("Mach-O section below its header"))?,
            )?;
            for slot in 0..size / 8 {
                let index = first.saturating_add(slot);
                if index >= nindirect as usize {
                    return Err(format_error(
                        "Mach-O pointer past the indirect symbol table",
                    ));
                }
                let symbol = image.u32(past(indirect, 4 * index)?)?;
                if symbol & (INDIRECT_SYMBOL_LOCAL | INDIRECT_SYMBOL_ABS) != 0 {
                    continue; // bound at link time: no import behind it
                }
                if symbol >= nsyms {
                    return Err(format_error("Mach-O indirect symbol past the symbol table"));
                }
                let name_at = image.u32(past(symbols, NLIST_SIZE * symbol as usize)?)?;
                if name_at >= strsize {
                    return Err(format_error("Mach-O symbol name past the string table"));
                }
                let name = image.c_str(past(strings, name_at as usize)?, MAX_NAME)?;
                let name = name.strip_prefix(b"_").unwrap_or(name);
                let Some(w) = wanted.iter().position(|w| w.as_bytes() == name) else {
                    continue;
                };
                slots.push(ImportSlot {
                    symbol: wanted[w].to_owned(),
                    offset: past(start, 8 * slot)?,
                    read_only: segment.read_only(),
                });
            }
        }
    }
    Ok(slots)
}

/// Loads `path` with `dlopen(path, flags)` as the interpreter will, and lists the
/// images the load added to the process with the slots of `wanted` in each.
#[cfg(target_os = "macos")]
pub(crate) fn load(
    path: &str,
    flags: i32,
    wanted: &[&str],
) -> Result<Vec<super::LoadedImage>, FormatError> {
    use std::collections::HashSet;

    use super::LoadedImage;

    let before: HashSet<(usize, String)> = dyld::images().into_iter().collect();
    super::open_library(path, flags)?;
    Ok(dyld::images()
        .into_iter()
        .filter(|image| !before.contains(image))
        .map(|(base, path)| {
            // SAFETY: `base` is the header of an image that stays loaded (never
            // closed: see `loaded::load`).
            let slots =
                unsafe { memory_image(base) }.and_then(|image| import_slots(&image, wanted));
            LoadedImage { path, base, slots }
        })
        .collect())
}

/// A loaded image's readable segments, read in place.
///
/// # Safety
/// `header` must be the mach header of an image that stays loaded.
#[cfg(target_os = "macos")]
unsafe fn memory_image(header: usize) -> Result<Image<'static>, FormatError> {
    // SAFETY: a loaded image's header and load commands are mapped (in __TEXT).
    let head = unsafe { std::slice::from_raw_parts(header as *const u8, HEADER_SIZE) };
    let sizeofcmds = super::image::le_u32(head, 20)? as usize;
    // SAFETY: as above; the load commands follow the header.
    let head = unsafe { std::slice::from_raw_parts(header as *const u8, HEADER_SIZE + sizeofcmds) };
    let found = commands(&Image::new(vec![Segment {
        offset: 0,
        bytes: head,
    }]))?;
    let base = found.base_vmaddr()?;
    let mut segments = Vec::new();
    for s in &found.segments {
        // __PAGEZERO and other reservations are not readable.
        if s.initprot & VM_PROT_READ == 0 || s.vmsize == 0 {
            continue;
        }
        let offset = to_usize(
            s.vmaddr
                .checked_sub(base)
                .ok_or_else(|| format_error("Mach-O segment below its header"))?,
        )?;
        let len = to_usize(s.vmsize)?;
        let address = past(header, offset)?;
        // SAFETY: dyld maps every readable segment whole at header + offset.
        let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
        segments.push(Segment { offset, bytes });
    }
    Ok(Image::new(segments))
}

#[cfg(target_os = "macos")]
mod dyld {
    use std::ffi::{CStr, c_char, c_void};

    unsafe extern "C" {
        fn _dyld_image_count() -> u32;
        fn _dyld_get_image_header(index: u32) -> *const c_void;
        fn _dyld_get_image_name(index: u32) -> *const c_char;
    }

    /// (header address, path) of each loaded image. Other threads may load or unload
    /// meanwhile: an index that went away reads as NULL and is skipped.
    pub(super) fn images() -> Vec<(usize, String)> {
        // SAFETY: these dyld functions take any index and return NULL past the end.
        let count = unsafe { _dyld_image_count() };
        (0..count)
            .filter_map(|i| {
                let header = unsafe { _dyld_get_image_header(i) };
                let name = unsafe { _dyld_get_image_name(i) };
                if header.is_null() || name.is_null() {
                    return None;
                }
                // SAFETY: a NUL-terminated path owned by dyld.
                let name = unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned();
                Some((header as usize, name))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thin x86_64 dylib: __TEXT (header and commands), a __DATA_CONST segment with a
    /// 3-slot __got, and __LINKEDIT with the symbol, indirect and string tables. Its
    /// vmaddrs start at 0x1_0000_0000 and its file offsets differ from its offsets,
    /// as in a real file.
    fn tiny_macho() -> Vec<u8> {
        const TEXT_VM: u64 = 0x1_0000_0000;
        let strings = b"\0_PyImport_Import\0_Py_IncRef\0_PyCapsule_Import\0";
        // nlist_64: strx, type, sect, desc, value (undefined externals).
        let nlist = |strx: u32| {
            let mut n = strx.to_le_bytes().to_vec();
            n.extend_from_slice(&[0x01, 0, 0, 0]);
            n.extend_from_slice(&0u64.to_le_bytes());
            n
        };
        let mut linkedit = Vec::new();
        for strx in [1u32, 18, 29] {
            linkedit.extend(nlist(strx));
        }
        let indirect_at = linkedit.len();
        // __got[0] = PyCapsule_Import, [1] = local, [2] = PyImport_Import
        for index in [2u32, INDIRECT_SYMBOL_LOCAL, 0] {
            linkedit.extend_from_slice(&index.to_le_bytes());
        }
        let strings_at = linkedit.len();
        linkedit.extend_from_slice(strings);

        let seg = |name: &[u8], vm: u64, vmsize: u64, off: u64, size: u64, nsects: u32| {
            let mut c = Vec::new();
            c.extend_from_slice(&LC_SEGMENT_64.to_le_bytes());
            c.extend_from_slice(&(72 + 80 * nsects).to_le_bytes());
            let mut n = [0u8; 16];
            n[..name.len()].copy_from_slice(name);
            c.extend_from_slice(&n);
            for v in [vm, vmsize, off, size] {
                c.extend_from_slice(&v.to_le_bytes());
            }
            c.extend_from_slice(&3u32.to_le_bytes()); // maxprot
            c.extend_from_slice(&(if name == b"__TEXT" { 5u32 } else { 3 }).to_le_bytes());
            c.extend_from_slice(&nsects.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c
        };
        // File: [0x000 header+commands][0x400 __DATA_CONST][0x800 __LINKEDIT]
        let mut cmds = seg(b"__TEXT", TEXT_VM, 0x4000, 0, 0x400, 0);
        cmds.extend(seg(
            b"__DATA_CONST",
            TEXT_VM + 0x4000,
            0x4000,
            0x400,
            0x400,
            1,
        ));
        let mut got = [0u8; 80];
        got[..5].copy_from_slice(b"__got");
        got[16..28].copy_from_slice(b"__DATA_CONST");
        got[32..40].copy_from_slice(&(TEXT_VM + 0x4010).to_le_bytes());
        got[40..48].copy_from_slice(&24u64.to_le_bytes());
        got[48..52].copy_from_slice(&0x410u32.to_le_bytes());
        got[64..68].copy_from_slice(&S_NON_LAZY_SYMBOL_POINTERS.to_le_bytes());
        cmds.extend_from_slice(&got);
        cmds.extend(seg(
            b"__LINKEDIT",
            TEXT_VM + 0x8000,
            0x4000,
            0x800,
            linkedit.len() as u64,
            0,
        ));
        let mut symtab = LC_SYMTAB.to_le_bytes().to_vec();
        for v in [
            24u32,
            0x800,
            3,
            0x800 + strings_at as u32,
            strings.len() as u32,
        ] {
            symtab.extend_from_slice(&v.to_le_bytes());
        }
        cmds.extend(symtab);
        let mut dysymtab = vec![0u8; 80];
        dysymtab[..4].copy_from_slice(&LC_DYSYMTAB.to_le_bytes());
        dysymtab[4..8].copy_from_slice(&80u32.to_le_bytes());
        dysymtab[56..60].copy_from_slice(&(0x800 + indirect_at as u32).to_le_bytes());
        dysymtab[60..64].copy_from_slice(&3u32.to_le_bytes());
        cmds.extend(dysymtab);

        let mut file = Vec::new();
        for v in [
            MH_MAGIC_64,
            CPU_TYPE_X86_64,
            3,
            6,
            5,
            cmds.len() as u32,
            0,
            0,
        ] {
            file.extend_from_slice(&v.to_le_bytes());
        }
        file.extend(cmds);
        file.resize(0x800, 0);
        file.extend(linkedit);
        file
    }

    const WANTED: [&str; 2] = ["PyImport_Import", "PyCapsule_Import"];

    fn slot(symbol: &str, offset: usize) -> ImportSlot {
        ImportSlot {
            symbol: symbol.to_owned(),
            offset,
            read_only: true,
        }
    }

    #[test]
    fn finds_got_slots_through_the_indirect_symbol_table() {
        let slots = file_slots(&tiny_macho(), &WANTED).expect("valid Mach-O");
        assert_eq!(
            slots,
            vec![
                slot("PyCapsule_Import", 0x4010),
                slot("PyImport_Import", 0x4020)
            ]
        );
    }

    #[test]
    fn a_loaded_image_reads_the_same_as_its_file() {
        // dyld's layout: segments at vmaddr - __TEXT vmaddr, vmsize long (zero-filled
        // past the file's bytes), __LINKEDIT found through its vmaddr.
        let file = tiny_macho();
        let mut text = file[..0x400].to_vec();
        text.resize(0x4000, 0);
        let mut data = file[0x400..0x800].to_vec();
        data.resize(0x4000, 0);
        let loaded = Image::new(vec![
            Segment {
                offset: 0,
                bytes: &text,
            },
            Segment {
                offset: 0x4000,
                bytes: &data,
            },
            Segment {
                offset: 0x8000,
                bytes: &file[0x800..],
            },
        ]);
        assert_eq!(
            import_slots(&loaded, &WANTED),
            file_slots(&file, &WANTED),
            "same offsets from memory and from the file"
        );
    }

    /// A universal file of `slices` (cputype, bytes), 32-bit or 64-bit header.
    fn fat(slices: &[(u32, &[u8])], wide: bool) -> Vec<u8> {
        let mut file = if wide { FAT_MAGIC_64 } else { FAT_MAGIC }
            .to_be_bytes()
            .to_vec();
        file.extend_from_slice(&(slices.len() as u32).to_be_bytes());
        let mut at = 0x1000usize;
        let mut body = Vec::new();
        for (cpu, bytes) in slices {
            file.extend_from_slice(&cpu.to_be_bytes());
            file.extend_from_slice(&0u32.to_be_bytes());
            if wide {
                file.extend_from_slice(&(at as u64).to_be_bytes());
                file.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                file.extend_from_slice(&[0; 8]);
            } else {
                file.extend_from_slice(&(at as u32).to_be_bytes());
                file.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                file.extend_from_slice(&[0; 4]);
            }
            body.push((at, *bytes));
            at = (at + bytes.len()).next_multiple_of(0x1000);
        }
        for (at, bytes) in body {
            file.resize(at, 0);
            file.extend_from_slice(bytes);
        }
        file
    }

    #[test]
    fn universal_files_tag_each_slice() {
        let thin = tiny_macho();
        let mut arm = thin.clone();
        arm[4..8].copy_from_slice(&CPU_TYPE_ARM64.to_le_bytes());
        for wide in [false, true] {
            let file = fat(
                &[
                    (7, &[0u8; 64]),
                    (CPU_TYPE_X86_64, &thin),
                    (CPU_TYPE_ARM64, &arm),
                ],
                wide,
            );
            let slots = file_slots(&file, &WANTED).expect("valid universal file");
            let names: Vec<&str> = slots.iter().map(|s| s.symbol.as_str()).collect();
            assert_eq!(
                names,
                [
                    "x86_64:PyCapsule_Import",
                    "x86_64:PyImport_Import",
                    "arm64:PyCapsule_Import",
                    "arm64:PyImport_Import"
                ]
            );
        }
        assert!(file_slots(&fat(&[(7, &thin)], false), &WANTED).is_err());
    }

    #[test]
    fn truncated_or_garbage_files_are_errors() {
        let file = tiny_macho();
        for len in 0..file.len() {
            let _ = file_slots(&file[..len], &WANTED);
        }
        for len in [0, 3, 4, 31, 32, 100, 0x7ff] {
            assert!(file_slots(&file[..len], &WANTED).is_err(), "{len}");
        }
        for at in 0..0x200 {
            for value in [0x00, 0xff, 0x7f, 0x80] {
                let mut bad = file.clone();
                bad[at] = value;
                let _ = file_slots(&bad, &WANTED);
            }
        }
        for at in 0x800..file.len() {
            let mut bad = file.clone();
            bad[at] = 0xff;
            let _ = file_slots(&bad, &WANTED);
        }
        // Whole fields at their largest: offsets and sizes near the top of the space.
        for at in (0..0x200).step_by(4) {
            let mut bad = file.clone();
            bad[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let _ = file_slots(&bad, &WANTED);
            bad[at..at + 8].copy_from_slice(&(u64::MAX - 0xfff).to_le_bytes());
            let _ = file_slots(&bad, &WANTED);
        }
        let huge = fat(&[(CPU_TYPE_ARM64, &file)], true);
        let mut lying = huge.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(file_slots(&lying, &WANTED).is_err());
        let mut lying = huge;
        lying[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(file_slots(&lying, &WANTED).is_err());
        assert!(file_slots(b"\xfe\xed\xfa\xce", &WANTED).is_err());
        assert!(file_slots(&[0x41u8; 256], &WANTED).is_err());
    }

    #[test]
    fn rejects_32_bit_and_foreign_cpus() {
        let mut file = tiny_macho();
        file[..4].copy_from_slice(&MH_MAGIC.to_le_bytes());
        assert!(
            file_slots(&file, &WANTED)
                .expect_err("32-bit")
                .0
                .contains("32-bit")
        );
        let mut file = tiny_macho();
        file[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert!(file_slots(&file, &WANTED).is_err());
    }
}
