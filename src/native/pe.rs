//! PE (Windows): placeholder, filled by the PE reader.
