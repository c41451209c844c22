//! ELF (Linux): the slots are GOT entries named by the dynamic relocations
//! (`JUMP_SLOT`, `GLOB_DAT`, and absolute 64-bit ones without addend) of undefined
//! symbols. Only 64-bit little-endian images (x86_64, aarch64) are read.

use std::collections::HashMap;

use super::image::{Image, Segment, le_u16, le_u32, le_u64, to_usize};
use super::{FormatError, ImportSlot, format_error};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;

const DT_NULL: u64 = 0;
// Read at load time, on Linux only.
#[cfg(target_os = "linux")]
const DT_NEEDED: u64 = 1;
#[cfg(target_os = "linux")]
const DT_SONAME: u64 = 14;
const DT_PLTRELSZ: u64 = 2;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_STRSZ: u64 = 10;
const DT_REL: u64 = 17;
const DT_RELSZ: u64 = 18;
const DT_PLTREL: u64 = 20;
const DT_JMPREL: u64 = 23;
const DT_RELACOUNT: u64 = 0x6fff_fff9;
const DT_RELCOUNT: u64 = 0x6fff_fffa;

/// Relocation types whose slot holds exactly the symbol's address.
const ADDRESS_RELOCATIONS: [u32; 6] = [
    1,    // R_X86_64_64
    6,    // R_X86_64_GLOB_DAT
    7,    // R_X86_64_JUMP_SLOT
    257,  // R_AARCH64_ABS64
    1025, // R_AARCH64_GLOB_DAT
    1026, // R_AARCH64_JUMP_SLOT
];

/// A program header: what the loader maps and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProgramHeader {
    pub(crate) kind: u32,
    pub(crate) offset: u64,
    pub(crate) vaddr: u64,
    pub(crate) filesz: u64,
    pub(crate) memsz: u64,
}

/// The program headers of an ELF file (64-bit, little-endian only).
pub(crate) fn program_headers(data: &[u8]) -> Result<Vec<ProgramHeader>, FormatError> {
    if data.get(..4) != Some(b"\x7fELF") {
        return Err(format_error("not an ELF file"));
    }
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return Err(format_error("not a 64-bit little-endian ELF file"));
    }
    let phoff = to_usize(le_u64(data, 0x20)?)?;
    let phentsize = usize::from(le_u16(data, 0x36)?);
    let phnum = usize::from(le_u16(data, 0x38)?);
    if phentsize < 56 {
        return Err(format_error("ELF program headers too small"));
    }
    (0..phnum)
        .map(|i| {
            let at = phoff
                .checked_add(i * phentsize)
                .ok_or_else(|| format_error("ELF program header past the file"))?;
            Ok(ProgramHeader {
                kind: le_u32(data, at)?,
                offset: le_u64(data, at + 8)?,
                vaddr: le_u64(data, at + 16)?,
                filesz: le_u64(data, at + 32)?,
                memsz: le_u64(data, at + 40)?,
            })
        })
        .collect()
}

/// An ELF file laid out as the loader maps it (load address 0).
pub(crate) fn file_image(data: &[u8]) -> Result<(Image<'_>, Vec<ProgramHeader>), FormatError> {
    let headers = program_headers(data)?;
    let mut segments = Vec::new();
    for h in headers.iter().filter(|h| h.kind == PT_LOAD) {
        let start = to_usize(h.offset)?;
        let len = to_usize(h.filesz)?;
        let bytes = start
            .checked_add(len)
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| format_error("ELF segment past the end of the file"))?;
        segments.push(Segment {
            offset: to_usize(h.vaddr)?,
            bytes,
        });
    }
    Ok((Image::new(segments), headers))
}

/// The slots of `wanted` symbols in an image whose load address is `base` (0 for a
/// file image). `base` tells absolute pointers (glibc relocates the dynamic section's
/// in place) from offsets.
pub(crate) fn import_slots(
    image: &Image<'_>,
    headers: &[ProgramHeader],
    base: usize,
    wanted: &[&str],
) -> Result<Vec<ImportSlot>, FormatError> {
    let dynamic = headers
        .iter()
        .find(|h| h.kind == PT_DYNAMIC)
        .ok_or_else(|| format_error("no dynamic section"))?;
    let relro: Vec<(usize, usize)> = headers
        .iter()
        .filter(|h| h.kind == PT_GNU_RELRO)
        .filter_map(|h| Some((to_usize(h.vaddr).ok()?, to_usize(h.memsz).ok()?)))
        .collect();
    let tags = dynamic_tags(image, to_usize(dynamic.vaddr)?, to_usize(dynamic.memsz)?)?;
    let offset_of = |tag: u64| -> Result<Option<usize>, FormatError> {
        match tags.get(&tag) {
            None => Ok(None),
            Some(&v) => {
                let v = to_usize(v)?;
                Ok(Some(if base != 0 && v >= base { v - base } else { v }))
            }
        }
    };
    let size_of = |tag: u64| tags.get(&tag).map_or(Ok(0), |&v| to_usize(v));
    let (Some(symtab), Some(strtab)) = (offset_of(DT_SYMTAB)?, offset_of(DT_STRTAB)?) else {
        return Err(format_error("no dynamic symbol table"));
    };
    let strsz = size_of(DT_STRSZ)?;
    let mut tables = Vec::new();
    // The linker sorts relative relocations (most of a big library's) first and
    // counts them: no symbol there, so they are skipped unread.
    let skip = |count: u64, entry: usize| size_of(count).map(|n| n.saturating_mul(entry));
    if let Some(at) = offset_of(DT_RELA)? {
        let skipped = skip(DT_RELACOUNT, 24)?.min(size_of(DT_RELASZ)?);
        tables.push((at + skipped, size_of(DT_RELASZ)? - skipped, 24));
    }
    if let Some(at) = offset_of(DT_REL)? {
        let skipped = skip(DT_RELCOUNT, 16)?.min(size_of(DT_RELSZ)?);
        tables.push((at + skipped, size_of(DT_RELSZ)? - skipped, 16));
    }
    if let Some(at) = offset_of(DT_JMPREL)? {
        let entry = if tags.get(&DT_PLTREL) == Some(&DT_REL) {
            16
        } else {
            24
        };
        tables.push((at, size_of(DT_PLTRELSZ)?, entry));
    }
    let longest = wanted.iter().map(|w| w.len()).max().unwrap_or(0);
    let mut slots = Vec::new();
    for (table, size, entry) in tables {
        let table = image.bytes(table, size)?;
        for rel in table.chunks_exact(entry) {
            let r_offset = le_u64(rel, 0)?;
            let r_info = le_u64(rel, 8)?;
            let kind = (r_info & 0xffff_ffff) as u32;
            let sym = (r_info >> 32) as u32;
            if sym == 0 || !ADDRESS_RELOCATIONS.contains(&kind) {
                continue;
            }
            if entry == 24 && le_u64(rel, 16)? != 0 {
                continue; // an address plus something: not a pointer to the function
            }
            let index = wanted_symbol(image, symtab, strtab, strsz, sym, wanted, longest)?;
            let Some(index) = index else { continue };
            let offset = to_usize(r_offset)?;
            slots.push(ImportSlot {
                symbol: wanted[index].to_owned(),
                offset,
                read_only: relro
                    .iter()
                    .any(|&(start, len)| offset >= start && offset < start + len),
            });
        }
    }
    Ok(slots)
}

/// A library's own name (`DT_SONAME`) and the names of the libraries it needs
/// (`DT_NEEDED`), as the loader matches them.
#[cfg(target_os = "linux")]
pub(crate) fn dependencies(
    image: &Image<'_>,
    headers: &[ProgramHeader],
    base: usize,
) -> Result<(Option<String>, Vec<String>), FormatError> {
    let dynamic = headers
        .iter()
        .find(|h| h.kind == PT_DYNAMIC)
        .ok_or_else(|| format_error("no dynamic section"))?;
    let (at, size) = (to_usize(dynamic.vaddr)?, to_usize(dynamic.memsz)?);
    let mut strtab = None;
    let mut named: Vec<(u64, usize)> = Vec::new();
    for entry in (at..at.saturating_add(size)).step_by(16).take(size / 16) {
        let tag = image.u64(entry)?;
        let value = to_usize(image.u64(entry + 8)?)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => {
                strtab = Some(if base != 0 && value >= base {
                    value - base
                } else {
                    value
                })
            }
            DT_NEEDED | DT_SONAME => named.push((tag, value)),
            _ => {}
        }
    }
    let strtab = strtab.ok_or_else(|| format_error("no dynamic string table"))?;
    let mut soname = None;
    let mut needed = Vec::new();
    for (tag, offset) in named {
        let at = strtab
            .checked_add(offset)
            .ok_or_else(|| format_error("a name past the address space"))?;
        let name = String::from_utf8_lossy(image.c_str(at, 4096)?).into_owned();
        if tag == DT_SONAME {
            soname = Some(name);
        } else {
            needed.push(name);
        }
    }
    Ok((soname, needed))
}

fn dynamic_tags(
    image: &Image<'_>,
    at: usize,
    size: usize,
) -> Result<HashMap<u64, u64>, FormatError> {
    let mut tags = HashMap::new();
    for entry in (at..at.saturating_add(size)).step_by(16).take(size / 16) {
        let tag = image.u64(entry)?;
        if tag == DT_NULL {
            break;
        }
        tags.entry(tag).or_insert(image.u64(entry + 8)?);
    }
    Ok(tags)
}

/// The index in `wanted` of undefined symbol number `sym`, if it is one of them.
fn wanted_symbol(
    image: &Image<'_>,
    symtab: usize,
    strtab: usize,
    strsz: usize,
    sym: u32,
    wanted: &[&str],
    longest: usize,
) -> Result<Option<usize>, FormatError> {
    let entry = (sym as usize)
        .checked_mul(24)
        .and_then(|o| o.checked_add(symtab))
        .ok_or_else(|| format_error("symbol index past the address space"))?;
    let name_at = image.u32(entry)? as usize;
    let section = image.u16(entry + 6)?;
    if section != 0 || (strsz != 0 && name_at >= strsz) {
        return Ok(None); // defined here: not an import
    }
    // A library imports hundreds of symbols: compare a bounded prefix, never scan.
    let at = strtab + name_at;
    let Ok(head) = image.bytes(at, 1) else {
        return Ok(None);
    };
    if !wanted.iter().any(|w| w.as_bytes().first() == head.first()) {
        return Ok(None);
    }
    let name = match image.bytes(at, longest + 1) {
        Ok(bytes) => bytes,
        Err(_) => image.c_str(at, longest)?,
    };
    Ok(wanted
        .iter()
        .position(|w| name.starts_with(w.as_bytes()) && name.get(w.len()).is_none_or(|&b| b == 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn own_library() -> Option<Vec<u8>> {
        // The test binary itself imports libc symbols through its GOT.
        std::fs::read("/proc/self/exe").ok()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn finds_the_test_binarys_own_imports() {
        let Some(data) = own_library() else { return };
        let (image, headers) = file_image(&data).expect("the test binary is ELF");
        let slots = import_slots(&image, &headers, 0, &["malloc", "free", "no_such_symbol"])
            .expect("readable dynamic relocations");
        assert!(slots.iter().any(|s| s.symbol == "malloc"), "{slots:?}");
        assert!(slots.iter().all(|s| s.symbol != "no_such_symbol"));
    }

    /// Damaged tables give errors or nothing, never a panic or an endless walk.
    #[test]
    #[cfg(target_os = "linux")]
    fn survives_damaged_files() {
        let Some(data) = own_library() else { return };
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..64 {
            let mut damaged = data.clone();
            // Headers, program headers and whatever the dynamic section points at.
            let span = if round % 2 == 0 { 4096 } else { damaged.len() };
            for _ in 0..1 + round % 16 {
                let at = (next() as usize) % span;
                damaged[at] = next() as u8;
            }
            if round % 5 == 0 {
                damaged.truncate((next() as usize) % data.len());
            }
            if let Ok((image, headers)) = file_image(&damaged) {
                let _ = import_slots(&image, &headers, 0, &["malloc", "free"]);
                let _ = import_slots(&image, &headers, 0x7f00_0000_0000, &["malloc"]);
            }
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn names_the_libraries_the_test_binary_needs() {
        let Some(data) = own_library() else { return };
        let (image, headers) = file_image(&data).expect("the test binary is ELF");
        let (_, needed) = dependencies(&image, &headers, 0).expect("a dynamic section");
        assert!(
            needed.iter().any(|n| n.starts_with("libc.so")),
            "{needed:?}"
        );
    }

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(file_image(b"MZ\x90\x00").is_err());
        assert!(file_image(b"\x7fELF\x01\x01").is_err());
        let mut short = b"\x7fELF\x02\x01".to_vec();
        short.resize(40, 0);
        assert!(file_image(&short).is_err());
    }
}
