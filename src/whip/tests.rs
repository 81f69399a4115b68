//! A real WebRTC publisher (a second str0m instance, ICE full, DTLS, SRTP) talks to a
//! [`Peer`] over an in-memory network with a simulated clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;
use crate::media::AudioCodec;

const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
    0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0xa4, 0x80,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

fn cfg() -> PeerConfig {
    PeerConfig {
        segment_target_ms: 2000,
        handshake_timeout_ms: 5000,
        idle_timeout_ms: 3000,
    }
}

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    video: Mid,
    audio: Mid,
    out: Vec<(SocketAddr, Vec<u8>)>,
    connected: bool,
    keyframe_requests: u32,
}

impl Client {
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(_) => return,
                Output::Transmit(t) => self.out.push((t.destination, t.contents.to_vec())),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(_) => {}
            }
        }
    }
}

fn publisher(now: Instant) -> (Client, String, str0m::change::SdpPendingOffer) {
    let mut rtc = RtcConfig::new()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(now);
    let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let audio = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let client = Client {
        rtc,
        addr,
        video,
        audio,
        out: Vec::new(),
        connected: false,
        keyframe_requests: 0,
    };
    (client, offer.to_sdp_string(), pending)
}

/// Moves datagrams both ways (dropping client→peer datagrams for which `lose` says so)
/// and runs both timers, at `now`.
fn exchange(c: &mut Client, p: &mut Peer, now: Instant, lose: &mut dyn FnMut() -> bool) {
    c.rtc.handle_input(Input::Timeout(now)).unwrap();
    c.drain();
    p.timeout(now);
    for _ in 0..10 {
        let to_peer = std::mem::take(&mut c.out);
        let to_client = p.take_transmits();
        if to_peer.is_empty() && to_client.is_empty() {
            break;
        }
        for (_, d) in to_peer {
            if lose() {
                continue;
            }
            assert!(p.accepts(now, c.addr, &d) || !p.connected());
            p.receive(now, c.addr, &d);
        }
        for (dst, d) in to_client {
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: p.local,
                    destination: dst,
                    contents: d.as_slice().try_into().unwrap(),
                },
            );
            c.rtc.handle_input(input).unwrap();
            c.drain();
        }
    }
}

fn connect(loss: bool) -> (Client, Peer, Instant) {
    let mut now = Instant::now();
    let (mut c, offer, pending) = publisher(now);
    let local: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    let (mut p, answer) = Peer::accept(&offer, local, now, cfg()).unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("10.0.0.2 7000"), "{answer}");
    c.rtc
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    c.drain();
    let _ = loss;
    for _ in 0..500 {
        now += Duration::from_millis(5);
        exchange(&mut c, &mut p, now, &mut || false);
        if c.connected && p.connected() {
            break;
        }
    }
    assert!(c.connected && p.connected(), "handshake did not complete");
    (c, p, now)
}

/// Publishes `secs` of 30 fps video (an IDR only when asked or at the start) and 20 ms
/// Opus packets; returns what the peer produced.
fn publish(c: &mut Client, p: &mut Peer, mut now: Instant, secs: u64, loss_pct: u32) -> Vec<Media> {
    let vpt = c
        .rtc
        .writer(c.video)
        .unwrap()
        .payload_params()
        .find(|pp| pp.spec().codec == Codec::H264)
        .unwrap()
        .pt();
    let apt = c
        .rtc
        .writer(c.audio)
        .unwrap()
        .payload_params()
        .find(|pp| pp.spec().codec == Codec::Opus)
        .unwrap()
        .pt();
    let mut media = Vec::new();
    let mut seed = 12345u32;
    let mut lose = move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (seed >> 16) % 100 < loss_pct
    };
    let mut answered = 0;
    for ms in 0..secs * 1000 {
        now += Duration::from_millis(1);
        if ms % 33 == 0 {
            let n = ms / 33;
            let idr = n == 0 || c.keyframe_requests > answered;
            answered = c.keyframe_requests;
            let mut au = Vec::new();
            if idr {
                for ps in [SPS, PPS] {
                    au.extend_from_slice(&[0, 0, 0, 1]);
                    au.extend_from_slice(ps);
                }
            }
            au.extend_from_slice(&[0, 0, 0, 1, if idr { 0x65 } else { 0x41 }]);
            // Big enough to be fragmented (FU-A) over several packets.
            au.extend(std::iter::repeat_n((n % 200) as u8 + 1, 3000));
            let t = MediaTime::from_90khz(n * 3000);
            c.rtc
                .writer(c.video)
                .unwrap()
                .write(vpt, now, t, au)
                .unwrap();
            c.drain();
        }
        if ms % 20 == 0 {
            let t = MediaTime::new((ms / 20) * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ);
            // TOC 0xFC: CELT fullband 20 ms, stereo, one frame.
            let pkt = vec![0xFC, 0xFF, 0xFE, (ms % 250) as u8];
            c.rtc
                .writer(c.audio)
                .unwrap()
                .write(apt, now, t, pkt)
                .unwrap();
            c.drain();
        }
        exchange(c, p, now, &mut lose);
        media.extend(p.take_media());
    }
    media
}

fn frames(media: &[Media], kind: TrackKind) -> Vec<&Frame> {
    media
        .iter()
        .filter_map(|m| match m {
            Media::Frame(f) if f.kind == kind => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn a_webrtc_publisher_becomes_h264_and_opus_frames_with_keyframes_at_the_segment_cadence() {
    let (mut c, mut p, now) = connect(false);
    let media = publish(&mut c, &mut p, now, 7, 0);
    let video_cfg = media.iter().find_map(|m| match m {
        Media::Video(v) => Some(v),
        _ => None,
    });
    let v = video_cfg.expect("video config");
    assert_eq!(
        (v.width, v.height, v.codec_string.as_str()),
        (320, 240, "avc1.42c00d")
    );
    let a = media
        .iter()
        .find_map(|m| match m {
            Media::Audio(a) => Some(a),
            _ => None,
        })
        .expect("audio config");
    assert_eq!(
        (a.codec, a.channels, a.sample_rate),
        (AudioCodec::Opus, 2, 48_000)
    );

    let video = frames(&media, TrackKind::Video);
    let audio = frames(&media, TrackKind::Audio);
    assert!(video.len() > 200, "{} video frames", video.len());
    assert!(audio.len() > 330, "{} audio frames", audio.len());
    // Every access unit whole: 4-byte length + NAL header + 3000 payload bytes.
    assert!(video.iter().all(|f| f.data.len() == 4 + 1 + 3000));
    // Frame times follow the RTP clock: 33.3 ms apart, increasing.
    for w in video.windows(2) {
        let d = w[1].dts_ms - w[0].dts_ms;
        assert!((33..=34).contains(&d), "video step {d}");
    }
    let gaps: Vec<(i64, i64)> = audio
        .windows(2)
        .filter(|w| w[1].dts_ms - w[0].dts_ms != 20)
        .map(|w| (w[0].dts_ms - audio[0].dts_ms, w[1].dts_ms - w[0].dts_ms))
        .collect();
    // Times follow the RTP clock exactly; str0m's receive buffer may let an occasional
    // packet go (seen: 2 of 350 around a keyframe burst), never more than 1%.
    let missing: i64 = gaps.iter().map(|(_, d)| d / 20 - 1).sum();
    assert!(
        gaps.iter().all(|(_, d)| d % 20 == 0 && *d > 0),
        "audio gaps (at, ms): {gaps:?}"
    );
    assert!(
        missing * 100 <= audio.len() as i64,
        "audio gaps (at, ms): {gaps:?}"
    );
    // Audio and video start together (within a frame).
    assert!((audio[0].dts_ms - video[0].dts_ms).abs() <= 40);
    // Keyframes: the first, then one per segment target (the first segment at half of it).
    let kf: Vec<i64> = video
        .iter()
        .filter(|f| f.keyframe)
        .map(|f| f.dts_ms - video[0].dts_ms)
        .collect();
    // (The request sent when DTLS completes may give a second one right after the first.)
    let cuts: Vec<i64> = kf.iter().copied().filter(|&t| t == 0 || t > 100).collect();
    assert!(cuts.len() >= 4, "keyframes at {kf:?}");
    assert!((950..=1100).contains(&cuts[1]), "keyframes at {kf:?}");
    for w in cuts.windows(2).skip(1) {
        let gap = w[1] - w[0];
        assert!((1950..=2150).contains(&gap), "keyframes at {kf:?}");
    }
    assert!(p.stats().keyframe_requests >= 3);
}

#[test]
fn packet_loss_is_survived_and_asks_for_keyframes() {
    let (mut c, mut p, now) = connect(false);
    let media = publish(&mut c, &mut p, now, 6, 2);
    let video = frames(&media, TrackKind::Video);
    assert!(video.len() > 120, "{} video frames", video.len());
    assert!(p.closed().is_none());
    assert!(p.stats().keyframe_requests >= 3);
}

#[test]
fn a_silent_publisher_times_out_and_a_stalled_handshake_too() {
    let (mut c, mut p, mut now) = connect(false);
    let _ = &mut c;
    now += Duration::from_millis(3100);
    p.timeout(now);
    assert_eq!(p.closed(), Some(&Closed::Idle));

    let start = Instant::now();
    let (_c, offer, _pending) = publisher(start);
    let (mut p, _) = Peer::accept(&offer, "10.0.0.2:7000".parse().unwrap(), start, cfg()).unwrap();
    assert!(p.next_timeout() <= start + Duration::from_millis(5000));
    p.timeout(start + Duration::from_millis(5001));
    assert_eq!(p.closed(), Some(&Closed::HandshakeTimeout));

    // An answer held back (publish callback) for 4 s: the handshake time starts when it
    // is sent.
    let (_c, offer, _pending) = publisher(start);
    let (mut p, _) = Peer::accept(&offer, "10.0.0.2:7000".parse().unwrap(), start, cfg()).unwrap();
    let sent = start + Duration::from_millis(4000);
    p.answer_sent(sent);
    p.timeout(start + Duration::from_millis(5001));
    assert_eq!(p.closed(), None);
    p.timeout(sent + Duration::from_millis(5001));
    assert_eq!(p.closed(), Some(&Closed::HandshakeTimeout));
}

#[test]
fn garbage_datagrams_are_counted_and_dropped() {
    let (mut c, mut p, now) = connect(false);
    let _ = &mut c;
    let from: SocketAddr = "10.9.9.9:1".parse().unwrap();
    for d in [
        &[][..],
        &[0xff; 10][..],
        &[0x80, 0x60, 0, 1][..],
        &[0x16; 3000][..],
    ] {
        assert!(!p.accepts(now, from, d));
        p.receive(now, c.addr, d);
    }
    assert!(p.stats().garbage >= 2, "{:?}", p.stats());
    assert!(p.closed().is_none());
}

#[test]
fn offers_are_checked() {
    let now = Instant::now();
    let local: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    let e = Peer::accept("hello", local, now, cfg()).unwrap_err();
    assert_eq!(e.status(), 400);
    let e = Peer::accept("v=0\r\nbroken", local, now, cfg()).unwrap_err();
    assert_eq!(e.status(), 406, "{e}");
    let (_c, offer, _) = publisher(now);
    let truncated = &offer[..offer.len() / 2];
    assert!(Peer::accept(truncated, local, now, cfg()).is_err());
    // Only VP8 offered.
    let vp8 = offer
        .lines()
        .filter(|l| !l.contains("H264") && !l.contains("opus"))
        .map(|l| l.replace("a=rtpmap:96 ", "a=rtpmap:96 VP8/90000 x"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let e = Peer::accept(&vp8, local, now, cfg()).unwrap_err();
    assert_eq!(e.status(), 406, "{e}");
    let big = format!("v=0\r\n{}", "a=x\r\n".repeat(20_000));
    assert_eq!(
        Peer::accept(&big, local, now, cfg()).unwrap_err().status(),
        400
    );
}

#[test]
fn session_ids_and_signalling_paths() {
    let id = format!("w3-{}", "ab12".repeat(8));
    assert_eq!(session_worker(&id), Some(3));
    for bad in [
        "w-0",
        "x3-00",
        "w3-",
        "w3-xyz",
        "w99999-0123456789abcdef0123456789abcdef",
        "w3",
    ] {
        assert_eq!(session_worker(bad), None, "{bad}");
    }
    assert_eq!(session_worker(&format!("w3-{}0", "ab12".repeat(8))), None);
    // A prefix location.
    assert_eq!(signalling_path(b"/whip/demo", b"/whip/"), "demo");
    assert_eq!(signalling_path(b"/whip/demo/w0-x", b"/whip/"), "demo/w0-x");
    assert_eq!(signalling_path(b"/whip/", b"/whip/"), "");
    assert_eq!(signalling_path(b"/whip", b"/whip"), "");
    // A regex location: the end of the URI.
    let uri = format!("/a/b/whip/demo/{id}");
    assert_eq!(
        signalling_path(uri.as_bytes(), b"~ ^/a/"),
        format!("demo/{id}")
    );
    assert_eq!(signalling_path(b"/a/b/whip/demo", b"~ whip"), "demo");
    assert_eq!(
        signalling_path(b"/a/b/whip/demo/notasession", b"~ whip"),
        "notasession"
    );
}
