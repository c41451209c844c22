//! PE (Windows): placeholder, filled by the PE reader.

use super::{FormatError, ImportSlot, format_error};

pub(crate) fn file_slots(_data: &[u8], _wanted: &[&str]) -> Result<Vec<ImportSlot>, FormatError> {
    Err(format_error("PE import tables are not read yet"))
}
