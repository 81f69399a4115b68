//! Muxers: fMP4/CMAF init segments and fragments, MPEG-TS segments.

mod boxes;
pub mod fmp4;
pub mod ts;

#[cfg(test)]
mod tests;
