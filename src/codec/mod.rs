//! Codec parameter sets: H.264, H.265, AAC; dimensions, frame rate, RFC 6381 strings.
