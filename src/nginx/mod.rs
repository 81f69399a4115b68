//! nginx glue: the only module with FFI and `unsafe`.
