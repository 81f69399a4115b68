//! Codec parameter sets: H.264, H.265, AAC, Opus; dimensions, frame rate, RFC 6381 strings.
//!
//! Everything here works on bytes that came from the network: every length and
//! count is checked against the buffer and against the bounds below, and errors
//! are returned, never panics.

pub mod aac;
pub mod avc;
mod bits;
pub mod hevc;
pub mod opus;

use std::fmt;

/// Largest decoder configuration record (avcC / hvcC) accepted.
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// Largest single parameter set (VPS/SPS/PPS) accepted inside a record.
pub const MAX_PARAM_SET_LEN: usize = 4096;
/// Most parameter sets of one kind accepted inside a record.
pub const MAX_PARAM_SETS: usize = 32;
/// Largest picture width or height accepted (after cropping).
pub const MAX_DIMENSION: u32 = 16384;
/// Highest frame rate taken from VUI timing info; above it the rate is reported as unknown.
pub const MAX_FRAME_RATE: f64 = 1000.0;

/// Why a codec configuration could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The data ended inside the named structure or field.
    Truncated(&'static str),
    /// The data is well-formed enough to be understood but uses a feature vid does not carry.
    Unsupported(String),
    /// The data breaks the syntax or the sanity bounds.
    Malformed(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated(what) => write!(f, "truncated {what}"),
            CodecError::Unsupported(what) => write!(f, "unsupported {what}"),
            CodecError::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Iterator over the NAL units of a length-prefixed (AVCC/HVCC layout) access unit.
///
/// Yields each NAL unit without its length prefix. A length that runs past the end
/// of the buffer yields one `Err` and ends the iteration.
#[derive(Clone, Debug)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    length_size: usize,
    failed: bool,
}

/// Walks the NAL units of `data`, each preceded by a big-endian length of
/// `length_size` bytes (1, 2 or 4; anything else yields one error).
pub fn nal_units(data: &[u8], length_size: u8) -> NalUnits<'_> {
    NalUnits {
        data,
        length_size: length_size as usize,
        failed: false,
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.data.is_empty() {
            return None;
        }
        if !matches!(self.length_size, 1 | 2 | 4) {
            self.failed = true;
            return Some(Err(CodecError::Malformed(format!(
                "NAL unit length size {}",
                self.length_size
            ))));
        }
        if self.data.len() < self.length_size {
            self.failed = true;
            return Some(Err(CodecError::Truncated("NAL unit length")));
        }
        let (prefix, rest) = self.data.split_at(self.length_size);
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        if len > rest.len() {
            self.failed = true;
            return Some(Err(CodecError::Truncated("NAL unit")));
        }
        let (nal, rest) = rest.split_at(len);
        self.data = rest;
        Some(Ok(nal))
    }
}

/// Finds the NAL unit length size (4, 2 or 1, tried in that order) with which
/// `data` splits into NAL units that exactly fill it, none of them empty.
pub fn detect_length_size(data: &[u8]) -> Option<u8> {
    [4u8, 2, 1].into_iter().find(|&size| {
        !data.is_empty() && nal_units(data, size).all(|nal| matches!(nal, Ok(n) if !n.is_empty()))
    })
}

/// Reads a record's parameter-set length (u16) and body, bounded by the buffer and
/// [`MAX_PARAM_SET_LEN`].
fn read_param_set<'a>(buf: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], CodecError> {
    if buf.len() < 2 {
        return Err(CodecError::Truncated(what));
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if len == 0 || len > MAX_PARAM_SET_LEN {
        return Err(CodecError::Malformed(format!("{what}: length {len}")));
    }
    if buf.len() < 2 + len {
        return Err(CodecError::Truncated(what));
    }
    let ps = &buf[2..2 + len];
    *buf = &buf[2 + len..];
    Ok(ps)
}

fn check_dimensions(width: u32, height: u32) -> Result<(), CodecError> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(CodecError::Malformed(format!(
            "picture size {width}x{height} (allowed 1..={MAX_DIMENSION})"
        )));
    }
    Ok(())
}

fn sane_frame_rate(fps: f64) -> Option<f64> {
    (fps.is_finite() && fps > 0.0 && fps <= MAX_FRAME_RATE).then_some(fps)
}
