//! Mach-O (macOS): placeholder, filled by the Mach-O reader.

use super::{FormatError, ImportSlot, format_error};

pub(crate) fn file_slots(_data: &[u8], _wanted: &[&str]) -> Result<Vec<ImportSlot>, FormatError> {
    Err(format_error("Mach-O import tables are not read yet"))
}
