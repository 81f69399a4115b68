//! Muxers: fMP4/CMAF init segments and fragments.

pub mod fmp4;
