use super::chunk::{ChunkReader, Message};
use super::handshake::{self, DigestScheme, PACKET_SIZE};
use super::*;

// ---------- client-side helpers ----------

fn c1_bytes(version: [u8; 4]) -> [u8; PACKET_SIZE] {
    let mut c1 = [0u8; PACKET_SIZE];
    for (i, b) in c1.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8;
    }
    c1[..4].copy_from_slice(&[0, 0, 0, 0]);
    c1[4..8].copy_from_slice(&version);
    c1
}

fn c0c1(c1: &[u8; PACKET_SIZE]) -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(c1);
    v
}

/// Basic + message header for one chunk.
fn header(fmt: u8, csid: u32, ts: u32, len: u32, type_id: u8, sid: u32, ext: bool) -> Vec<u8> {
    let mut h = Vec::new();
    match csid {
        2..=63 => h.push(fmt << 6 | csid as u8),
        64..=319 => {
            h.push(fmt << 6);
            h.push((csid - 64) as u8);
        }
        _ => {
            h.push(fmt << 6 | 1);
            let c = csid - 64;
            h.push(c as u8);
            h.push((c >> 8) as u8);
        }
    }
    let field = if ext { 0xFF_FFFF } else { ts };
    if fmt <= 2 {
        h.extend_from_slice(&field.to_be_bytes()[1..]);
    }
    if fmt <= 1 {
        h.extend_from_slice(&len.to_be_bytes()[1..]);
        h.push(type_id);
    }
    if fmt == 0 {
        h.extend_from_slice(&sid.to_le_bytes());
    }
    if ext {
        h.extend_from_slice(&ts.to_be_bytes());
    }
    h
}

/// A whole message: fmt 0 first chunk, fmt 3 continuations.
fn message(csid: u32, ts: u32, type_id: u8, sid: u32, payload: &[u8], chunk: usize) -> Vec<u8> {
    let ext = ts >= 0xFF_FFFF;
    let mut v = header(0, csid, ts, payload.len() as u32, type_id, sid, ext);
    for (i, c) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            v.extend_from_slice(&header(3, csid, ts, 0, 0, 0, ext));
        }
        v.extend_from_slice(c);
    }
    if payload.is_empty() {
        return v;
    }
    v
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

fn n(x: f64) -> Value {
    Value::Number(x)
}

fn command(values: &[Value]) -> Vec<u8> {
    amf0::encode_all(values)
}

fn connect_cmd(app: &str) -> Vec<u8> {
    command(&[
        s("connect"),
        n(1.0),
        Value::Object(vec![
            ("app".into(), s(app)),
            ("type".into(), s("nonprivate")),
            ("tcUrl".into(), s(&format!("rtmp://127.0.0.1/{app}"))),
            ("flashVer".into(), s("FMLE/3.0 (compatible; test)")),
        ]),
    ])
}

/// Drives a Session like a client would, and decodes what it sends back.
struct Peer {
    s: Session,
    events: Vec<Event>,
    reader: ChunkReader,
    pending: Vec<u8>,
}

impl Peer {
    fn new(cfg: SessionConfig) -> Self {
        Peer {
            s: Session::new(cfg),
            events: Vec::new(),
            reader: ChunkReader::new(1 << 24),
            pending: Vec::new(),
        }
    }

    /// Plain handshake, server output dropped.
    fn handshaken(cfg: SessionConfig) -> Self {
        let mut p = Peer::new(cfg);
        let c1 = c1_bytes([0; 4]);
        p.feed(&c0c1(&c1)).unwrap();
        assert_eq!(p.s.output().len(), 1 + 2 * PACKET_SIZE);
        let n = p.s.output().len();
        p.s.consume_output(n);
        p.feed(&c1).unwrap();
        p
    }

    /// Handshake + connect + createStream + publish "test" + accept.
    fn publishing() -> Self {
        let mut p = Peer::handshaken(SessionConfig::default());
        p.feed(&message(3, 0, 20, 0, &connect_cmd("live"), 128))
            .unwrap();
        p.feed(&message(
            3,
            0,
            20,
            0,
            &command(&[s("createStream"), n(2.0), Value::Null]),
            128,
        ))
        .unwrap();
        p.feed(&message(
            4,
            0,
            20,
            1,
            &command(&[s("publish"), n(3.0), Value::Null, s("test"), s("live")]),
            128,
        ))
        .unwrap();
        p.s.accept_publish(1);
        p.replies();
        p.events.clear();
        p
    }

    fn feed(&mut self, b: &[u8]) -> Result<(), RtmpError> {
        self.s.feed(b, &mut self.events)
    }

    /// Messages the session sent since the last call (after the handshake).
    fn replies(&mut self) -> Vec<Message> {
        self.pending.extend_from_slice(self.s.output());
        let n = self.s.output().len();
        self.s.consume_output(n);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let (used, m) = self.reader.read(&self.pending[pos..]).unwrap();
            pos += used;
            match m {
                Some(m) => {
                    if m.type_id == 1 {
                        let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                        self.reader.set_chunk_size(size).unwrap();
                    }
                    out.push(m);
                }
                None => break,
            }
        }
        self.pending.drain(..pos);
        out
    }
}

fn amf(m: &Message) -> Vec<Value> {
    assert_eq!(m.type_id, 20);
    amf0::decode_all(&m.payload).unwrap()
}

fn media_ts(events: &[Event]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Video { timestamp_ms, .. } | Event::Audio { timestamp_ms, .. } => {
                Some(*timestamp_ms)
            }
            _ => None,
        })
        .collect()
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

// ---------- handshake ----------

#[test]
fn plain_handshake() {
    let mut p = Peer::new(SessionConfig::default());
    let c1 = c1_bytes([0; 4]);
    let all = c0c1(&c1);
    // Split delivery: nothing is sent before C1 is complete.
    p.feed(&all[..700]).unwrap();
    assert!(p.s.output().is_empty());
    p.feed(&all[700..]).unwrap();
    let out = p.s.output().to_vec();
    assert_eq!(out.len(), 1 + 2 * PACKET_SIZE);
    assert_eq!(out[0], 3);
    assert_eq!(&out[5..9], &[0, 0, 0, 0]);
    assert_eq!(&out[1 + PACKET_SIZE..], &c1[..]);
    p.s.consume_output(100);
    assert_eq!(p.s.output(), &out[100..]);
    p.s.consume_output(usize::MAX);
    assert!(p.s.output().is_empty());
    // C2 plus the first chunk in the same read.
    let mut c2 = c1.to_vec();
    c2.extend_from_slice(&message(3, 0, 20, 0, &connect_cmd("live"), 128));
    p.feed(&c2).unwrap();
    assert_eq!(
        p.events,
        vec![Event::Connect {
            app: "live".into(),
            tc_url: Some("rtmp://127.0.0.1/live".into()),
            flash_ver: Some("FMLE/3.0 (compatible; test)".into()),
        }]
    );
    assert_eq!(p.s.bytes_in(), (all.len() + c2.len()) as u64);
}

#[test]
fn digest_handshake_both_schemes() {
    for scheme in [DigestScheme::Base8, DigestScheme::Base772] {
        let mut c1 = c1_bytes([9, 0, 124, 2]);
        handshake::sign_c1(&mut c1, scheme);
        let (_, c1_digest) = handshake::find_digest(&c1, true).unwrap();
        let mut p = Peer::new(SessionConfig::default());
        p.feed(&c0c1(&c1)).unwrap();
        let out = p.s.output();
        assert_eq!(out.len(), 1 + 2 * PACKET_SIZE);
        let s1: [u8; PACKET_SIZE] = out[1..1 + PACKET_SIZE].try_into().unwrap();
        let s2: [u8; PACKET_SIZE] = out[1 + PACKET_SIZE..].try_into().unwrap();
        assert_ne!(&s1[4..8], &[0, 0, 0, 0]);
        assert!(handshake::find_digest(&s1, false).is_some(), "S1 digest");
        assert!(handshake::verify_s2(&s2, &c1_digest), "S2 signature");
        assert_ne!(&s2[..], &c1[..]);
    }
}

#[test]
fn bad_handshake_version() {
    for v in [0u8, 6, 0x16, 0xff] {
        let mut s = Session::new(SessionConfig::default());
        let e = s.feed(&[v], &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), format!("bad handshake version {v}"));
        assert_eq!(s.feed(&[3], &mut Vec::new()), Err(RtmpError::Failed));
    }
}

// ---------- commands ----------

#[test]
fn connect_replies() {
    let mut p = Peer::handshaken(SessionConfig::default());
    p.feed(&message(3, 0, 20, 0, &connect_cmd("live/"), 128))
        .unwrap();
    assert!(matches!(&p.events[0], Event::Connect { app, .. } if app == "live"));
    let r = p.replies();
    assert_eq!(r.len(), 4);
    assert_eq!(
        (r[0].type_id, &r[0].payload[..]),
        (5, &2_500_000u32.to_be_bytes()[..])
    );
    assert_eq!(r[1].type_id, 6);
    assert_eq!(&r[1].payload[..4], &2_500_000u32.to_be_bytes());
    assert_eq!(
        (r[2].type_id, &r[2].payload[..]),
        (1, &4096u32.to_be_bytes()[..])
    );
    let v = amf(&r[3]);
    assert_eq!(v[0], s("_result"));
    assert_eq!(v[1], n(1.0));
    assert_eq!(
        v[2].get("fmsVer").and_then(Value::as_str),
        Some("FMS/3,0,1,123")
    );
    assert_eq!(
        v[3].get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(v[3].get("objectEncoding"), Some(&n(0.0)));
    // Connect twice is an error.
    let e = p
        .feed(&message(3, 0, 20, 0, &connect_cmd("live"), 4096))
        .unwrap_err();
    assert_eq!(e.to_string(), "connect received twice");
}

#[test]
fn publish_flow() {
    let mut p = Peer::handshaken(SessionConfig::default());
    p.feed(&message(3, 0, 20, 0, &connect_cmd("live"), 128))
        .unwrap();
    p.replies();
    let cmds = [
        command(&[s("releaseStream"), n(2.0), Value::Null, s("test")]),
        command(&[s("FCPublish"), n(3.0), Value::Null, s("test")]),
        command(&[s("createStream"), n(4.0), Value::Null]),
    ];
    for c in &cmds {
        p.feed(&message(3, 0, 20, 0, c, 128)).unwrap();
    }
    let r = p.replies();
    let names: Vec<Value> = r.iter().map(|m| amf(m)[0].clone()).collect();
    assert_eq!(
        names,
        vec![s("_result"), s("onFCPublish"), s("_result"), s("_result")]
    );
    let created = amf(&r[3]);
    assert_eq!(created[1], n(4.0));
    assert_eq!(created[3], n(1.0));

    // Media before the publish is accepted is dropped.
    p.feed(&message(
        8,
        0,
        20,
        1,
        &command(&[
            s("publish"),
            n(5.0),
            Value::Null,
            s("test?key=abc"),
            s("live"),
        ]),
        128,
    ))
    .unwrap();
    p.feed(&message(6, 0, 9, 1, &[0x17, 0, 0, 0, 0], 128))
        .unwrap();
    assert_eq!(
        p.events[1..],
        [Event::Publish {
            stream_id: 1,
            name: "test".into(),
            query: Some("key=abc".into()),
            kind: "live".into()
        }]
    );
    assert!(p.replies().is_empty());

    p.s.accept_publish(1);
    let r = p.replies();
    assert_eq!(r[0].type_id, 4);
    assert_eq!(r[0].payload, [0, 0, 0, 0, 0, 1]);
    let st = amf(&r[1]);
    assert_eq!(r[1].stream_id, 1);
    assert_eq!(st[0], s("onStatus"));
    assert_eq!(
        st[3].get("code").and_then(Value::as_str),
        Some("NetStream.Publish.Start")
    );
    // A second accept does nothing.
    p.s.accept_publish(1);
    assert!(p.s.output().is_empty());

    p.events.clear();
    let meta = command(&[
        s("@setDataFrame"),
        s("onMetaData"),
        Value::EcmaArray(vec![("width".into(), n(320.0))]),
    ]);
    p.feed(&message(4, 0, 18, 1, &meta, 128)).unwrap();
    p.feed(&message(6, 0, 9, 1, &[0x17, 0, 0, 0, 0], 128))
        .unwrap();
    p.feed(&message(4, 0, 8, 1, &[0xaf, 0, 0x12, 0x10], 128))
        .unwrap();
    // Media for another message stream is dropped.
    p.feed(&message(4, 0, 8, 7, &[0xaf, 1], 128)).unwrap();
    assert_eq!(
        p.events,
        vec![
            Event::Metadata {
                stream_id: 1,
                values: vec![("width".into(), n(320.0))]
            },
            Event::Video {
                stream_id: 1,
                timestamp_ms: 0,
                data: Bytes::from_static(&[0x17, 0, 0, 0, 0])
            },
            Event::Audio {
                stream_id: 1,
                timestamp_ms: 0,
                data: Bytes::from_static(&[0xaf, 0, 0x12, 0x10])
            },
        ]
    );
    p.events.clear();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("FCUnpublish"), n(6.0), Value::Null, s("test")]),
        128,
    ))
    .unwrap();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("deleteStream"), n(7.0), Value::Null, n(1.0)]),
        128,
    ))
    .unwrap();
    assert_eq!(p.events, vec![Event::Unpublish { stream_id: 1 }]);
    // Media after unpublish is dropped.
    p.events.clear();
    p.feed(&message(6, 40, 9, 1, &[0x27, 1, 0, 0, 0], 128))
        .unwrap();
    assert!(p.events.is_empty());
}

#[test]
fn close_stream_unpublishes() {
    let mut p = Peer::publishing();
    p.feed(&message(
        8,
        0,
        20,
        1,
        &command(&[s("closeStream"), n(0.0), Value::Null]),
        128,
    ))
    .unwrap();
    assert_eq!(p.events, vec![Event::Unpublish { stream_id: 1 }]);
}

#[test]
fn reject_publish_sends_error_status() {
    let mut p = Peer::handshaken(SessionConfig::default());
    p.feed(&message(3, 0, 20, 0, &connect_cmd("live"), 128))
        .unwrap();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("createStream"), n(2.0), Value::Null]),
        128,
    ))
    .unwrap();
    p.feed(&message(
        4,
        0,
        20,
        1,
        &command(&[s("publish"), n(3.0), Value::Null, s("../etc")]),
        128,
    ))
    .unwrap();
    p.replies();
    p.s.reject_publish(1, "NetStream.Publish.BadName", "bad stream key");
    let r = p.replies();
    assert_eq!(r.len(), 1);
    let st = amf(&r[0]);
    assert_eq!(st[3].get("level"), Some(&s("error")));
    assert_eq!(st[3].get("code"), Some(&s("NetStream.Publish.BadName")));
    assert_eq!(st[3].get("description"), Some(&s("bad stream key")));
    p.s.accept_publish(1); // too late: no-op
    assert!(p.s.output().is_empty());
    p.events.clear();
    p.feed(&message(6, 0, 9, 1, &[0x17, 0, 0, 0, 0], 128))
        .unwrap();
    assert!(p.events.is_empty());
}

#[test]
fn play_is_refused() {
    let mut p = Peer::handshaken(SessionConfig::default());
    p.feed(&message(3, 0, 20, 0, &connect_cmd("live"), 128))
        .unwrap();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("createStream"), n(2.0), Value::Null]),
        128,
    ))
    .unwrap();
    p.replies();
    let e = p
        .feed(&message(
            8,
            0,
            20,
            1,
            &command(&[s("play"), n(0.0), Value::Null, s("test")]),
            4096,
        ))
        .unwrap_err();
    assert_eq!(e, RtmpError::PlayNotSupported { stream_id: 1 });
    let r = p.replies();
    let st = amf(&r[0]);
    assert_eq!(st[3].get("code"), Some(&s("NetStream.Play.Failed")));
}

#[test]
fn checkbw_unknown_and_amf3_commands() {
    let mut p = Peer::handshaken(SessionConfig::default());
    // connect as an AMF3 command message (format byte 0, then AMF0).
    let mut body = vec![0u8];
    body.extend_from_slice(&connect_cmd("live"));
    p.feed(&message(3, 0, 17, 0, &body, 128)).unwrap();
    assert!(matches!(&p.events[0], Event::Connect { app, .. } if app == "live"));
    p.replies();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("_checkbw"), n(2.0), Value::Null]),
        128,
    ))
    .unwrap();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("getStreamLength"), n(3.0), Value::Null]),
        128,
    ))
    .unwrap();
    p.feed(&message(
        3,
        0,
        20,
        0,
        &command(&[s("someNotify"), n(0.0), Value::Null]),
        128,
    ))
    .unwrap();
    let r = p.replies();
    assert_eq!(r.len(), 2);
    assert_eq!(amf(&r[0])[..2], [s("_result"), n(2.0)]);
    let e = amf(&r[1]);
    assert_eq!(e[..2], [s("_error"), n(3.0)]);
    assert_eq!(e[3].get("code"), Some(&s("NetConnection.Call.Failed")));
}

#[test]
fn command_errors() {
    let mut p = Peer::handshaken(SessionConfig::default());
    let e = p
        .feed(&message(
            3,
            0,
            20,
            0,
            &command(&[s("createStream"), n(2.0)]),
            128,
        ))
        .unwrap_err();
    assert_eq!(e.to_string(), "command \"createStream\" before connect");

    let mut p = Peer::handshaken(SessionConfig::default());
    let e = p
        .feed(&message(
            3,
            0,
            20,
            0,
            &command(&[s("connect"), n(1.0), Value::Null]),
            128,
        ))
        .unwrap_err();
    assert_eq!(e.to_string(), "connect without app");

    let mut p = Peer::handshaken(SessionConfig::default());
    let e = p
        .feed(&message(3, 0, 20, 0, &command(&[n(1.0)]), 128))
        .unwrap_err();
    assert_eq!(e.to_string(), "command without a name");

    let mut p = Peer::handshaken(SessionConfig::default());
    p.feed(&message(3, 0, 20, 0, &connect_cmd("live"), 128))
        .unwrap();
    let e = p
        .feed(&message(
            4,
            0,
            20,
            5,
            &command(&[s("publish"), n(0.0), Value::Null, s("x")]),
            4096,
        ))
        .unwrap_err();
    assert_eq!(e.to_string(), "publish on stream 5 that was not created");

    let mut p = Peer::handshaken(SessionConfig::default());
    let e = p
        .feed(&message(3, 0, 20, 0, &[0x02, 0x00, 0x10, b'a'], 128))
        .unwrap_err();
    assert_eq!(e.to_string(), "bad AMF0 in command: AMF0 data truncated");
}

#[test]
fn stream_count_bound() {
    let mut p = Peer::handshaken(SessionConfig::default());
    p.feed(&message(3, 0, 20, 0, &connect_cmd("live"), 128))
        .unwrap();
    let create = message(
        3,
        0,
        20,
        0,
        &command(&[s("createStream"), n(2.0), Value::Null]),
        4096,
    );
    for _ in 0..MAX_STREAMS {
        p.feed(&create).unwrap();
    }
    let e = p.feed(&create).unwrap_err();
    assert_eq!(e, RtmpError::TooManyStreams { limit: MAX_STREAMS });
}

// ---------- chunk stream ----------

#[test]
fn chunk_formats_0_to_3() {
    let mut p = Peer::publishing();
    let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut b = Vec::new();
    // fmt 0 at t=1000, 300 bytes over three chunks.
    b.extend(message(6, 1000, 9, 1, &body, 128));
    // fmt 1: delta 33, new length.
    b.extend(header(1, 6, 33, 100, 9, 0, false));
    b.extend_from_slice(&body[..100]);
    // fmt 2: delta 34, same length and type.
    b.extend(header(2, 6, 34, 0, 0, 0, false));
    b.extend_from_slice(&body[..100]);
    // fmt 3 as a new message: repeats delta 34.
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&body[..100]);
    // fmt 1 with a body spanning a fmt 3 continuation.
    b.extend(header(1, 6, 10, 200, 9, 0, false));
    b.extend_from_slice(&body[..128]);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&body[128..200]);
    p.feed(&b).unwrap();
    assert_eq!(media_ts(&p.events), vec![1000, 1033, 1067, 1101, 1111]);
    let lens: Vec<usize> = p
        .events
        .iter()
        .map(|e| match e {
            Event::Video { data, .. } => data.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(lens, vec![300, 100, 100, 100, 200]);
    assert!(matches!(&p.events[0], Event::Video { data, .. } if data[..] == body[..]));

    // Same bytes fed one at a time give the same events.
    let mut q = Peer::publishing();
    for byte in &b {
        q.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(q.events, p.events);
}

#[test]
fn fmt3_after_fmt0_uses_its_timestamp_as_delta() {
    let mut p = Peer::publishing();
    let mut b = message(6, 40, 9, 1, &[0x27, 1], 128);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&[0x27, 1]);
    p.feed(&b).unwrap();
    assert_eq!(media_ts(&p.events), vec![40, 80]);
}

#[test]
fn extended_timestamps() {
    let mut p = Peer::publishing();
    let body = vec![0x27u8; 300];
    let t0 = 0x0100_0000u32; // above the 24-bit field
    let mut b = Vec::new();
    // fmt 0 with extended timestamp; fmt 3 continuations repeat it (spec form).
    b.extend(message(6, t0, 9, 1, &body, 128));
    // fmt 1 with an extended delta, continuation WITHOUT the extended field
    // (a form some senders use).
    let d = 0x0100_0000u32;
    b.extend(header(1, 6, d, 200, 9, 0, true));
    b.extend_from_slice(&body[..128]);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&body[128..200]);
    // fmt 3 new message: repeats the extended delta, with the field.
    b.extend(header(3, 6, d, 0, 0, 0, true));
    b.extend_from_slice(&body[..128]);
    b.extend(header(3, 6, d, 0, 0, 0, true));
    b.extend_from_slice(&body[128..200]);
    // Back to a small delta via fmt 2: no extended field any more.
    b.extend(header(2, 6, 5, 0, 0, 0, false));
    b.extend_from_slice(&body[..128]);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&body[128..200]);
    p.feed(&b).unwrap();
    let t0 = t0 as i64;
    let d = d as i64;
    assert_eq!(
        media_ts(&p.events),
        vec![t0, t0 + d, t0 + 2 * d, t0 + 2 * d + 5]
    );
    for e in &p.events {
        match e {
            Event::Video { data, .. } => assert!(data.iter().all(|&x| x == 0x27)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn timestamps_unwrap_across_2_pow_32() {
    let mut p = Peer::publishing();
    let mut b = Vec::new();
    b.extend(message(6, 0xFFFF_FF00, 9, 1, &[0x27, 1], 128));
    b.extend(message(4, 0xFFFF_FFF0, 8, 1, &[0xaf, 1], 128));
    b.extend(header(1, 6, 0x200, 2, 9, 0, false)); // wraps to 0x100
    b.extend_from_slice(&[0x27, 1]);
    b.extend(message(4, 0x0000_0110, 8, 1, &[0xaf, 1], 128));
    b.extend(message(6, 0x0000_0120, 9, 1, &[0x27, 1], 128));
    p.feed(&b).unwrap();
    let w = 1i64 << 32;
    assert_eq!(
        media_ts(&p.events),
        vec![w - 0x100, w - 0x10, w + 0x100, w + 0x110, w + 0x120]
    );
}

#[test]
fn interleaved_chunk_streams() {
    let mut p = Peer::publishing();
    let video: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
    let audio: Vec<u8> = (0..200u32).map(|i| (i * 3) as u8).collect();
    let mut b = Vec::new();
    b.extend(header(0, 6, 100, 400, 9, 1, false));
    b.extend_from_slice(&video[..128]);
    b.extend(header(0, 4, 90, 200, 8, 1, false));
    b.extend_from_slice(&audio[..128]);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&video[128..256]);
    b.extend(header(3, 4, 0, 0, 0, 0, false));
    b.extend_from_slice(&audio[128..]);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&video[256..384]);
    b.extend(header(3, 6, 0, 0, 0, 0, false));
    b.extend_from_slice(&video[384..]);
    p.feed(&b).unwrap();
    assert_eq!(
        p.events,
        vec![
            Event::Audio {
                stream_id: 1,
                timestamp_ms: 90,
                data: Bytes::from(audio)
            },
            Event::Video {
                stream_id: 1,
                timestamp_ms: 100,
                data: Bytes::from(video)
            },
        ]
    );
}

#[test]
fn basic_header_forms() {
    let mut p = Peer::publishing();
    let mut b = Vec::new();
    for (i, csid) in [2u32 + 8, 64, 100, 319, 320, 65599].iter().enumerate() {
        b.extend(message(
            *csid,
            i as u32 * 10,
            9,
            1,
            &[0x27, *csid as u8],
            128,
        ));
    }
    p.feed(&b).unwrap();
    assert_eq!(media_ts(&p.events), vec![0, 10, 20, 30, 40, 50]);
}

#[test]
fn peer_chunk_size_change() {
    let mut p = Peer::publishing();
    let body = vec![0x17u8; 3000];
    let mut b = message(2, 0, 1, 0, &4096u32.to_be_bytes(), 128);
    b.extend(message(6, 0, 9, 1, &body, 4096));
    // And down again to 100, mid-stream.
    b.extend(message(2, 0, 1, 0, &100u32.to_be_bytes(), 4096));
    b.extend(message(6, 40, 9, 1, &body[..250], 100));
    p.feed(&b).unwrap();
    assert_eq!(media_ts(&p.events), vec![0, 40]);
    // The largest legal value is fine (messages are bounded separately).
    p.feed(&message(2, 0, 1, 0, &0x7FFF_FFFFu32.to_be_bytes(), 100))
        .unwrap();
    p.feed(&message(6, 80, 9, 1, &body, usize::MAX)).unwrap();
    assert_eq!(media_ts(&p.events), vec![0, 40, 80]);
}

#[test]
fn bad_chunk_sizes() {
    for bad in [0u32, 0x8000_0000, 0xFFFF_FFFF] {
        let mut p = Peer::publishing();
        let e = p
            .feed(&message(2, 0, 1, 0, &bad.to_be_bytes(), 128))
            .unwrap_err();
        assert_eq!(e, RtmpError::BadChunkSize(bad));
        assert!(e
            .to_string()
            .starts_with(&format!("invalid chunk size {bad}")));
    }
    let mut p = Peer::publishing();
    let e = p.feed(&message(2, 0, 1, 0, &[0, 1], 128)).unwrap_err();
    assert_eq!(e.to_string(), "control message type 1 with bad length 2");
}

#[test]
fn abort_message() {
    let mut p = Peer::publishing();
    let body = vec![0x17u8; 300];
    let mut b = header(0, 6, 0, 300, 9, 1, false);
    b.extend_from_slice(&body[..128]);
    b.extend(message(2, 0, 2, 0, &6u32.to_be_bytes(), 128));
    // Without the abort this fmt 0 header would be an error.
    b.extend(message(6, 33, 9, 1, &body[..50], 128));
    p.feed(&b).unwrap();
    assert_eq!(p.events.len(), 1);
    assert!(
        matches!(&p.events[0], Event::Video { timestamp_ms: 33, data, .. } if data.len() == 50)
    );

    let mut q = Peer::publishing();
    let mut b = header(0, 6, 0, 300, 9, 1, false);
    b.extend_from_slice(&body[..128]);
    b.extend(message(6, 33, 9, 1, &body[..50], 128));
    assert_eq!(
        q.feed(&b).unwrap_err(),
        RtmpError::InterruptedMessage { csid: 6 }
    );
}

#[test]
fn sends_acknowledgement_after_window() {
    let mut p = Peer::publishing();
    p.feed(&message(2, 0, 5, 0, &5000u32.to_be_bytes(), 128))
        .unwrap();
    assert!(p.replies().is_empty());
    let body = vec![0x27u8; 1000];
    let mut acks = Vec::new();
    for i in 0..12 {
        p.feed(&message(6, i * 40, 9, 1, &body, 128)).unwrap();
        for m in p.replies() {
            assert_eq!(m.type_id, 3);
            acks.push((
                u32::from_be_bytes(m.payload[..4].try_into().unwrap()),
                p.s.bytes_in(),
            ));
        }
    }
    // Every ack carries the byte count (handshake included) and comes once a
    // window's worth arrived since the last one.
    let total = p.s.bytes_in();
    assert_eq!(acks.len() as u64, total / 5000, "{acks:?}");
    let mut last = 0;
    for (seq, at) in acks {
        assert_eq!(seq as u64, at);
        assert!(
            at - last >= 5000 && at - last < 5000 + 1100,
            "{at} after {last}"
        );
        last = at;
    }
}

#[test]
fn ping_request_answered() {
    let mut p = Peer::publishing();
    p.feed(&message(2, 0, 4, 0, &[0, 6, 1, 2, 3, 4], 128))
        .unwrap();
    let r = p.replies();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].type_id, &r[0].payload[..]),
        (4, &[0, 7, 1, 2, 3, 4][..])
    );
    // Other user control events, set peer bandwidth and acks need no answer.
    p.feed(&message(2, 0, 4, 0, &[0, 3, 0, 0, 0, 1, 0, 0, 0, 100], 128))
        .unwrap();
    p.feed(&message(2, 0, 6, 0, &[0, 0, 0x10, 0, 2], 128))
        .unwrap();
    p.feed(&message(2, 0, 3, 0, &[0, 0, 0x10, 0], 128)).unwrap();
    assert!(p.replies().is_empty());
}

#[test]
fn aggregate_message() {
    let mut p = Peer::publishing();
    let mut agg = Vec::new();
    for (ty, ts, body) in [(9u8, 500u32, &[0x17u8, 1][..]), (8, 510, &[0xaf, 1, 9][..])] {
        agg.push(ty);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    }
    p.feed(&message(6, 2000, 22, 1, &agg, 128)).unwrap();
    assert_eq!(media_ts(&p.events), vec![2000, 2010]);
    assert!(matches!(&p.events[1], Event::Audio { data, .. } if data[..] == [0xaf, 1, 9]));
    let e = p
        .feed(&message(6, 2000, 22, 1, &agg[..12], 128))
        .unwrap_err();
    assert_eq!(e, RtmpError::BadAggregate("truncated tag body"));
}

#[test]
fn metadata_forms() {
    let mut p = Peer::publishing();
    // Plain onMetaData with an object, as an AMF3 data message.
    let mut body = vec![0u8];
    body.extend(command(&[
        s("onMetaData"),
        Value::Object(vec![("framerate".into(), n(30.0))]),
    ]));
    p.feed(&message(4, 0, 15, 1, &body, 128)).unwrap();
    // Other data messages are ignored.
    p.feed(&message(
        4,
        0,
        18,
        1,
        &command(&[s("onTextData"), Value::Null]),
        128,
    ))
    .unwrap();
    assert_eq!(
        p.events,
        vec![Event::Metadata {
            stream_id: 1,
            values: vec![("framerate".into(), n(30.0))]
        }]
    );
    let e = p
        .feed(&message(4, 0, 18, 1, &[0x02, 0, 0x20], 128))
        .unwrap_err();
    assert!(e.to_string().starts_with("bad AMF0 in data message"));
}

// ---------- bounds ----------

#[test]
fn message_size_bound() {
    // Before a publish is accepted only command-sized messages are allowed...
    let mut p = Peer::handshaken(SessionConfig::default());
    let e = p.feed(&header(0, 6, 0, 70_000, 9, 1, false)).unwrap_err();
    assert_eq!(e.to_string(), "message length 70000 exceeds limit 65536");
    // ...afterwards the configured limit applies.
    let mut p = Peer::publishing();
    p.feed(&message(6, 0, 9, 1, &[0x17; 70_000], 128)).unwrap();
    let e = p
        .feed(&header(0, 6, 0, 0xFF_FFFF, 9, 1, false))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "message length 16777215 exceeds limit 8388608"
    );

    let cfg = SessionConfig {
        max_message_size: 1000,
        ..SessionConfig::default()
    };
    let mut p = Peer::handshaken(cfg.clone());
    p.feed(&message(6, 0, 9, 1, &[0; 1000], 128)).unwrap();
    let e = p.feed(&header(0, 6, 0, 1001, 9, 1, false)).unwrap_err();
    assert_eq!(
        e,
        RtmpError::MessageTooLarge {
            len: 1001,
            limit: 1000
        }
    );
    // fmt 1 changing the length is checked too.
    let mut p = Peer::handshaken(cfg);
    p.feed(&message(6, 0, 9, 1, &[0; 10], 128)).unwrap();
    let e = p.feed(&header(1, 6, 0, 5000, 9, 0, false)).unwrap_err();
    assert_eq!(
        e,
        RtmpError::MessageTooLarge {
            len: 5000,
            limit: 1000
        }
    );
}

#[test]
fn partial_payload_bound() {
    let cfg = SessionConfig {
        max_message_size: 1000,
        ..SessionConfig::default()
    };
    let mut p = Peer::handshaken(cfg);
    p.feed(&message(2, 0, 1, 0, &900u32.to_be_bytes(), 128))
        .unwrap();
    let mut b = Vec::new();
    for csid in 4..7 {
        b.extend(header(0, csid, 0, 1000, 9, 1, false));
        b.extend_from_slice(&[0u8; 900]);
    }
    let e = p.feed(&b).unwrap_err();
    assert_eq!(
        e.to_string(),
        "partial message payload of 2700 bytes exceeds limit 2000"
    );
}

#[test]
fn chunk_stream_count_bound() {
    let mut p = Peer::handshaken(SessionConfig::default());
    let mut b = Vec::new();
    for csid in 2..2 + MAX_CHUNK_STREAMS as u32 {
        b.extend(message(csid, 0, 9, 1, &[0x27], 128));
    }
    p.feed(&b).unwrap();
    let e = p.feed(&message(1000, 0, 9, 1, &[0x27], 128)).unwrap_err();
    assert_eq!(e.to_string(), "more than 64 chunk streams");
}

#[test]
fn chunk_stream_must_start_with_length() {
    for fmt in [2u8, 3] {
        let mut p = Peer::handshaken(SessionConfig::default());
        let e = p.feed(&header(fmt, 9, 0, 0, 0, 0, false)).unwrap_err();
        assert_eq!(e, RtmpError::MissingHeader { csid: 9, fmt });
    }
    // fmt 1 on a new chunk stream is tolerated.
    let mut p = Peer::handshaken(SessionConfig::default());
    let mut b = header(1, 9, 0, 2, 9, 0, false);
    b.extend_from_slice(&[1, 2]);
    p.feed(&b).unwrap();
}

#[test]
fn output_bound_when_peer_does_not_read() {
    let mut p = Peer::publishing();
    let ping = message(2, 0, 4, 0, &[0, 6, 0, 0, 0, 1], 128);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 10_000)
        .collect();
    let mut err = None;
    for _ in 0..100 {
        if let Err(e) = p.feed(&burst) {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("output limit reached");
    assert!(e.to_string().starts_with("unsent output of"), "{e}");
}

#[test]
fn leftover_input_stays_small() {
    let mut p = Peer::publishing();
    let body = vec![0x27u8; 5000];
    let msg = message(6, 0, 9, 1, &body, 128);
    for piece in msg.chunks(7) {
        p.feed(piece).unwrap();
        assert!(p.s.inbuf.len() <= chunk::MAX_HEADER_LEN);
    }
    assert_eq!(p.events.len(), 1);
}

// ---------- robustness ----------

/// A plausible publisher byte stream: handshake, commands, media.
fn sample_session_bytes(chunk: usize) -> Vec<u8> {
    let mut b = c0c1(&c1_bytes([0; 4]));
    b.extend_from_slice(&c1_bytes([0; 4]));
    b.extend(message(2, 0, 1, 0, &(chunk as u32).to_be_bytes(), 128));
    b.extend(message(3, 0, 20, 0, &connect_cmd("live"), chunk));
    b.extend(message(
        3,
        0,
        20,
        0,
        &command(&[s("createStream"), n(2.0), Value::Null]),
        chunk,
    ));
    b.extend(message(
        4,
        0,
        20,
        1,
        &command(&[s("publish"), n(3.0), Value::Null, s("test"), s("live")]),
        chunk,
    ));
    b.extend(message(2, 0, 5, 0, &2000u32.to_be_bytes(), chunk));
    b.extend(message(
        4,
        0,
        18,
        1,
        &command(&[
            s("@setDataFrame"),
            s("onMetaData"),
            Value::EcmaArray(vec![
                ("width".into(), n(320.0)),
                ("stereo".into(), Value::Boolean(true)),
            ]),
        ]),
        chunk,
    ));
    for i in 0..10u32 {
        b.extend(message(
            6,
            i * 33,
            9,
            1,
            &vec![0x27; 300 + i as usize * 10],
            chunk,
        ));
        b.extend(message(4, i * 23, 8, 1, &[0xaf, 1, 2, 3], chunk));
    }
    b.extend(message(2, 0, 4, 0, &[0, 6, 0, 0, 0, 9], chunk));
    b.extend(message(
        3,
        0,
        20,
        0,
        &command(&[s("FCUnpublish"), n(4.0), Value::Null, s("test")]),
        chunk,
    ));
    b
}

#[test]
fn sample_session_is_valid() {
    for chunk in [60usize, 128, 4096] {
        let b = sample_session_bytes(chunk);
        let mut s = Session::new(SessionConfig::default());
        let mut ev = Vec::new();
        s.feed(&b, &mut ev).unwrap();
        // Nothing was accepted, so media is dropped and FCUnpublish ends the pending publish.
        assert!(matches!(ev[0], Event::Connect { .. }));
        assert!(matches!(ev[1], Event::Publish { stream_id: 1, .. }));
        assert_eq!(ev[2..], [Event::Unpublish { stream_id: 1 }]);
    }
}

#[test]
fn mutated_input_never_panics() {
    let base = sample_session_bytes(128);
    let hs = 1 + 2 * PACKET_SIZE;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..3000 {
        let mut b = base.clone();
        // Mostly mutate after the handshake, where the parsers are.
        let flips = 1 + xorshift(&mut rng) % 8;
        for _ in 0..flips {
            let i = if round % 10 == 0 {
                (xorshift(&mut rng) as usize) % b.len()
            } else {
                hs + (xorshift(&mut rng) as usize) % (b.len() - hs)
            };
            b[i] = xorshift(&mut rng) as u8;
        }
        if round % 3 == 0 {
            let at = hs + (xorshift(&mut rng) as usize) % (b.len() - hs);
            let len = (xorshift(&mut rng) as usize) % 64;
            let junk: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
            b.splice(at..at, junk);
        }
        let mut s = Session::new(SessionConfig {
            max_message_size: 64 * 1024,
            ..SessionConfig::default()
        });
        let mut ev = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let n = 1 + (xorshift(&mut rng) as usize) % 700;
            let end = (pos + n).min(b.len());
            let r = s.feed(&b[pos..end], &mut ev);
            for e in ev.drain(..) {
                if let Event::Publish { stream_id, .. } = e {
                    s.accept_publish(stream_id);
                }
            }
            if r.is_err() {
                break;
            }
            let out = s.output().len();
            s.consume_output(out / 2);
            pos = end;
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = 42u64;
    for _ in 0..300 {
        let mut s = Session::new(SessionConfig::default());
        let mut ev = Vec::new();
        let mut b = c0c1(&c1_bytes([0; 4]));
        b.extend_from_slice(&c1_bytes([0; 4]));
        let _ = s.feed(&b, &mut ev);
        for _ in 0..20 {
            let len = (xorshift(&mut rng) as usize) % 512;
            let junk: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
            if s.feed(&junk, &mut ev).is_err() {
                break;
            }
        }
    }
}
