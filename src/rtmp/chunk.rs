//! RTMP chunk stream: reassembles messages from interleaved chunks, and
//! writes outgoing messages as chunks.
//!
//! The reader copies chunk payload into its message as it arrives, so it
//! never needs a whole chunk in memory: the caller only has to keep the
//! bytes of an incomplete chunk header (at most [`MAX_HEADER_LEN`]).

use std::collections::HashMap;

use super::RtmpError;

/// Chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size a peer may set (the top bit must be clear).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Most chunk streams the peer may open on one connection.
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Bytes of payload held for incomplete messages, summed over all chunk
/// streams, may be at most this many times the session's message limit.
pub const MAX_PARTIAL_FACTOR: usize = 2;
/// Longest chunk header: 3-byte basic header, 11-byte message header,
/// 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;

/// One reassembled message.
#[derive(Debug)]
pub struct Message {
    /// 32-bit RTMP timestamp (wraps).
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header had an extended timestamp (so fmt 3 chunks carry one too).
    ext: bool,
    ext_value: u32,
    /// A message is being assembled (some but not all of its payload arrived).
    in_progress: bool,
    payload: Vec<u8>,
}

enum State {
    Header,
    Payload { csid: u32, left: usize },
}

pub struct ChunkReader {
    chunk_size: u32,
    max_message_size: usize,
    streams: HashMap<u32, ChunkStream>,
    state: State,
    partial_bytes: usize,
}

struct Header {
    len: usize,
    fmt: u8,
    csid: u32,
    /// Timestamp or delta field, extended value applied.
    ts: Option<u32>,
    /// Whether the header carried an extended timestamp (fmt 0-2), or
    /// consumed one (fmt 3).
    ext: bool,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

fn be24(b: &[u8]) -> u32 {
    (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl ChunkReader {
    pub fn new(max_message_size: usize) -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_size,
            streams: HashMap::new(),
            state: State::Header,
            partial_bytes: 0,
        }
    }

    /// Applies a Set Chunk Size from the peer.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), RtmpError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(RtmpError::BadChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the partly received message on `csid` (Abort Message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(cs) = self.streams.get_mut(&csid) {
            self.partial_bytes -= cs.payload.len();
            cs.payload = Vec::new();
            cs.in_progress = false;
            if let State::Payload { csid: c, .. } = self.state {
                if c == csid {
                    // Cannot happen between messages, but keep the state sane.
                    self.state = State::Header;
                }
            }
        }
    }

    /// Parses a chunk header at the front of `buf`; `Ok(None)` if more bytes are needed.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, RtmpError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                (64 + buf[1] as u32, 2)
            }
            1 => {
                if buf.len() < 3 {
                    return Ok(None);
                }
                (64 + buf[1] as u32 + 256 * buf[2] as u32, 3)
            }
            n => (n as u32, 1),
        };
        let known = self.streams.get(&csid);
        if known.is_none() {
            // fmt 1 is accepted on a new chunk stream (message stream 0 implied);
            // fmt 2 and 3 lack the message length.
            if fmt >= 2 {
                return Err(RtmpError::MissingHeader { csid, fmt });
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(RtmpError::TooManyChunkStreams {
                    limit: MAX_CHUNK_STREAMS,
                });
            }
        }
        let mh = [11usize, 7, 3, 0][fmt as usize];
        if buf.len() < pos + mh {
            return Ok(None);
        }
        let m = &buf[pos..pos + mh];
        pos += mh;
        let mut h = Header {
            len: 0,
            fmt,
            csid,
            ts: None,
            ext: false,
            length: None,
            type_id: None,
            stream_id: None,
        };
        if fmt <= 2 {
            let field = be24(m);
            if field == 0xFF_FFFF {
                if buf.len() < pos + 4 {
                    return Ok(None);
                }
                h.ts = Some(be32(&buf[pos..]));
                h.ext = true;
                pos += 4;
            } else {
                h.ts = Some(field);
            }
            if fmt <= 1 {
                h.length = Some(be24(&m[3..]));
                h.type_id = Some(m[6]);
            }
            if fmt == 0 {
                h.stream_id = Some(u32::from_le_bytes([m[7], m[8], m[9], m[10]]));
            }
        } else if let Some(cs) = known {
            if cs.ext {
                // The spec puts the extended timestamp on fmt 3 chunks too, but
                // some senders leave it out: take the 4 bytes only when they
                // repeat the value of the last header.
                if buf.len() < pos + 4 {
                    return Ok(None);
                }
                if be32(&buf[pos..]) == cs.ext_value {
                    h.ext = true;
                    pos += 4;
                }
            }
        }
        h.len = pos;
        Ok(Some(h))
    }

    /// Reads from `buf` until one message is complete or `buf` is used up.
    /// Returns the bytes consumed and the message, if one completed. The
    /// unconsumed rest (a partial header) must be passed again with more data.
    pub fn read(&mut self, buf: &[u8]) -> Result<(usize, Option<Message>), RtmpError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Header => {
                    let Some(h) = self.parse_header(&buf[pos..])? else {
                        return Ok((pos, None));
                    };
                    pos += h.len;
                    if let Some(msg) = self.start_chunk(h)? {
                        return Ok((pos, Some(msg)));
                    }
                }
                State::Payload { csid, left } => {
                    let avail = buf.len() - pos;
                    if avail == 0 {
                        return Ok((pos, None));
                    }
                    let n = left.min(avail);
                    let limit = self.max_message_size.saturating_mul(MAX_PARTIAL_FACTOR);
                    if self.partial_bytes + n > limit {
                        return Err(RtmpError::BufferLimit {
                            what: "partial message payload",
                            len: self.partial_bytes + n,
                            limit,
                        });
                    }
                    let cs = self
                        .streams
                        .get_mut(&csid)
                        .ok_or(RtmpError::MissingHeader { csid, fmt: 3 })?;
                    cs.payload.extend_from_slice(&buf[pos..pos + n]);
                    self.partial_bytes += n;
                    pos += n;
                    if n < left {
                        self.state = State::Payload {
                            csid,
                            left: left - n,
                        };
                        return Ok((pos, None));
                    }
                    self.state = State::Header;
                    if cs.payload.len() >= cs.length as usize {
                        let payload = std::mem::take(&mut cs.payload);
                        cs.in_progress = false;
                        self.partial_bytes -= payload.len();
                        return Ok((
                            pos,
                            Some(Message {
                                timestamp: cs.timestamp,
                                type_id: cs.type_id,
                                stream_id: cs.stream_id,
                                payload,
                            }),
                        ));
                    }
                }
            }
        }
    }

    /// Applies a parsed header; returns a message at once when it is empty.
    fn start_chunk(&mut self, h: Header) -> Result<Option<Message>, RtmpError> {
        let max = self.max_message_size;
        let cs = self.streams.entry(h.csid).or_default();
        if cs.in_progress {
            if h.fmt != 3 {
                return Err(RtmpError::InterruptedMessage { csid: h.csid });
            }
        } else {
            match h.fmt {
                0 => {
                    let ts = h.ts.unwrap_or(0);
                    cs.timestamp = ts;
                    // Spec: a fmt 3 after a fmt 0 repeats the fmt 0 timestamp as delta.
                    cs.delta = ts;
                }
                1 | 2 => {
                    let d = h.ts.unwrap_or(0);
                    cs.delta = d;
                    cs.timestamp = cs.timestamp.wrapping_add(d);
                }
                _ => cs.timestamp = cs.timestamp.wrapping_add(cs.delta),
            }
            if let Some(l) = h.length {
                cs.length = l;
            }
            if let Some(t) = h.type_id {
                cs.type_id = t;
            }
            if let Some(s) = h.stream_id {
                cs.stream_id = s;
            }
            if cs.length as usize > max {
                return Err(RtmpError::MessageTooLarge {
                    len: cs.length as usize,
                    limit: max,
                });
            }
        }
        if h.fmt <= 2 {
            cs.ext = h.ext;
            if h.ext {
                cs.ext_value = h.ts.unwrap_or(0);
            }
        }
        let left = (cs.length as usize - cs.payload.len()).min(self.chunk_size as usize);
        if left == 0 {
            // Zero-length message.
            cs.in_progress = false;
            return Ok(Some(Message {
                timestamp: cs.timestamp,
                type_id: cs.type_id,
                stream_id: cs.stream_id,
                payload: Vec::new(),
            }));
        }
        cs.in_progress = true;
        self.state = State::Payload { csid: h.csid, left };
        Ok(None)
    }
}

/// Appends `payload` as one message on chunk stream `csid` (2..=63) with
/// timestamp 0 (vid only sends control and command messages).
pub fn write_message(
    out: &mut Vec<u8>,
    chunk_size: u32,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
) {
    debug_assert!((2..64).contains(&csid));
    let len = payload.len() as u32;
    out.push(csid & 0x3f);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    let size = chunk_size.max(1) as usize;
    let mut chunks = payload.chunks(size);
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for c in chunks {
        out.push(0xC0 | (csid & 0x3f));
        out.extend_from_slice(c);
    }
}
