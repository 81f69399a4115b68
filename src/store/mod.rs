//! Store: the per-stream index (lives in shared memory) and media files on disk.

pub mod names;
