//! Store: the per-stream index (lives in shared memory) and media files on disk.

pub mod files;
pub mod index;
pub mod lifecycle;
pub mod names;
pub mod table;

pub use files::{remove_stream_dir, StreamDir};
pub use index::{PartEntry, SegmentEntry, StreamIndex, StreamSettings, StreamState};
pub use lifecycle::{Lifecycle, Now, Takeover};
pub use table::{Claim, ClaimError, Table};

#[cfg(test)]
mod tests;
