use std::fs;
use std::path::PathBuf;

use bytes::Bytes;

use super::retention::{self, Policy};
use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vid-rec-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn segment(msn: u64, init: u32, disc: bool, data: &'static [u8]) -> Output {
    Output::Segment {
        msn,
        duration_us: 2_000_000,
        bytes: data.len() as u64,
        parts: 1,
        program_date_time_ms: 1_764_000_000_000 + msn as i64 * 2000,
        discontinuity: disc,
        init_version: init,
        video_frames: 60,
        independent: true,
    }
}

#[test]
fn stamps_and_ids() {
    assert_eq!(stamp(1_764_000_000_000), "20251124T160000Z");
    assert!(valid_id("20251124T160000Z"));
    assert!(valid_id("20251124T160000Z-2"));
    assert!(!valid_id("20251124T160000Z-"));
    assert!(!valid_id("../x"));
    assert!(!valid_id("20251124X160000Z"));
    assert_eq!(id_start_ms("20251124T160000Z-3"), Some(1_764_000_000_000));
    let mut ids = vec![
        "20251124T160000Z-10",
        "20251124T160000Z-2",
        "20251124T160000Z",
    ];
    ids.sort_by_key(|a| id_order(a));
    assert_eq!(
        ids,
        [
            "20251124T160000Z",
            "20251124T160000Z-2",
            "20251124T160000Z-10"
        ]
    );
}

#[test]
fn record_link_finish_resume() {
    let base = tmp("life");
    let live = base.join("live");
    fs::create_dir_all(&live).unwrap();
    let cfg = RecordConfig {
        root: base.join("rec"),
        url_prefix: "/recordings/".into(),
    };
    fs::write(live.join("init5.mp4"), b"INIT").unwrap();
    fs::write(live.join("100.m4s"), b"AAAA").unwrap();
    fs::write(live.join("101.m4s"), b"BBBBBB").unwrap();
    let t0 = 1_764_000_000_000;
    let mut r = Recording::start(&cfg, "cam", t0).unwrap();
    assert_eq!(r.id(), "20251124T160000Z");
    // A second recording in the same second gets a suffix.
    let r2 = Recording::start(&cfg, "cam", t0 + 10).unwrap();
    assert_eq!(r2.id(), "20251124T160000Z-2");
    fs::remove_dir_all(r2.dir()).unwrap();

    assert!(!r
        .on_output(
            &live,
            &Output::TsSegment {
                msn: 100,
                duration_us: 1,
                data: Bytes::new()
            }
        )
        .unwrap());
    assert!(r.on_output(&live, &segment(100, 5, true, b"AAAA")).unwrap());
    assert!(r
        .on_output(&live, &segment(101, 5, false, b"BBBBBB"))
        .unwrap());
    // The live sweeper removes its names: the recording keeps the media.
    fs::remove_file(live.join("100.m4s")).unwrap();
    fs::remove_file(live.join("init5.mp4")).unwrap();
    assert_eq!(fs::read(r.dir().join("100.m4s")).unwrap(), b"AAAA");
    assert_eq!(fs::read(r.dir().join("init5.mp4")).unwrap(), b"INIT");
    let ev = fs::read_to_string(r.dir().join(PLAYLIST)).unwrap();
    assert!(ev.contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
    assert!(ev.contains("100.m4s") && ev.contains("101.m4s"));
    assert!(!ev.contains("DISCONTINUITY"));
    assert_eq!(
        Recording::latest_unfinished(&cfg, "cam").as_deref(),
        Some("20251124T160000Z")
    );

    // The broadcast continues after an interruption: same recording, a discontinuity.
    let id = r.id().to_string();
    drop(r);
    let mut r = Recording::resume(&cfg, "cam", &id).unwrap();
    fs::write(live.join("init6.mp4"), b"INIT6").unwrap();
    fs::write(live.join("200.m4s"), b"CC").unwrap();
    assert!(r.on_output(&live, &segment(200, 6, false, b"CC")).unwrap());
    let s = r.finish(t0 + 60_000).unwrap();
    assert_eq!(s.segments, 3);
    assert_eq!(s.bytes, 12);
    assert_eq!(s.duration_ms, 6000);
    assert_eq!(s.discontinuities, 1);
    assert_eq!(s.id, "cam/20251124T160000Z");
    assert_eq!(s.url, "/recordings/cam/20251124T160000Z/index.m3u8");
    let vod = fs::read_to_string(r.dir().join(PLAYLIST)).unwrap();
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    assert!(vod.ends_with("#EXT-X-ENDLIST\n"));
    assert!(vod.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init6.mp4\""));
    let info = fs::read_to_string(r.dir().join(INFO)).unwrap();
    assert_eq!(json_int(&info, "ended_ms"), Some(t0 + 60_000));
    assert_eq!(json_int(&info, "segments"), Some(3));
    assert_eq!(Recording::latest_unfinished(&cfg, "cam"), None);
    assert!(Recording::resume(&cfg, "cam", &id).is_err());
    // A republish within the grace period after a lost connection continues the finished
    // recording: it is live (EVENT, no ENDLIST) again at once.
    assert_eq!(
        Recording::latest_continuable(&cfg, "cam", 201).as_deref(),
        Some(id.as_str())
    );
    // Not the stream it recorded (or not right after it): a new recording instead.
    assert_eq!(Recording::latest_continuable(&cfg, "cam", 250), None);
    assert_eq!(Recording::latest_continuable(&cfg, "cam", 150), None);
    let mut r = Recording::reopen(&cfg, "cam", &id, true).unwrap();
    let ev = fs::read_to_string(r.dir().join(PLAYLIST)).unwrap();
    assert!(ev.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !ev.contains("ENDLIST"));
    assert_eq!(
        json_int(&fs::read_to_string(r.dir().join(INFO)).unwrap(), "ended_ms"),
        None
    );
    fs::write(live.join("201.m4s"), b"DD").unwrap();
    assert!(r.on_output(&live, &segment(201, 6, false, b"DD")).unwrap());
    let s = r.finish(t0 + 90_000).unwrap();
    assert_eq!((s.segments, s.discontinuities), (4, 2));
    assert!(Recording::resume(&cfg, "cam", "../../etc").is_err());
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn retention_two_steps() {
    let base = tmp("ret");
    let live = base.join("live");
    fs::create_dir_all(&live).unwrap();
    let cfg = RecordConfig {
        root: base.join("rec"),
        url_prefix: "/r".into(),
    };
    fs::write(live.join("init1.mp4"), b"I").unwrap();
    fs::write(live.join("1.m4s"), b"S").unwrap();
    fs::write(live.join("2.m4s"), b"T").unwrap();
    let t0 = 1_764_000_000_000;
    let mut old = Recording::start(&cfg, "a", t0).unwrap();
    old.on_output(&live, &segment(1, 1, false, b"S")).unwrap();
    old.finish(t0 + 2_000).unwrap();
    let mut new = Recording::start(&cfg, "b", t0 + 50_000).unwrap();
    new.on_output(&live, &segment(2, 1, false, b"T")).unwrap();
    new.finish(t0 + 52_000).unwrap();
    let mut live_rec = Recording::start(&cfg, "c", t0).unwrap();
    live_rec
        .on_output(&live, &segment(1, 1, false, b"S"))
        .unwrap();

    let policy = Policy {
        max_age_ms: 30_000,
        max_bytes: 0,
    };
    let now = t0 + 60_000;
    let p = retention::run(&cfg.root, &policy, now).unwrap();
    assert_eq!(p.withdrawn, vec!["a/20251124T160000Z".to_string()]);
    assert!(p.removed.is_empty());
    assert!(!old.dir().join(PLAYLIST).exists());
    assert!(
        old.dir().join("1.m4s").exists(),
        "media stay for the playlist's duration"
    );
    // Not yet: 2 s (its duration) have not passed.
    let p = retention::run(&cfg.root, &policy, now + 1_000).unwrap();
    assert!(p.withdrawn.is_empty() && p.removed.is_empty());
    let p = retention::run(&cfg.root, &policy, now + 2_000).unwrap();
    assert_eq!(p.removed, vec![old.dir().to_path_buf()]);
    assert!(!old.dir().exists());
    assert!(new.dir().join(PLAYLIST).exists());
    assert!(live_rec.dir().join(PLAYLIST).exists());
    let _ = fs::remove_dir_all(&base);
}
