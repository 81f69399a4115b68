//! A whole ingest connection driven in memory: real RTMP bytes (handshake, commands, an
//! FLV file's tags made by ffmpeg) into [`Connection`], with an in-memory table standing
//! in for the shared zone. Covers the stream lifecycle: claim, lost connection and grace
//! period, republish, takeover, a dead owner.

use std::path::PathBuf;

use super::*;
use crate::rtmp::amf0::{encode_all, Value};
use crate::store::{StreamState, Takeover};

const PACKET: usize = 1536;

/// The shared table, in memory.
struct Mem(Vec<StreamIndex>);

impl Mem {
    fn new(n: usize) -> Self {
        Mem(vec![StreamIndex::ZERO; n])
    }
    fn stream(&mut self, key: &str) -> Option<StreamIndex> {
        Table::new(&mut self.0).find(key).copied()
    }
    fn sweep(&mut self, now_ms: i64, owner_alive: bool) {
        Table::new(&mut self.0).sweep_with(now_ms, 90_000, &mut |_| owner_alive);
    }
}

impl SharedIndex for Mem {
    fn with_table(&mut self, f: &mut dyn FnMut(&mut Table)) -> bool {
        f(&mut Table::new(&mut self.0));
        true
    }
}

fn temp_root(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vid-ingest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(root: &PathBuf, owner: u32, grace_ms: u32, takeover: Takeover) -> IngestConfig {
    IngestConfig {
        root: root.clone(),
        segment_target_ms: 1000,
        part_target_ms: 200,
        window: 6,
        max_message_size: 1 << 20,
        owner,
        ts: false,
        lifecycle: Lifecycle { grace_ms, takeover },
        publish_secrets: Default::default(),
        publish_callback: false,
        record: None,
    }
}

/// One RTMP message in chunks of 128 bytes (fmt 0, then fmt 3).
fn message(csid: u8, ts: u32, type_id: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![csid];
    v.extend_from_slice(&ts.min(0xFF_FFFE).to_be_bytes()[1..]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&sid.to_le_bytes());
    for (i, c) in payload.chunks(128).enumerate() {
        if i > 0 {
            v.push(0xC0 | csid);
        }
        v.extend_from_slice(c);
    }
    v
}

fn cmd(values: &[Value]) -> Vec<u8> {
    message(3, 0, 20, 0, &encode_all(values))
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

/// Handshake, connect, createStream and publish `key`, as one client would send them.
fn publish_bytes(key: &str) -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&[0u8; PACKET]); // C1
    v.extend_from_slice(&[0u8; PACKET]); // C2
    v.extend(cmd(&[
        s("connect"),
        Value::Number(1.0),
        Value::Object(vec![("app".into(), s("live"))]),
    ]));
    v.extend(cmd(&[s("createStream"), Value::Number(2.0), Value::Null]));
    v.extend(message(
        4,
        0,
        20,
        1,
        &encode_all(&[
            s("publish"),
            Value::Number(3.0),
            Value::Null,
            s(key),
            s("live"),
        ]),
    ));
    v
}

/// The tags of the ~1 s H.264/AAC fixture: (type, timestamp, data).
fn fixture_tags() -> Vec<(u8, u32, Vec<u8>)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flv/h264_aac_320x240.flv");
    let b = std::fs::read(path).unwrap();
    let mut tags = Vec::new();
    let mut i = 9 + 4;
    while i + 11 <= b.len() {
        let ty = b[i];
        let len = u32::from_be_bytes([0, b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let ts = u32::from_be_bytes([b[i + 7], b[i + 4], b[i + 5], b[i + 6]]);
        if i + 11 + len > b.len() {
            break;
        }
        if ty == 8 || ty == 9 {
            tags.push((ty, ts, b[i + 11..i + 11 + len].to_vec()));
        }
        i += 11 + len + 4;
    }
    tags
}

/// `seconds` of media: the fixture repeated, timestamps continued from `from_ms`.
fn media_bytes(from_ms: u32, seconds: u32) -> Vec<u8> {
    let tags = fixture_tags();
    let mut v = Vec::new();
    for k in 0..seconds {
        for (i, (ty, ts, data)) in tags.iter().enumerate() {
            // Sequence headers once, at the start.
            let header = data.len() > 1 && data[1] == 0;
            if header && (k > 0 || i > 4) {
                continue;
            }
            let t = from_ms + k * 1000 + ts;
            v.extend(message(if *ty == 9 { 6 } else { 7 }, t, *ty, 1, data));
        }
    }
    v
}

fn segments(idx: &StreamIndex) -> Vec<u64> {
    idx.segments().map(|s| s.msn).collect()
}

#[test]
fn lost_connection_keeps_the_stream_live_for_the_grace_period() {
    let root = temp_root("grace");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 3000, Takeover::Newest));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 4), 2_000, &mut mem).unwrap();
    let idx = mem.stream("cam").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    let before = segments(&idx);
    assert!(before.len() >= 2, "{before:?}");

    // The TCP connection drops (no unpublish): live, no ENDLIST, the grace period runs.
    a.close(10_000, &mut mem);
    let idx = mem.stream("cam").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    assert!(idx.publisher_gone());
    mem.sweep(12_999, true);
    assert_eq!(mem.stream("cam").unwrap().state(), StreamState::Live);
    // Only when the grace period is over does the stream end.
    mem.sweep(13_000, true);
    assert_eq!(mem.stream("cam").unwrap().state(), StreamState::Ended);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn republish_within_the_grace_period_continues_with_a_discontinuity() {
    let root = temp_root("republish");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 6000, Takeover::Newest));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 4), 2_000, &mut mem).unwrap();
    a.close(5_000, &mut mem);
    let gone = mem.stream("cam").unwrap();
    let next = gone.next_msn();

    let mut b = Connection::new(config(&root, 1, 6000, Takeover::Newest));
    b.feed(&publish_bytes("cam"), 7_000, &mut mem).unwrap();
    assert!(b
        .take_log()
        .iter()
        .any(|(_, m)| m.contains("continues the previous stream")));
    b.feed(&media_bytes(0, 3), 8_000, &mut mem).unwrap();
    let idx = mem.stream("cam").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    assert!(!idx.publisher_gone());
    // The grace period of the first connection no longer applies.
    mem.sweep(60_000, true);
    assert_eq!(mem.stream("cam").unwrap().state(), StreamState::Live);
    let idx = mem.stream("cam").unwrap();
    let segs: Vec<_> = idx.segments().collect();
    let first_new = segs.iter().find(|s| s.msn == next).expect("MSN continues");
    assert!(first_new.discontinuity());
    // Media sequence numbers are contiguous across the reconnect.
    let msns = segments(&idx);
    assert!(msns.windows(2).all(|w| w[1] == w[0] + 1), "{msns:?}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn explicit_unpublish_ends_at_once() {
    let root = temp_root("unpublish");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 6000, Takeover::Newest));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 2), 2_000, &mut mem).unwrap();
    a.feed(
        &cmd(&[
            s("deleteStream"),
            Value::Number(4.0),
            Value::Null,
            Value::Number(1.0),
        ]),
        3_000,
        &mut mem,
    )
    .unwrap();
    assert_eq!(mem.stream("cam").unwrap().state(), StreamState::Ended);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn newest_publisher_takes_over_and_the_old_one_is_closed() {
    let root = temp_root("takeover");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 6000, Takeover::Newest));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 3), 2_000, &mut mem).unwrap();
    let unfinished = mem.stream("cam").unwrap().next_msn();

    // The old connection is still open (half-open TCP): the new one takes the key.
    let mut b = Connection::new(config(&root, 2, 6000, Takeover::Newest));
    b.feed(&publish_bytes("cam"), 2_500, &mut mem).unwrap();
    // The old writer's unfinished segment (parts already listed) was sealed, not reused.
    let next = mem.stream("cam").unwrap().next_msn();
    assert_eq!(next, unfinished + 1);
    assert!(b
        .take_log()
        .iter()
        .any(|(_, m)| m.contains("takes the stream over")));
    assert_eq!(mem.stream("cam").unwrap().owner(), 2);
    // The old one learns it on its periodic check (or its next write) and is closed.
    let err = a.check_owner(&mut mem).unwrap_err();
    assert!(err.to_string().contains("taken over"), "{err}");
    // Its close does not end or disturb the stream.
    a.close(3_000, &mut mem);
    let idx = mem.stream("cam").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    assert!(!idx.publisher_gone());
    b.feed(&media_bytes(0, 3), 4_000, &mut mem).unwrap();
    let idx = mem.stream("cam").unwrap();
    assert!(idx.segments().any(|s| s.msn == next && s.discontinuity()));
    let msns = segments(&idx);
    assert!(msns.windows(2).all(|w| w[1] == w[0] + 1), "{msns:?}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn old_publisher_writing_after_a_takeover_is_refused() {
    let root = temp_root("takeover-write");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 6000, Takeover::Newest));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 2), 2_000, &mut mem).unwrap();
    let mut b = Connection::new(config(&root, 2, 6000, Takeover::Newest));
    b.feed(&publish_bytes("cam"), 2_500, &mut mem).unwrap();
    let before = mem.stream("cam").unwrap().generation();
    let err = a.feed(&media_bytes(2000, 2), 3_000, &mut mem).unwrap_err();
    assert!(err.to_string().contains("taken over"), "{err}");
    assert_eq!(mem.stream("cam").unwrap().generation(), before);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn takeover_off_refuses_a_second_publisher_while_the_first_is_connected() {
    let root = temp_root("refuse");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 6000, Takeover::Refuse));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 2), 2_000, &mut mem).unwrap();
    let mut b = Connection::new(config(&root, 2, 6000, Takeover::Refuse));
    let err = b.feed(&publish_bytes("cam"), 2_500, &mut mem).unwrap_err();
    assert!(err.to_string().contains("already being published"), "{err}");
    assert_eq!(mem.stream("cam").unwrap().owner(), 1);
    assert!(a.check_owner(&mut mem).is_ok());
    // Once the first one's connection is lost, a reconnect continues the stream.
    a.close(3_000, &mut mem);
    let mut c = Connection::new(config(&root, 2, 6000, Takeover::Refuse));
    c.feed(&publish_bytes("cam"), 3_500, &mut mem).unwrap();
    assert_eq!(mem.stream("cam").unwrap().owner(), 2);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn dead_owner_starts_the_grace_period_then_the_stream_ends() {
    let root = temp_root("dead");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 77, 3000, Takeover::Newest));
    a.feed(&publish_bytes("cam"), 1_000, &mut mem).unwrap();
    a.feed(&media_bytes(0, 2), 2_000, &mut mem).unwrap();
    // The owner's worker died (kill -9): no close ever runs for this connection.
    std::mem::forget(a);
    mem.sweep(2_500, true);
    assert!(!mem.stream("cam").unwrap().publisher_gone());
    mem.sweep(3_000, false);
    let idx = mem.stream("cam").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    assert!(idx.publisher_gone());
    mem.sweep(6_000, false);
    assert_eq!(mem.stream("cam").unwrap().state(), StreamState::Ended);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn wall_clock_steps_do_not_touch_liveness() {
    let root = temp_root("clock");
    let mut mem = Mem::new(4);
    let mut a = Connection::new(config(&root, 1, 3000, Takeover::Refuse));
    let wall = 1_800_000_000_000;
    a.feed_at(
        &publish_bytes("cam"),
        Now {
            wall_ms: wall,
            mono_ms: 1_000,
        },
        &mut mem,
    )
    .unwrap();
    // The wall clock jumps 100 s ahead, then 100 s back; the monotonic clock runs on.
    let step = Now {
        wall_ms: wall + 101_000,
        mono_ms: 2_000,
    };
    a.feed_at(&media_bytes(0, 2), step, &mut mem).unwrap();
    let back = Now {
        wall_ms: wall - 97_000,
        mono_ms: 4_000,
    };
    a.feed_at(&media_bytes(2000, 2), back, &mut mem).unwrap();
    mem.sweep(4_500, true);
    let idx = mem.stream("cam").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    assert!(!idx.publisher_gone());
    // Nobody else may claim the key.
    let mut b = Connection::new(config(&root, 2, 3000, Takeover::Refuse));
    let step = Now {
        wall_ms: wall + 200_000,
        mono_ms: 4_600,
    };
    assert!(b.feed_at(&publish_bytes("cam"), step, &mut mem).is_err());
    let _ = std::fs::remove_dir_all(root);
}
