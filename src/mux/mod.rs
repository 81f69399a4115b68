//! Muxers: fMP4/CMAF init segments and fragments.

mod boxes;
pub mod fmp4;

#[cfg(test)]
mod tests;
