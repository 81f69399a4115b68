use super::status::{json_string, status_json, StreamStatus};
use super::*;

fn table() -> Box<Table> {
    Box::new(Table::ZERO)
}

fn published(bytes: u64, frames: u64) -> IngestDelta {
    IngestDelta {
        bytes,
        frames,
        published: true,
        ..IngestDelta::default()
    }
}

#[test]
fn rate_window_averages_whole_seconds() {
    let mut r = RateWindow::ZERO;
    // 125,000 bytes per second = 1 Mbit/s, for 10 s.
    for ms in (0..10_000).step_by(100) {
        r.add(ms, 12_500);
    }
    assert_eq!(r.bits_per_second(10_000), 1_000_000);
    // The current (partial) second does not count; old seconds drop out.
    assert_eq!(r.bits_per_second(10_999), 1_000_000);
    assert_eq!(r.bits_per_second(12_000), 500_000);
    assert_eq!(r.bits_per_second(60_000), 0);
}

#[test]
fn viewers_estimate_distinct_clients() {
    let mut v = Viewers::ZERO;
    for c in 0..200u64 {
        // every client asks many times
        for t in 0..5 {
            v.note(1000 + t * 300, 2000, c);
        }
    }
    let e = v.estimate(2500, 2000);
    assert!((190..=210).contains(&e), "estimate {e}");
    // Same client, many requests: one viewer.
    let mut one = Viewers::ZERO;
    for t in 0..100 {
        one.note(t * 50, 2000, 42);
    }
    assert_eq!(one.estimate(5000, 2000), 1);
    // Three target durations later nobody is left.
    assert_eq!(v.estimate(2500 + 4 * 2000, 2000), 0);
}

#[test]
fn viewers_estimate_is_bounded() {
    let mut v = Viewers::ZERO;
    for c in 0..100_000u64 {
        v.note(0, 2000, c);
    }
    let e = v.estimate(0, 2000);
    assert!(e >= 5000, "saturated estimate {e}");
}

#[test]
fn ingest_counts_and_reconnects() {
    let mut t = table();
    t.ingest("demo", &published(1000, 10), 1_000);
    t.ingest(
        "demo",
        &IngestDelta {
            bytes: 500,
            frames: 5,
            segments: 1,
            parts: 10,
            ..Default::default()
        },
        2_000,
    );
    let s = t.find("demo").unwrap();
    assert!(s.live);
    assert_eq!(
        (s.ingest_bytes, s.ingest_frames, s.segments, s.parts),
        (1500, 15, 1, 10)
    );
    assert_eq!((s.publishes, s.reconnects), (1, 0));
    assert_eq!(s.last_frame_age_s(2_500), Some(0.5));
    t.ingest(
        "demo",
        &IngestDelta {
            unpublished: true,
            ..Default::default()
        },
        3_000,
    );
    assert!(!t.find("demo").unwrap().live);
    // Back within the reconnect window: a reconnect; much later: only a publish.
    t.ingest("demo", &published(1, 1), 3_000 + RECONNECT_WINDOW_MS);
    t.ingest(
        "demo",
        &IngestDelta {
            unpublished: true,
            ..Default::default()
        },
        40_000,
    );
    t.ingest("demo", &published(1, 1), 40_001 + RECONNECT_WINDOW_MS);
    let s = t.find("demo").unwrap();
    assert_eq!((s.publishes, s.reconnects), (3, 1));
    // Counters never went down.
    assert_eq!(s.ingest_bytes, 1502);
}

#[test]
fn requests_never_create_entries() {
    let mut t = table();
    t.request("nosuch", Kind::Playlist, 404, 0);
    assert!(t.find("nosuch").is_none());
    assert_eq!(t.overflow.requests_of(Kind::Playlist), 1);
    assert_eq!(t.overflow.errors[2], 1); // 404
    t.ingest("live1", &published(1, 1), 0);
    t.request("live1", Kind::Part, 200, 1234);
    t.request("live1", Kind::BlockingPlaylist, 503, 0);
    t.request("live1", Kind::Segment, 418, 0);
    let s = t.find("live1").unwrap();
    assert_eq!(s.requests_of(Kind::Part), 1);
    assert_eq!(s.requests_of(Kind::BlockingPlaylist), 1);
    assert_eq!(s.bytes_served, 1234);
    assert_eq!(
        s.errors[STATUSES.iter().position(|&x| x == 503).unwrap()],
        1
    );
    assert_eq!(s.errors[STATUSES.len()], 1); // 418 → "4xx"
}

#[test]
fn full_table_reuses_ended_then_overflows() {
    let mut t = table();
    for i in 0..MAX_STREAMS {
        t.ingest(&format!("s{i}"), &published(1, 1), i as i64);
    }
    // All live: a newcomer is counted under the overflow entry.
    t.ingest("late", &published(7, 1), 10_000);
    assert!(t.find("late").is_none());
    assert_eq!(t.overflow.ingest_bytes, 7);
    // s5 ends: the next newcomer takes its entry, counters from zero.
    t.ingest(
        "s5",
        &IngestDelta {
            unpublished: true,
            ..Default::default()
        },
        20_000,
    );
    t.ingest("later", &published(3, 1), 30_000);
    assert!(t.find("s5").is_none());
    assert_eq!(t.find("later").unwrap().ingest_bytes, 3);
}

#[test]
fn held_gauges_per_stream_and_worker() {
    let mut t = table();
    t.ingest("a", &published(1, 1), 0);
    t.held("a", 1, 1);
    t.held("a", 1, 1);
    t.held("a", 0, 1);
    assert_eq!(t.find("a").unwrap().held_now, 3);
    assert_eq!(t.origin.held_per_worker[..2], [1, 2]);
    t.held("a", 1, -1);
    t.held("a", 1, -1);
    t.held("a", 1, -1); // never below zero
    assert_eq!(t.origin.held_per_worker[1], 0);
    assert_eq!(t.find("a").unwrap().held_now, 0);
    // Out-of-range workers only count per stream.
    t.held("a", MAX_WORKERS + 3, 1);
    assert_eq!(t.find("a").unwrap().held_now, 1);
}

#[test]
fn refusal_reasons() {
    use crate::ingest::IngestError;
    let r = |s: &str| Refusal::of(&IngestError::Refused(s.into()));
    assert_eq!(r("invalid stream key \"a b\""), Refusal::BadKey);
    assert_eq!(
        r("stream \"x\" is already being published"),
        Refusal::Limits
    );
    assert_eq!(r("no room for another stream in the zone"), Refusal::Limits);
    assert_eq!(
        Refusal::of(&IngestError::Media(crate::flv::FlvError::Unsupported(
            "video codec 7".into()
        ))),
        Refusal::BadCodec
    );
    assert_eq!(r("storage broke"), Refusal::Other);
}

fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut p = l.split(' ');
            (p.next().unwrap().into(), p.next().unwrap().into())
        })
        .collect()
}

#[test]
fn render_follows_the_naming_rules() {
    let mut t = table();
    t.ingest("demo", &published(125_000, 30), 5_000);
    t.request("demo", Kind::Playlist, 200, 900);
    t.request("demo", Kind::Part, 404, 0);
    t.request("ghost", Kind::Init, 404, 0);
    t.origin.render_hits = 3;
    t.origin.render_misses = 1;
    let text = render(&t, 6_500, Some(ZoneSlots { used: 1, free: 9 }), 2);
    let fams = families(&text);
    assert!(!fams.is_empty());
    for (name, kind) in &fams {
        assert!(name.starts_with("vid_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} {kind}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
    }
    // Every sample belongs to a declared family, and every value is a number.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(fams.iter().any(|(n, _)| n == name), "{l}");
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
    assert!(text.contains("vid_stream_ingest_bytes_total{stream=\"demo\"} 125000\n"));
    assert!(text.contains("vid_http_requests_total{stream=\"demo\",kind=\"playlist\"} 1\n"));
    assert!(text.contains("vid_http_error_responses_total{stream=\"demo\",status=\"404\"} 1\n"));
    assert!(text.contains("vid_http_requests_total{stream=\"~other\",kind=\"init\"} 1\n"));
    assert!(text.contains("vid_stream_last_frame_age_seconds{stream=\"demo\"} 1.500\n"));
    assert!(text.contains("vid_zone_slots{state=\"free\"} 9\n"));
    assert!(text.contains("vid_render_cache_hit_ratio 0.7500\n"));
    assert!(text.contains("vid_worker_held_requests{worker=\"1\"} 0\n"));
}

#[test]
fn render_without_streams() {
    let text = render(&Table::ZERO, 0, None, 1);
    assert!(text.contains("# TYPE vid_stream_live gauge"));
    assert!(!text.contains("{stream=\""));
    assert!(!text.contains("vid_zone_slots"));
}

#[test]
fn text_is_bounded_and_printable() {
    let t = Text::<8>::new("abc\ndefghijkl");
    assert_eq!(t.as_str(), "abc?defg");
    assert_eq!(
        json_string("FMLE/3.0 \"x\"\\"),
        "\"FMLE/3.0 \\\"x\\\"\\\\\""
    );
    assert_eq!(json_string(""), "null");
}

#[test]
fn status_json_adds_state_and_status() {
    let summary = crate::playlist::StreamSummary {
        key: "demo".into(),
        live: true,
        video_codec: "avc1.64001f".into(),
        audio_codec: String::new(),
        resolution: Some((640, 360)),
        frame_rate: Some(25.0),
        bandwidth: 1,
        average_bandwidth: 1,
        started_ms: 1_795_000_000_000,
        target_duration: 2,
        part_target_ms: 200,
    };
    let st = StreamStatus {
        ingest_bitrate: 800_000,
        last_frame_age: Some(0.04),
        viewers: 3,
        publisher_address: "127.0.0.1".into(),
        publisher_software: "FMLE/3.0 (compatible; Lavf59.27.100)".into(),
        publishes: 1,
        reconnects: 0,
    };
    let j = status_json(vec![(summary, st)]);
    assert!(
        j.starts_with("{\"streams\":[{\"key\":\"demo\",\"live\":true,"),
        "{j}"
    );
    assert!(j.ends_with(",\"state\":\"live\",\"status\":{\"ingest_bitrate\":800000,\"last_frame_age\":0.040,\"viewers\":3,\"publisher\":{\"address\":\"127.0.0.1\",\"software\":\"FMLE/3.0 (compatible; Lavf59.27.100)\"},\"publishes\":1,\"reconnects\":0}}]}"), "{j}");
    assert_eq!(status_json(Vec::new()), "{\"streams\":[]}");
}

#[test]
fn whip_sessions_open_and_closed_by_reason() {
    let mut t = table();
    t.whip_answered(0);
    t.whip_answered(1);
    t.whip_answered(1);
    t.whip_closed(1, crate::whip::Closed::Ended.index());
    t.whip_closed(0, crate::whip::Closed::Idle.index());
    t.whip_closed(0, crate::whip::Closed::Idle.index()); // never below zero
    t.origin.whip.refused += 2;
    t.origin.whip.strays += 7;
    let text = render::render(&t, 0, None, 2);
    for line in [
        "vid_whip_sessions_total 3",
        "vid_whip_sessions 1",
        "vid_whip_refusals_total 2",
        "vid_whip_stray_datagrams_total 7",
        "vid_whip_sessions_closed_total{reason=\"ended\"} 1",
        "vid_whip_sessions_closed_total{reason=\"idle\"} 2",
        "vid_whip_sessions_closed_total{reason=\"handshake_timeout\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // A restarted worker's slot starts from zero sessions.
    t.whip_worker_started(1);
    assert_eq!(t.origin.whip.active_per_worker[..2], [0, 0]);
}
