//! Native code: where a loaded library's calls into the C API go.
//!
//! A library calls the functions of another through a table of pointers the dynamic
//! loader fills at load (ELF: the GOT; Mach-O: symbol pointer sections; PE: the import
//! address table). Overwriting one slot sends that library's calls, and only that
//! library's, to another function. The readers below find the slots of the wanted
//! symbols in an image (a loaded library in memory, or its file on disk for tests);
//! [`patch`] writes them. Pure Rust: nothing here knows Python.
//!
//! - [`image`]: an address space to read (memory, or a file mapped as the loader would);
//! - [`elf`], [`macho`], [`pe`]: the three formats' import tables;
//! - [`patch`]: writing a slot (page protection switched and restored);
//! - [`loaded`]: the libraries a load brought in (Linux, macOS, Windows).

pub(crate) mod elf;
pub(crate) mod image;
pub(crate) mod loaded;
pub(crate) mod macho;
pub(crate) mod patch;
pub(crate) mod pe;

/// One slot of a library's import table that holds the address of a wanted symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImportSlot {
    /// The symbol's name as the C API spells it (no leading underscore on Mach-O).
    pub(crate) symbol: String,
    /// The slot's offset from the image's load address.
    pub(crate) offset: usize,
    /// The loader makes this slot's page read-only after filling it (ELF RELRO,
    /// Mach-O `__DATA_CONST`, PE sections without write access).
    pub(crate) read_only: bool,
}

/// One library a load brought in.
#[derive(Debug)]
pub(crate) struct LoadedImage {
    pub(crate) path: String,
    /// The load address the slots' offsets are relative to.
    pub(crate) base: usize,
    /// The slots of the wanted symbols, or why the import table could not be read.
    pub(crate) slots: Result<Vec<ImportSlot>, FormatError>,
}

/// Why an image's import table could not be read: the library is loaded unpatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FormatError(pub(crate) String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn format_error(what: impl Into<String>) -> FormatError {
    FormatError(what.into())
}

/// The import slots of `wanted` in a library file of any of the three formats (for
/// checks of real binaries built or downloaded for another OS). A Mach-O universal
/// file yields the slots of each architecture, tagged `arch:symbol`.
pub(crate) fn file_slots(data: &[u8], wanted: &[&str]) -> Result<Vec<ImportSlot>, FormatError> {
    match data.get(..4) {
        Some(b"\x7fELF") => {
            let (image, headers) = elf::file_image(data)?;
            elf::import_slots(&image, &headers, 0, wanted)
        }
        Some([b'M', b'Z', ..]) => pe::file_slots(data, wanted),
        Some(_) => macho::file_slots(data, wanted),
        None => Err(format_error("not a library: too short")),
    }
}

/// The C-API functions whose slots a session's libraries get redirected.
pub(crate) const REDIRECTED: [&str; 11] = [
    "PyImport_ImportModule",
    "PyImport_ImportModuleNoBlock",
    "PyImport_Import",
    "PyImport_ImportModuleLevel",
    "PyImport_ImportModuleLevelObject",
    "PyImport_GetModule",
    "PyImport_AddModule",
    "PyImport_AddModuleObject",
    "PyImport_AddModuleRef",
    "PyCapsule_Import",
    "PyThreadState_GetDict",
];

/// `dlopen`s the library at `path` with `flags` and keeps it loaded (its handle is
/// never closed: CPython never unloads an extension either). The error is `dlerror`'s.
#[cfg(unix)]
pub(crate) fn open_library(path: &str, flags: i32) -> Result<(), FormatError> {
    use std::ffi::{CStr, CString};
    let c_path = CString::new(path).map_err(|_| format_error("a path with a NUL byte"))?;
    // SAFETY: loading a library runs its initialisers, as the interpreter's own load
    // of it would a moment later.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), flags) };
    if !handle.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns a loader-owned NUL-terminated string, or NULL.
    let why = unsafe { libc::dlerror() };
    let why = if why.is_null() {
        "unknown".to_owned()
    } else {
        unsafe { CStr::from_ptr(why) }
            .to_string_lossy()
            .into_owned()
    };
    Err(format_error(format!("dlopen failed: {why}")))
}
