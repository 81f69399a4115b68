//! vid: a live RTMP → (LL-)HLS origin that runs inside nginx.
//!
//! Data flows through the folders in this order:
//!
//! ```text
//! rtmp ──messages──▶ flv ──configs/frames──▶ segmenter ──parts/segments──▶ store ◀── playlist
//!                          ▲ (codec: parameter sets, codec strings)      (mux: fMP4 boxes)
//! whip ──H.264 / Opus frames (WebRTC, str0m)─┘                    (index)     (text)
//! ```
//!
//! `ingest` strings the stages together for one publishing connection (an RTMP one, or
//! a WHIP session's frames handed in directly).
//! Everything above is plain Rust with no nginx and no `unsafe`; `nginx` is
//! the only place with FFI, and the only module allowed `unsafe` code.
#![deny(unsafe_code)]

pub mod auth;
pub mod catalog;
pub mod codec;
pub mod edge;
pub mod flv;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod mux;
pub mod playlist;
pub mod record;
pub mod rtmp;
pub mod segmenter;
pub mod store;
pub mod whip;

#[cfg(feature = "nginx")]
#[allow(unsafe_code)]
mod nginx;
