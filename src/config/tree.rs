//! A positioned tree, common to TOML and JSON: every value knows where it was
//! written, so errors point at file:line:column.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::*;

/// A parsed value with the byte offset where it starts.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) pos: usize,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Str(String),
    Bool(bool),
    Null,
    /// A value no key accepts (number, datetime); holds its type's name.
    Other(&'static str),
    List(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) key_pos: usize,
    pub(super) value: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Toml,
    Json,
}

pub(super) fn toml_node(value: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let kind = match value.get_ref() {
        DeValue::String(s) => Kind::Str(s.to_string()),
        DeValue::Boolean(b) => Kind::Bool(*b),
        DeValue::Integer(_) => Kind::Other("an integer"),
        DeValue::Float(_) => Kind::Other("a float"),
        DeValue::Datetime(_) => Kind::Other("a datetime"),
        DeValue::Array(items) => Kind::List(items.iter().map(toml_node).collect()),
        DeValue::Table(table) => Kind::Table(toml_entries(table)),
    };
    Node {
        pos: value.span().start,
        kind,
    }
}

pub(super) fn toml_entries(table: &toml::de::DeTable<'_>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_pos: key.span().start,
            value: toml_node(value),
        })
        .collect();
    // The map is sorted by key; document order keeps sessions in the order written.
    entries.sort_by_key(|e| e.key_pos);
    entries
}

/// An object's members in document order, each value still unparsed.
pub(super) struct JsonMembers<'a>(pub(super) Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for JsonMembers<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = JsonMembers<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(JsonMembers(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Deepest nesting of arrays and objects a config may have. The schema needs 4
/// (`{"sessions": {"a": {"env": {...}}}}`); the margin only keeps errors about
/// wrong types readable instead of reporting depth.
pub(super) const MAX_DEPTH: usize = 32;

/// Byte offset of the bracket that opens level `MAX_DEPTH + 1`, if any. A plain
/// scan (strings skipped), so its own cost is flat whatever the input.
pub(super) fn json_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Byte offset of `slice` in `text` (0 if it is not a slice of it).
pub(super) fn offset_in(text: &str, slice: &str) -> usize {
    (slice.as_ptr() as usize)
        .checked_sub(text.as_ptr() as usize)
        .filter(|p| *p <= text.len())
        .unwrap_or(0)
}
