//! RTMP server session, sans-IO: bytes in, events and bytes to send out.
//!
//! [`Session::feed`] takes whatever the socket delivered, runs the handshake,
//! reassembles chunked messages, answers the control and command messages a
//! publisher needs, and reports what the application has to act on as
//! [`Event`]s. Replies are queued; the caller sends [`Session::output`] and
//! reports progress with [`Session::consume_output`].
//!
//! vid is a publish-only origin: `play` is answered with
//! `NetStream.Play.Failed` and an error.
//!
//! Choices worth knowing:
//! - Audio, video and metadata on a message stream are delivered only after
//!   the application called [`Session::accept_publish`] for it; before that
//!   (and after a reject or unpublish) they are dropped without an error, as
//!   the publisher may legitimately send them before it saw our answer.
//!   Empty audio/video messages carry nothing and are dropped too.
//! - Timestamps of audio/video are unwrapped against the previous media
//!   message of the session (signed 32-bit difference), so they keep
//!   increasing across the 2^32 ms wrap.
//! - Aggregate messages (type 22) are split into their audio/video tags.
//! - Every size read from the wire is bounded: see the consts here, in
//!   [`amf0`] and in the chunk reader.

pub mod amf0;
mod chunk;
pub mod handshake;

use std::fmt;

use bytes::Bytes;

pub use chunk::{
    DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_CHUNK_STREAMS, MAX_HEADER_LEN, MAX_PARTIAL_FACTOR,
};

use amf0::Value;
use chunk::{write_message, ChunkReader, Message};

/// Most message streams (`createStream`) alive on one connection.
pub const MAX_STREAMS: usize = 16;
/// Most bytes queued for the peer; past this the peer is not reading and
/// the session fails.
pub const MAX_OUTPUT_BUFFER: usize = 4 << 20;
/// Most FLV tags in one aggregate message.
pub const MAX_AGGREGATE_TAGS: usize = 4096;
/// Largest message accepted before a publish is accepted (commands only).
pub const MAX_COMMAND_MESSAGE: usize = 64 << 10;

const MSG_SET_CHUNK_SIZE: u8 = 1;
const MSG_ABORT: u8 = 2;
const MSG_ACK: u8 = 3;
const MSG_USER_CONTROL: u8 = 4;
const MSG_WINDOW_ACK_SIZE: u8 = 5;
const MSG_SET_PEER_BANDWIDTH: u8 = 6;
const MSG_AUDIO: u8 = 8;
const MSG_VIDEO: u8 = 9;
const MSG_DATA_AMF3: u8 = 15;
const MSG_COMMAND_AMF3: u8 = 17;
const MSG_DATA_AMF0: u8 = 18;
const MSG_COMMAND_AMF0: u8 = 20;
const MSG_AGGREGATE: u8 = 22;

const UC_STREAM_BEGIN: u16 = 0;
const UC_PING_REQUEST: u16 = 6;
const UC_PING_RESPONSE: u16 = 7;

/// Chunk streams we send on.
const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;
const CSID_STATUS: u8 = 5;

/// Limits and announced values of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Largest message accepted; a header announcing more is an error.
    pub max_message_size: usize,
    /// Chunk size we send with, announced by Set Chunk Size after connect
    /// (clamped to 1..=0x7FFFFFFF).
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size and peer bandwidth we announce.
    pub window_ack_size: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_message_size: 8 << 20,
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
        }
    }
}

/// What the application has to know about.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `connect` (already answered with `_result`). `app` has a trailing '/' removed.
    /// `flash_ver`: the client's software (`flashVer`, e.g. `FMLE/3.0 (compatible; Lavf59.27.100)`).
    Connect {
        app: String,
        tc_url: Option<String>,
        flash_ver: Option<String>,
    },
    /// `publish`: answer with [`Session::accept_publish`] or [`Session::reject_publish`].
    /// `name` is the publish name before '?', `query` what follows it.
    Publish {
        stream_id: u32,
        name: String,
        query: Option<String>,
        kind: String,
    },
    /// `@setDataFrame onMetaData` / `onMetaData` (ECMA array or object properties).
    Metadata {
        stream_id: u32,
        values: Vec<(String, Value)>,
    },
    /// FLV video tag body.
    Video {
        stream_id: u32,
        timestamp_ms: i64,
        data: Bytes,
    },
    /// FLV audio tag body.
    Audio {
        stream_id: u32,
        timestamp_ms: i64,
        data: Bytes,
    },
    /// `FCUnpublish`, `closeStream` or `deleteStream` of a publishing stream
    /// (reported once per publish).
    Unpublish { stream_id: u32 },
}

/// Why a session failed. `Display` is one line for the log.
#[derive(Clone, Debug, PartialEq)]
pub enum RtmpError {
    BadVersion(u8),
    MessageTooLarge {
        len: usize,
        limit: usize,
    },
    BadChunkSize(u32),
    TooManyChunkStreams {
        limit: usize,
    },
    /// A chunk stream's first chunk lacks the fields it needs.
    MissingHeader {
        csid: u32,
        fmt: u8,
    },
    /// A new message header arrived while a message on that chunk stream was incomplete.
    InterruptedMessage {
        csid: u32,
    },
    BufferLimit {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    BadControlMessage {
        type_id: u8,
        len: usize,
    },
    Amf {
        context: &'static str,
        source: amf0::AmfError,
    },
    /// A malformed or misplaced command (the text says which).
    Command(String),
    TooManyStreams {
        limit: usize,
    },
    BadAggregate(&'static str),
    PlayNotSupported {
        stream_id: u32,
    },
    /// `feed` called again after an error.
    Failed,
}

impl fmt::Display for RtmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtmpError::BadVersion(v) => write!(f, "bad handshake version {v}"),
            RtmpError::MessageTooLarge { len, limit } => {
                write!(f, "message length {len} exceeds limit {limit}")
            }
            RtmpError::BadChunkSize(n) => {
                write!(f, "invalid chunk size {n} (must be 1..=2147483647)")
            }
            RtmpError::TooManyChunkStreams { limit } => {
                write!(f, "more than {limit} chunk streams")
            }
            RtmpError::MissingHeader { csid, fmt } => {
                write!(f, "chunk stream {csid} starts with a fmt {fmt} header")
            }
            RtmpError::InterruptedMessage { csid } => write!(
                f,
                "new message header on chunk stream {csid} while a message is incomplete"
            ),
            RtmpError::BufferLimit { what, len, limit } => {
                write!(f, "{what} of {len} bytes exceeds limit {limit}")
            }
            RtmpError::BadControlMessage { type_id, len } => {
                write!(f, "control message type {type_id} with bad length {len}")
            }
            RtmpError::Amf { context, source } => write!(f, "bad AMF0 in {context}: {source}"),
            RtmpError::Command(s) => write!(f, "{s}"),
            RtmpError::TooManyStreams { limit } => {
                write!(f, "more than {limit} streams created")
            }
            RtmpError::BadAggregate(why) => write!(f, "bad aggregate message: {why}"),
            RtmpError::PlayNotSupported { stream_id } => write!(
                f,
                "play requested on stream {stream_id}; this server only accepts publishers"
            ),
            RtmpError::Failed => write!(f, "session already failed"),
        }
    }
}

impl std::error::Error for RtmpError {}

enum Phase {
    /// Waiting for C0+C1.
    C0C1,
    /// Waiting for C2.
    C2,
    Chunks,
    Failed,
}

#[derive(Clone, Debug, PartialEq)]
enum PublishState {
    Idle,
    Pending(String),
    Publishing(String),
    Rejected,
}

struct NetStream {
    id: u32,
    publish: PublishState,
}

/// One RTMP server connection.
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    /// Unprocessed input: a partial handshake packet or chunk header.
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    reader: ChunkReader,
    out_chunk_size: u32,
    bytes_in: u64,
    /// Peer's Window Acknowledgement Size (0: none announced).
    peer_window: u32,
    last_ack: u64,
    connected: bool,
    streams: Vec<NetStream>,
    next_stream_id: u32,
    /// Last media timestamp, as received and unwrapped.
    ts_ref: Option<(u32, i64)>,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Self {
        // Until a publish is accepted only commands flow: a connection that has not been
        // accepted as a publisher can hold at most this much memory.
        let reader = ChunkReader::new(cfg.max_message_size.min(MAX_COMMAND_MESSAGE));
        Session {
            cfg,
            phase: Phase::C0C1,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            reader,
            out_chunk_size: DEFAULT_CHUNK_SIZE,
            bytes_in: 0,
            peer_window: 0,
            last_ack: 0,
            connected: false,
            streams: Vec::new(),
            next_stream_id: 1,
            ts_ref: None,
        }
    }

    /// Feed bytes received from the peer; decoded events are appended to `events`.
    /// Replies (handshake, acks, command results) are queued internally.
    /// Returns Err on any protocol violation; the caller then logs the error and closes.
    /// Replies queued before the error (e.g. `NetStream.Play.Failed`) stay in `output()`.
    pub fn feed(&mut self, input: &[u8], events: &mut Vec<Event>) -> Result<(), RtmpError> {
        if matches!(self.phase, Phase::Failed) {
            return Err(RtmpError::Failed);
        }
        self.bytes_in += input.len() as u64;
        let r = self.feed_inner(input, events);
        if r.is_err() {
            self.phase = Phase::Failed;
            self.inbuf = Vec::new();
        }
        r
    }

    fn feed_inner(&mut self, input: &[u8], events: &mut Vec<Event>) -> Result<(), RtmpError> {
        let mut input = input;
        loop {
            match self.phase {
                Phase::C0C1 => {
                    let need = 1 + handshake::PACKET_SIZE;
                    let take = (need - self.inbuf.len()).min(input.len());
                    self.inbuf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if let Some(&v) = self.inbuf.first() {
                        if v != handshake::RTMP_VERSION {
                            return Err(RtmpError::BadVersion(v));
                        }
                    }
                    if self.inbuf.len() < need {
                        return Ok(());
                    }
                    let mut c1 = [0u8; handshake::PACKET_SIZE];
                    c1.copy_from_slice(&self.inbuf[1..]);
                    let resp = handshake::server_response(&c1);
                    self.out.extend_from_slice(&resp);
                    self.inbuf.clear();
                    self.phase = Phase::C2;
                }
                Phase::C2 => {
                    let need = handshake::PACKET_SIZE;
                    let take = (need - self.inbuf.len()).min(input.len());
                    self.inbuf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.inbuf.len() < need {
                        return Ok(());
                    }
                    // C2 is not checked: many clients send anything there.
                    self.inbuf.clear();
                    self.phase = Phase::Chunks;
                }
                Phase::Chunks => {
                    if self.inbuf.is_empty() {
                        let used = self.process_chunks(input, events)?;
                        self.inbuf.extend_from_slice(&input[used..]);
                    } else {
                        let mut buf = std::mem::take(&mut self.inbuf);
                        buf.extend_from_slice(input);
                        let used = self.process_chunks(&buf, events)?;
                        buf.drain(..used);
                        self.inbuf = buf;
                    }
                    self.maybe_ack();
                    return self.check_output();
                }
                Phase::Failed => return Err(RtmpError::Failed),
            }
        }
    }

    fn process_chunks(&mut self, buf: &[u8], events: &mut Vec<Event>) -> Result<usize, RtmpError> {
        let mut pos = 0;
        while pos < buf.len() {
            let (used, msg) = self.reader.read(&buf[pos..])?;
            pos += used;
            match msg {
                Some(m) => self.on_message(m, events)?,
                None => break,
            }
        }
        Ok(pos)
    }

    /// Bytes waiting to be sent to the peer.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// Mark `n` bytes of `output()` as sent.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = self.out_pos.saturating_add(n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos >= 64 * 1024 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Answer a Publish event: onStatus NetStream.Publish.Start (+ StreamBegin).
    /// Does nothing unless a publish is pending on `stream_id`.
    pub fn accept_publish(&mut self, stream_id: u32) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            return;
        };
        let PublishState::Pending(name) = &s.publish else {
            return;
        };
        let name = name.clone();
        s.publish = PublishState::Publishing(name.clone());
        self.reader.set_max_message_size(self.cfg.max_message_size);
        let mut uc = Vec::with_capacity(6);
        uc.extend_from_slice(&UC_STREAM_BEGIN.to_be_bytes());
        uc.extend_from_slice(&stream_id.to_be_bytes());
        self.send(CSID_CONTROL, MSG_USER_CONTROL, 0, &uc);
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
    }

    /// Answer a Publish event with an error onStatus (e.g. code "NetStream.Publish.BadName").
    /// Does nothing unless a publish is pending on `stream_id`.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            return;
        };
        if !matches!(s.publish, PublishState::Pending(_)) {
            return;
        }
        s.publish = PublishState::Rejected;
        self.send_status(stream_id, "error", code, description);
    }

    /// Total bytes received (for logs/stats).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    // ---- output helpers ----

    fn send(&mut self, csid: u8, type_id: u8, stream_id: u32, payload: &[u8]) {
        write_message(
            &mut self.out,
            self.out_chunk_size,
            csid,
            type_id,
            stream_id,
            payload,
        );
    }

    fn send_command(&mut self, csid: u8, stream_id: u32, values: &[Value]) {
        let payload = amf0::encode_all(values);
        self.send(csid, MSG_COMMAND_AMF0, stream_id, &payload);
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.send_command(
            CSID_STATUS,
            stream_id,
            &[
                Value::String("onStatus".into()),
                Value::Number(0.0),
                Value::Null,
                Value::Object(vec![
                    ("level".into(), Value::String(level.into())),
                    ("code".into(), Value::String(code.into())),
                    ("description".into(), Value::String(description.into())),
                ]),
            ],
        );
    }

    fn send_result(&mut self, txn: f64, values: Vec<Value>) {
        let mut v = vec![Value::String("_result".into()), Value::Number(txn)];
        v.extend(values);
        self.send_command(CSID_COMMAND, 0, &v);
    }

    fn maybe_ack(&mut self) {
        if self.peer_window > 0 && self.bytes_in - self.last_ack >= self.peer_window as u64 {
            self.last_ack = self.bytes_in;
            let seq = (self.bytes_in as u32).to_be_bytes();
            self.send(CSID_CONTROL, MSG_ACK, 0, &seq);
        }
    }

    fn check_output(&self) -> Result<(), RtmpError> {
        let len = self.out.len() - self.out_pos;
        if len > MAX_OUTPUT_BUFFER {
            return Err(RtmpError::BufferLimit {
                what: "unsent output",
                len,
                limit: MAX_OUTPUT_BUFFER,
            });
        }
        Ok(())
    }

    // ---- message handling ----

    fn on_message(&mut self, m: Message, events: &mut Vec<Event>) -> Result<(), RtmpError> {
        let p = &m.payload;
        let bad = || RtmpError::BadControlMessage {
            type_id: m.type_id,
            len: m.payload.len(),
        };
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let min_len = match m.type_id {
            MSG_SET_CHUNK_SIZE | MSG_ABORT | MSG_ACK | MSG_WINDOW_ACK_SIZE => 4,
            MSG_USER_CONTROL => 2,
            MSG_SET_PEER_BANDWIDTH => 5,
            _ => 0,
        };
        if p.len() < min_len {
            return Err(bad());
        }
        match m.type_id {
            MSG_SET_CHUNK_SIZE => self.reader.set_chunk_size(be32(p))?,
            MSG_ABORT => self.reader.abort(be32(p)),
            // Our output is tiny: the peer's acks and bandwidth limits need no action.
            MSG_ACK | MSG_SET_PEER_BANDWIDTH => {}
            MSG_USER_CONTROL => {
                let ev = u16::from_be_bytes([p[0], p[1]]);
                if ev == UC_PING_REQUEST {
                    if p.len() < 6 {
                        return Err(bad());
                    }
                    let mut r = Vec::with_capacity(6);
                    r.extend_from_slice(&UC_PING_RESPONSE.to_be_bytes());
                    r.extend_from_slice(&p[2..6]);
                    self.send(CSID_CONTROL, MSG_USER_CONTROL, 0, &r);
                }
            }
            MSG_WINDOW_ACK_SIZE => self.peer_window = be32(p),
            MSG_AUDIO | MSG_VIDEO => {
                let ts = self.unwrap_ts(m.timestamp);
                self.media(m.type_id, m.stream_id, ts, m.payload, events);
            }
            MSG_DATA_AMF0 | MSG_DATA_AMF3 => {
                let body = strip_amf3_selector(m.type_id == MSG_DATA_AMF3, p);
                self.on_data(m.stream_id, body, events)?;
            }
            MSG_COMMAND_AMF0 | MSG_COMMAND_AMF3 => {
                let body = strip_amf3_selector(m.type_id == MSG_COMMAND_AMF3, p);
                let values = amf0::decode_all(body).map_err(|source| RtmpError::Amf {
                    context: "command",
                    source,
                })?;
                self.on_command(m.stream_id, values, events)?;
            }
            MSG_AGGREGATE => self.on_aggregate(&m, events)?,
            // Shared objects and anything else: not used by publishers we serve.
            _ => {}
        }
        Ok(())
    }

    fn unwrap_ts(&mut self, ts: u32) -> i64 {
        let v = match self.ts_ref {
            None => ts as i64,
            Some((last32, last64)) => last64.saturating_add(ts.wrapping_sub(last32) as i32 as i64),
        };
        self.ts_ref = Some((ts, v));
        v
    }

    fn publishing(&self, stream_id: u32) -> bool {
        self.streams
            .iter()
            .any(|s| s.id == stream_id && matches!(s.publish, PublishState::Publishing(_)))
    }

    fn media(
        &mut self,
        type_id: u8,
        stream_id: u32,
        timestamp_ms: i64,
        payload: Vec<u8>,
        events: &mut Vec<Event>,
    ) {
        if payload.is_empty() || !self.publishing(stream_id) {
            return;
        }
        let data = Bytes::from(payload);
        events.push(if type_id == MSG_AUDIO {
            Event::Audio {
                stream_id,
                timestamp_ms,
                data,
            }
        } else {
            Event::Video {
                stream_id,
                timestamp_ms,
                data,
            }
        });
    }

    /// Aggregate message: FLV tags (11-byte header, body, 4-byte back pointer);
    /// tag times are relative to the first tag and offset by the message time.
    fn on_aggregate(&mut self, m: &Message, events: &mut Vec<Event>) -> Result<(), RtmpError> {
        let p = &m.payload[..];
        let mut pos = 0;
        let mut first_ts: Option<u32> = None;
        let mut tags = 0;
        while pos < p.len() {
            tags += 1;
            if tags > MAX_AGGREGATE_TAGS {
                return Err(RtmpError::BadAggregate("too many tags"));
            }
            if p.len() - pos < 11 {
                return Err(RtmpError::BadAggregate("truncated tag header"));
            }
            let h = &p[pos..pos + 11];
            let tag_type = h[0] & 0x1f;
            let size = (h[1] as usize) << 16 | (h[2] as usize) << 8 | h[3] as usize;
            let tag_ts =
                (h[7] as u32) << 24 | (h[4] as u32) << 16 | (h[5] as u32) << 8 | h[6] as u32;
            pos += 11;
            if p.len() - pos < size {
                return Err(RtmpError::BadAggregate("truncated tag body"));
            }
            let body = p[pos..pos + size].to_vec();
            pos += size;
            // The back pointer is optional after the last tag.
            pos = (pos + 4).min(p.len());
            let base = *first_ts.get_or_insert(tag_ts);
            let ts32 = m.timestamp.wrapping_add(tag_ts.wrapping_sub(base));
            if tag_type == MSG_AUDIO || tag_type == MSG_VIDEO {
                let ts = self.unwrap_ts(ts32);
                self.media(tag_type, m.stream_id, ts, body, events);
            }
        }
        Ok(())
    }

    fn on_data(
        &mut self,
        stream_id: u32,
        body: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), RtmpError> {
        let values = amf0::decode_all(body).map_err(|source| RtmpError::Amf {
            context: "data message",
            source,
        })?;
        let mut it = values.into_iter();
        let mut name = it.next();
        if name.as_ref().and_then(Value::as_str) == Some("@setDataFrame") {
            name = it.next();
        }
        if name.as_ref().and_then(Value::as_str) != Some("onMetaData") {
            return Ok(());
        }
        let values = match it.next() {
            Some(Value::EcmaArray(p)) | Some(Value::Object(p)) => p,
            _ => return Ok(()),
        };
        if self.publishing(stream_id) {
            events.push(Event::Metadata { stream_id, values });
        }
        Ok(())
    }

    fn on_command(
        &mut self,
        msg_stream: u32,
        values: Vec<Value>,
        events: &mut Vec<Event>,
    ) -> Result<(), RtmpError> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Value::String(s)) => s,
            _ => return Err(RtmpError::Command("command without a name".into())),
        };
        let txn = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let cmd_obj = it.next();
        let args: Vec<Value> = it.collect();
        let arg_str = |i: usize| args.get(i).and_then(Value::as_str).map(str::to_owned);

        if name == "connect" {
            return self.on_connect(txn, cmd_obj, events);
        }
        if !self.connected {
            return Err(RtmpError::Command(format!(
                "command {:?} before connect",
                truncate(&name)
            )));
        }
        match name.as_str() {
            "releaseStream" => self.send_result(txn, vec![Value::Null, Value::Undefined]),
            "FCPublish" => {
                let stream = arg_str(0).unwrap_or_default();
                self.send_command(
                    CSID_COMMAND,
                    0,
                    &[
                        Value::String("onFCPublish".into()),
                        Value::Number(0.0),
                        Value::Null,
                        Value::Object(vec![
                            (
                                "code".into(),
                                Value::String("NetStream.Publish.Start".into()),
                            ),
                            ("description".into(), Value::String(stream)),
                        ]),
                    ],
                );
                self.send_result(txn, vec![Value::Null, Value::Undefined]);
            }
            "createStream" => {
                if self.streams.len() >= MAX_STREAMS {
                    return Err(RtmpError::TooManyStreams { limit: MAX_STREAMS });
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                self.streams.push(NetStream {
                    id,
                    publish: PublishState::Idle,
                });
                self.send_result(txn, vec![Value::Null, Value::Number(id as f64)]);
            }
            "publish" => {
                let Some(full) = arg_str(0) else {
                    return Err(RtmpError::Command("publish without a name".into()));
                };
                let kind = arg_str(1).unwrap_or_else(|| "live".into());
                let Some(s) = self.streams.iter_mut().find(|s| s.id == msg_stream) else {
                    return Err(RtmpError::Command(format!(
                        "publish on stream {msg_stream} that was not created"
                    )));
                };
                if s.publish != PublishState::Idle {
                    return Err(RtmpError::Command(format!(
                        "publish on stream {msg_stream} which already published"
                    )));
                }
                let (name, query) = match full.split_once('?') {
                    Some((n, q)) => (n.to_owned(), Some(q.to_owned())),
                    None => (full, None),
                };
                s.publish = PublishState::Pending(name.clone());
                events.push(Event::Publish {
                    stream_id: msg_stream,
                    name,
                    query,
                    kind,
                });
            }
            "FCUnpublish" => {
                let full = arg_str(0).unwrap_or_default();
                let name = full.split('?').next().unwrap_or_default();
                let id = self.streams.iter().find_map(|s| match &s.publish {
                    PublishState::Pending(n) | PublishState::Publishing(n) if n == name => {
                        Some(s.id)
                    }
                    _ => None,
                });
                if let Some(id) = id {
                    self.unpublish(id, events);
                }
                if txn != 0.0 {
                    self.send_result(txn, vec![Value::Null, Value::Undefined]);
                }
            }
            "closeStream" => self.unpublish(msg_stream, events),
            "deleteStream" => {
                let id = args
                    .first()
                    .and_then(Value::as_f64)
                    .filter(|n| *n >= 0.0 && *n <= u32::MAX as f64)
                    .map(|n| n as u32)
                    .unwrap_or(msg_stream);
                self.unpublish(id, events);
                self.streams.retain(|s| s.id != id);
            }
            "play" | "play2" => {
                self.send_status(
                    msg_stream,
                    "error",
                    "NetStream.Play.Failed",
                    "This server only accepts publishers.",
                );
                return Err(RtmpError::PlayNotSupported {
                    stream_id: msg_stream,
                });
            }
            "_checkbw" => self.send_result(txn, vec![Value::Null, Value::Undefined]),
            // Replies and notifications from the peer need no answer.
            "_result" | "_error" | "onStatus" | "onBWDone" => {}
            _ => {
                if txn != 0.0 {
                    let mut v = vec![Value::String("_error".into()), Value::Number(txn)];
                    v.push(Value::Null);
                    v.push(Value::Object(vec![
                        ("level".into(), Value::String("error".into())),
                        (
                            "code".into(),
                            Value::String("NetConnection.Call.Failed".into()),
                        ),
                        (
                            "description".into(),
                            Value::String(format!("Method not found ({}).", truncate(&name))),
                        ),
                    ]));
                    self.send_command(CSID_COMMAND, 0, &v);
                }
            }
        }
        Ok(())
    }

    fn on_connect(
        &mut self,
        txn: f64,
        cmd_obj: Option<Value>,
        events: &mut Vec<Event>,
    ) -> Result<(), RtmpError> {
        if self.connected {
            return Err(RtmpError::Command("connect received twice".into()));
        }
        let obj = cmd_obj.unwrap_or(Value::Null);
        let Some(app) = obj.get("app").and_then(Value::as_str) else {
            return Err(RtmpError::Command("connect without app".into()));
        };
        let app = app.strip_suffix('/').unwrap_or(app).to_owned();
        let tc_url = obj.get("tcUrl").and_then(Value::as_str).map(str::to_owned);
        let flash_ver = obj
            .get("flashVer")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.connected = true;

        let win = self.cfg.window_ack_size.to_be_bytes();
        self.send(CSID_CONTROL, MSG_WINDOW_ACK_SIZE, 0, &win);
        let mut bw = win.to_vec();
        bw.push(2); // dynamic limit
        self.send(CSID_CONTROL, MSG_SET_PEER_BANDWIDTH, 0, &bw);
        let chunk = self.cfg.out_chunk_size.clamp(1, MAX_CHUNK_SIZE);
        self.send(CSID_CONTROL, MSG_SET_CHUNK_SIZE, 0, &chunk.to_be_bytes());
        self.out_chunk_size = chunk;
        self.send_result(
            txn,
            vec![
                Value::Object(vec![
                    ("fmsVer".into(), Value::String("FMS/3,0,1,123".into())),
                    ("capabilities".into(), Value::Number(31.0)),
                ]),
                Value::Object(vec![
                    ("level".into(), Value::String("status".into())),
                    (
                        "code".into(),
                        Value::String("NetConnection.Connect.Success".into()),
                    ),
                    (
                        "description".into(),
                        Value::String("Connection succeeded.".into()),
                    ),
                    ("objectEncoding".into(), Value::Number(0.0)),
                ]),
            ],
        );
        events.push(Event::Connect {
            app,
            tc_url,
            flash_ver,
        });
        Ok(())
    }

    fn unpublish(&mut self, stream_id: u32, events: &mut Vec<Event>) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == stream_id) {
            if matches!(
                s.publish,
                PublishState::Pending(_) | PublishState::Publishing(_)
            ) {
                s.publish = PublishState::Idle;
                events.push(Event::Unpublish { stream_id });
            }
        }
    }
}

/// AMF3 command/data messages start with a format byte before AMF0 values;
/// skip it unless the body already starts like AMF0 (a string marker).
fn strip_amf3_selector(amf3: bool, p: &[u8]) -> &[u8] {
    if amf3 && !p.is_empty() && p[0] != 0x02 {
        &p[1..]
    } else {
        p
    }
}

/// Command names from the wire go into error texts; keep them short.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
