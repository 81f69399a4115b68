//! RTMP server session, sans-IO: bytes in, events and bytes to send out.

pub mod amf0;
pub mod handshake;
