//! Muxers: fMP4/CMAF init segments and fragments.
