//! Entry points for coverage-guided fuzzing, one per network-facing input.
//!
//! The `fuzz/` crate (its own workspace, libFuzzer) calls these; `corpus_replay` runs
//! every committed corpus file through them as an ordinary unit test. Each function
//! must never panic on any input; invariant checks panic with a message.

use std::path::PathBuf;

use bytes::Bytes;

use crate::codec::{aac, avc, hevc, opus};
use crate::flv;
use crate::ingest::{Connection, IngestConfig, LogLevel, SharedIndex};
use crate::playlist::{
    blocking_state, max_age, media_playlist, multivariant_playlist, parse_query, Format,
    MediaRequest, RenderOptions, Skip,
};
use crate::rtmp::{amf0, Session, SessionConfig};
use crate::store::names::{split_uri, valid_key, MediaFile};
use crate::store::{StreamIndex, Table};

mod segmenter;
#[cfg(test)]
mod tests;

pub use segmenter::segmenter;

/// The names of the targets, as used for `fuzz/fuzz_targets/{name}.rs` and
/// `fuzz/corpus/{name}/`.
pub const TARGETS: &[&str] = &[
    "rtmp_session",
    "ingest",
    "amf0",
    "flv",
    "codec",
    "segmenter",
    "playlist",
    "uri",
];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "rtmp_session" => rtmp_session(data),
        "ingest" => ingest(data),
        "amf0" => amf0_round_trip(data),
        "flv" => flv_tags(data),
        "codec" => codec_configs(data),
        "segmenter" => segmenter(data),
        "playlist" => playlist(data),
        "uri" => uri(data),
        _ => panic!("unknown fuzz target {name}"),
    }
}

/// The RTMP session fed raw bytes, in pieces whose sizes come from the first byte.
pub fn rtmp_session(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let mut s = Session::new(SessionConfig {
        max_message_size: 1 << 16,
        ..SessionConfig::default()
    });
    let mut events = Vec::new();
    let step = (split as usize % 64) + 1;
    for piece in data.chunks(if split & 0x80 != 0 {
        step
    } else {
        data.len().max(1)
    }) {
        let r = s.feed(piece, &mut events);
        for ev in events.drain(..) {
            if let crate::rtmp::Event::Publish { stream_id, .. } = ev {
                s.accept_publish(stream_id);
            }
        }
        let n = s.output().len();
        s.consume_output(n);
        if r.is_err() {
            return;
        }
    }
}

/// An in-memory shared index, as the nginx zone provides it.
pub struct MemoryIndex {
    pub slots: Vec<StreamIndex>,
}

impl MemoryIndex {
    pub fn new(n: usize) -> Self {
        MemoryIndex {
            slots: vec![StreamIndex::ZERO; n],
        }
    }
}

impl SharedIndex for MemoryIndex {
    fn with_table(&mut self, f: &mut dyn FnMut(&mut Table)) -> bool {
        let mut t = Table::new(&mut self.slots);
        f(&mut t);
        true
    }
}

fn scratch_dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("vid-fuzz-{}", std::process::id()))
}

/// Builds the bytes of one RTMP message in chunks of 128 bytes (the default chunk size).
fn chunked(out: &mut Vec<u8>, csid: u8, type_id: u8, stream_id: u32, ts: u32, payload: &[u8]) {
    let ts = ts.min(0xFF_FFFE);
    out.push(csid & 0x3F);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, c) in payload.chunks(128).enumerate() {
        if i > 0 {
            out.push(0xC0 | (csid & 0x3F));
        }
        out.extend_from_slice(c);
    }
}

fn command(out: &mut Vec<u8>, stream_id: u32, values: &[amf0::Value]) {
    chunked(out, 3, 20, stream_id, 0, &amf0::encode_all(values));
}

/// Handshake, connect, createStream and publish of the key `k`.
pub fn publish_prefix() -> Vec<u8> {
    use amf0::Value as V;
    let mut out = vec![3u8];
    out.extend(std::iter::repeat_n(0u8, 1536 * 2));
    command(
        &mut out,
        0,
        &[
            V::String("connect".into()),
            V::Number(1.0),
            V::Object(vec![("app".into(), V::String("live".into()))]),
        ],
    );
    command(
        &mut out,
        0,
        &[V::String("createStream".into()), V::Number(2.0), V::Null],
    );
    command(
        &mut out,
        1,
        &[
            V::String("publish".into()),
            V::Number(3.0),
            V::Null,
            V::String("k".into()),
            V::String("live".into()),
        ],
    );
    out
}

/// The whole ingest connection (RTMP → FLV → segmenter → store) with an in-memory
/// index and a scratch folder. First byte even: `data` follows a valid publish as a
/// list of messages `[type, ts delta (2 bytes), len (2 bytes), payload]`; odd: raw bytes.
pub fn ingest(data: &[u8]) {
    ingest_into(data, &mut MemoryIndex::new(2));
}

/// [`ingest`] into `index`; returns the log lines and whether the connection ended
/// with an error.
pub fn ingest_into(data: &[u8], index: &mut MemoryIndex) -> (Vec<(LogLevel, String)>, bool) {
    let mut log = Vec::new();
    let mut failed = false;
    let Some((&mode, data)) = data.split_first() else {
        return (log, failed);
    };
    let root = scratch_dir();
    let mut conn = Connection::new(IngestConfig {
        root: root.clone(),
        segment_target_ms: 1_000,
        part_target_ms: 200,
        window: 3,
        max_message_size: 1 << 16,
        owner: 1,
        ts: mode & 2 != 0,
        lifecycle: Default::default(),
        publish_secrets: Default::default(),
        publish_callback: false,
        record: None,
    });
    let mut now = 1_700_000_000_000i64;
    let prefix = publish_prefix();
    let bytes = if mode & 1 == 0 {
        // A real publisher waits for the publish answer before sending media.
        let mut b = Vec::new();
        let mut rest = data;
        let mut ts = 0u32;
        while rest.len() >= 5 {
            let ty = match rest[0] % 4 {
                0 | 1 => 9,
                2 => 8,
                _ => 18,
            };
            ts = ts.wrapping_add(u16::from_le_bytes([rest[1], rest[2]]) as u32 % 2_000);
            let len = (u16::from_le_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
            chunked(&mut b, 4 + (ty & 1), ty, 1, ts, &rest[5..5 + len]);
            rest = &rest[5 + len..];
        }
        b
    } else {
        data.to_vec()
    };
    let pieces = if mode & 1 == 0 {
        vec![&prefix[..]]
    } else {
        Vec::new()
    };
    for piece in pieces.into_iter().chain(bytes.chunks(4096)) {
        now += 7;
        let r = conn.feed(piece, now, index);
        let n = conn.output().len();
        conn.consume_output(n);
        log.extend(conn.take_log());
        if r.is_err() {
            failed = true;
            break;
        }
    }
    conn.close(now + 10, index);
    log.extend(conn.take_log());
    let _ = std::fs::remove_dir_all(&root);
    (log, failed)
}

/// Encodes `(FLV tag type, timestamp delta, body)` messages in the structured form
/// [`ingest`] reads after its mode byte.
pub fn ingest_messages(msgs: &[(u8, u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ty, delta, body) in msgs {
        out.push(match ty {
            9 => 0,
            8 => 2,
            _ => 3,
        });
        out.extend_from_slice(&delta.to_le_bytes());
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// Splits the structured form back into `(FLV tag type, timestamp delta, body)`.
pub fn parse_ingest_messages(mut rest: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    let mut v = Vec::new();
    while rest.len() >= 5 {
        let ty = match rest[0] % 4 {
            0 | 1 => 9,
            2 => 8,
            _ => 18,
        };
        let delta = u16::from_le_bytes([rest[1], rest[2]]);
        let len = (u16::from_le_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
        v.push((ty, delta, rest[5..5 + len].to_vec()));
        rest = &rest[5 + len..];
    }
    v
}

/// AMF0: decode; whatever decodes must encode, decode again to the same values and
/// encode to the same bytes.
pub fn amf0_round_trip(data: &[u8]) {
    let _ = amf0::decode(data);
    let Ok(values) = amf0::decode_all(data) else {
        return;
    };
    let enc = amf0::encode_all(&values);
    let again = amf0::decode_all(&enc).expect("re-decoding encoded AMF0 values");
    let enc2 = amf0::encode_all(&again);
    assert_eq!(enc, enc2, "AMF0 encode is not stable across a round trip");
}

/// FLV video and audio tag bodies (legacy and Enhanced RTMP).
pub fn flv_tags(data: &[u8]) {
    let b = Bytes::copy_from_slice(data);
    if let Ok(flv::VideoTag::Frame { data, .. }) = flv::parse_video(&b) {
        assert!(!data.is_empty());
    }
    let _ = flv::parse_audio(&b);
}

/// Decoder configuration records, SPS and AudioSpecificConfig parsers, Opus packet
/// durations.
pub fn codec_configs(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let b = Bytes::copy_from_slice(rest);
    match which % 6 {
        0 => {
            if let Ok(cfg) = avc::parse_config(&b) {
                assert!(matches!(cfg.nalu_length_size, 1 | 2 | 4));
            }
        }
        1 => {
            if let Ok(cfg) = hevc::parse_config(&b) {
                assert!(matches!(cfg.nalu_length_size, 1 | 2 | 4));
            }
        }
        2 => {
            let _ = hevc::parse_sps(rest);
        }
        3 => {
            if let Ok(a) = aac::parse_asc(&b) {
                assert!(a.sample_rate > 0);
            }
            if let Some(n) = opus::packet_samples(rest) {
                assert!((120..=opus::MAX_PACKET_SAMPLES).contains(&n));
            }
        }
        4 => {
            for ls in [1, 2, 4] {
                let _ = avc::is_idr(rest, ls);
                let _ = hevc::is_irap(rest, ls);
                for _ in crate::codec::nal_units(rest, ls) {}
            }
            let _ = crate::codec::detect_length_size(rest);
            // WebRTC H.264 (after depacketizing): Annex B access units, split in two.
            let mut d = crate::whip::h264::Depacketized::new();
            let mid = rest.len() / 2;
            for au in [&rest[..mid], &rest[mid..], rest] {
                if let Ok(au) = d.access_unit(au) {
                    // Whole length-prefixed NAL units, nothing else.
                    assert!(crate::codec::nal_units(&au.data, 4).count() > 0);
                    let mut at = 0;
                    while at < au.data.len() {
                        let n = u32::from_be_bytes(au.data[at..at + 4].try_into().unwrap());
                        at += 4 + n as usize;
                    }
                    assert_eq!(at, au.data.len());
                }
            }
        }
        _ => {
            let _ = avc::split_record(rest);
            let _ = hevc::split_record(rest);
        }
    }
}

/// Playlist rendering and `blocking_state` on an arbitrary (torn) index and query.
pub fn playlist(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let qlen = (data[0] as usize).min(data.len() - 1);
    let flags = data[1];
    let query = String::from_utf8_lossy(&data[2.min(data.len())..(2 + qlen).min(data.len())]);
    let idx = StreamIndex::fuzz_from_bytes(&data[(2 + qlen).min(data.len())..]);
    let mut req = parse_query(&query).unwrap_or_default();
    if flags & 1 != 0 {
        // Also numbers no query parser would let through.
        req = MediaRequest {
            msn: Some(idx.next_msn().wrapping_add((flags >> 4) as u64)),
            part: Some((flags >> 2) as u32 & 3),
            skip: if flags & 2 != 0 { Skip::Yes } else { Skip::No },
        };
    }
    let _ = blocking_state(&idx, &req);
    let opts = RenderOptions {
        low_latency: flags & 0x40 == 0,
        format: if flags & 0x80 != 0 {
            Format::Ts
        } else {
            Format::Fmp4
        },
    };
    let text = media_playlist(&idx, &req, &opts);
    assert!(text.starts_with("#EXTM3U"));
    let _ = multivariant_playlist(&idx, "index.m3u8");
    let _ = max_age(&idx, req.msn.is_some());
    let _ = crate::playlist::StreamSummary::of(&idx);
}

/// URI splitting, media names and the playlist query parser.
pub fn uri(data: &[u8]) {
    if let Some((key, file)) = split_uri(data) {
        assert!(valid_key(key));
        if let Some(m) = MediaFile::parse(file) {
            assert_eq!(MediaFile::parse(&m.name()), Some(m));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = valid_key(s);
        let _ = parse_query(s);
        if let Some(m) = MediaFile::parse(s) {
            assert_eq!(
                m.name(),
                s,
                "media names parse only in their canonical form"
            );
        }
    }
}
