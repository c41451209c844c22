//! An image's address space, read by offset from its load address: the loaded library
//! itself, or its file laid out as the loader would map it (for tests on real binaries).

use super::{FormatError, format_error};

/// One mapped range: `bytes` are what lies at `offset` from the load address.
pub(crate) struct Segment<'a> {
    pub(crate) offset: usize,
    pub(crate) bytes: &'a [u8],
}

/// The readable ranges of one image. Reads outside them fail instead of faulting: a
/// table that points elsewhere is a format error, never a crash.
pub(crate) struct Image<'a> {
    segments: Vec<Segment<'a>>,
}

impl<'a> Image<'a> {
    pub(crate) fn new(mut segments: Vec<Segment<'a>>) -> Self {
        segments.sort_by_key(|s| s.offset);
        Self { segments }
    }

    /// `len` bytes at `offset`, if one segment holds all of them.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> Result<&'a [u8], FormatError> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| format_error("an offset past the address space"))?;
        let at = self.segments.partition_point(|s| s.offset <= offset);
        at.checked_sub(1)
            .and_then(|i| self.segments.get(i))
            .and_then(|s| s.bytes.get(offset - s.offset..end - s.offset))
            .ok_or_else(|| format_error(format!("nothing mapped at {offset:#x}+{len}")))
    }

    pub(crate) fn u16(&self, offset: usize) -> Result<u16, FormatError> {
        let b = self.bytes(offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&self, offset: usize) -> Result<u32, FormatError> {
        let b = self.bytes(offset, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&self, offset: usize) -> Result<u64, FormatError> {
        let b = self.bytes(offset, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A NUL-terminated string at `offset` (at most `max` bytes before the NUL).
    pub(crate) fn c_str(&self, offset: usize, max: usize) -> Result<&'a [u8], FormatError> {
        let at = self.segments.partition_point(|s| s.offset <= offset);
        let seg = at
            .checked_sub(1)
            .and_then(|i| self.segments.get(i))
            .ok_or_else(|| format_error(format!("no string mapped at {offset:#x}")))?;
        let tail = seg.bytes.get(offset - seg.offset..).unwrap_or_default();
        let tail = &tail[..tail.len().min(max + 1)];
        let nul = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format_error(format!("unterminated string at {offset:#x}")))?;
        Ok(&tail[..nul])
    }
}

/// Little-endian reads of a plain byte slice (file headers before an image exists).
pub(crate) fn le_u16(data: &[u8], at: usize) -> Result<u16, FormatError> {
    data.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format_error("truncated header"))
}

pub(crate) fn le_u32(data: &[u8], at: usize) -> Result<u32, FormatError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format_error("truncated header"))
}

pub(crate) fn le_u64(data: &[u8], at: usize) -> Result<u64, FormatError> {
    let b = data
        .get(at..at + 8)
        .ok_or_else(|| format_error("truncated header"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

/// Converts a 64-bit header value to an address-space offset.
pub(crate) fn to_usize(v: u64) -> Result<usize, FormatError> {
    usize::try_from(v).map_err(|_| format_error("a header value past the address space"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_segments_only() {
        let a = [1u8, 0, 0, 0, b'h', b'i', 0];
        let img = Image::new(vec![Segment {
            offset: 0x1000,
            bytes: &a,
        }]);
        assert_eq!(img.u32(0x1000), Ok(1));
        assert_eq!(img.c_str(0x1004, 16), Ok(&b"hi"[..]));
        assert!(img.u32(0x1005).is_err());
        assert!(img.u32(0x0fff).is_err());
        assert!(img.bytes(usize::MAX, 2).is_err());
        assert!(img.c_str(0x1004, 1).is_err());
    }
}
