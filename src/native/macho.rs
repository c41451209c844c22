//! Mach-O (macOS): placeholder, filled by the Mach-O reader.
