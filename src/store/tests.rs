use bytes::Bytes;

use super::index::*;
use super::*;
use crate::media::{AudioCodec, AudioConfig, VideoCodec, VideoConfig};
use crate::segmenter::Output;

pub(crate) fn vcfg() -> VideoConfig {
    VideoConfig {
        codec: VideoCodec::H264,
        record: Bytes::from_static(&[1, 0x64, 0, 0x1f]),
        nalu_length_size: 4,
        width: 1280,
        height: 720,
        frame_rate: None,
        codec_string: "avc1.64001f".into(),
    }
}

pub(crate) fn acfg() -> AudioConfig {
    AudioConfig {
        codec: AudioCodec::Aac,
        asc: Bytes::from_static(&[0x12, 0x10]),
        object_type: 2,
        sample_rate: 44_100,
        channels: 2,
        frame_samples: 1024,
        codec_string: "mp4a.40.2".into(),
    }
}

pub(crate) fn init(version: u32) -> Output {
    Output::Init {
        version,
        data: Bytes::from_static(b"init"),
        video: Some(vcfg()),
        audio: Some(acfg()),
        part_target_ms: 200,
    }
}

/// The parts and the segment of one segment: `parts` parts of `part_us`, `part_bytes`
/// bytes each, 30 frames per second of video.
pub(crate) fn segment(
    msn: u64,
    parts: u32,
    part_us: u64,
    part_bytes: usize,
    disc: bool,
    init_version: u32,
    pdt: i64,
) -> Vec<Output> {
    let mut v = Vec::new();
    for p in 0..parts {
        v.push(Output::Part {
            msn,
            part: p,
            duration_us: part_us,
            independent: p % 5 == 0,
            data: Bytes::from(vec![p as u8; part_bytes]),
            segment_pdt_ms: pdt,
        });
    }
    let dur = part_us * parts as u64;
    v.push(Output::Segment {
        msn,
        duration_us: dur,
        bytes: (part_bytes * parts as usize) as u64,
        parts,
        program_date_time_ms: pdt,
        discontinuity: disc,
        init_version,
        video_frames: (dur * 30 / 1_000_000) as u32,
        independent: true,
    });
    v
}

fn apply_all(idx: &mut StreamIndex, outs: &[Output], now: i64) {
    for o in outs {
        idx.apply(o, now);
    }
}

fn live(key: &str) -> StreamIndex {
    let mut slots = [StreamIndex::ZERO];
    Table::new(&mut slots)
        .claim(key, "/tmp/x", &StreamSettings::default(), 1, 0)
        .unwrap();
    slots[0]
}

#[test]
fn zero_index_is_a_free_slot_and_small() {
    let z = StreamIndex::default();
    assert_eq!(z.state(), StreamState::Free);
    assert_eq!(z.key(), "");
    assert_eq!(z.dir(), "");
    assert_eq!(z.generation(), 0);
    assert_eq!(z.last_msn(), None);
    assert_eq!(z.segments().count(), 0);
    let size = std::mem::size_of::<StreamIndex>();
    println!(
        "StreamIndex: {size} bytes (segments {} x {}, parts {} x {})",
        MAX_SEGMENTS,
        std::mem::size_of::<SegmentEntry>(),
        MAX_PARTS,
        std::mem::size_of::<PartEntry>()
    );
    assert!(size <= 32 * 1024, "{size}");
    assert_eq!(std::mem::align_of::<StreamIndex>(), 8);
    // A table of zeroed slots works as it is.
    let mut slots = vec![StreamIndex::ZERO; 4];
    let t = Table::new(&mut slots);
    assert!(t.find("a").is_none());
}

#[test]
fn claim_free_live_full_and_bad_input() {
    let mut slots = vec![StreamIndex::ZERO; 2];
    let mut t = Table::new(&mut slots);
    let s = StreamSettings {
        clock_numbering: false,
        ..StreamSettings::default()
    };
    let c = t.claim("cam1", "/var/lib/vid/cam1", &s, 7, 1_000).unwrap();
    assert_eq!(
        (c.first_msn, c.first_init_version, c.discontinuity),
        (0, 1, false)
    );
    let idx = t.find("cam1").unwrap();
    assert_eq!(idx.state(), StreamState::Live);
    assert_eq!(idx.dir(), "/var/lib/vid/cam1");
    assert_eq!(idx.owner(), 7);
    assert!(idx.is_writer(c.publish_id));
    assert_eq!(
        t.claim("cam1", "/d", &s, 8, 2_000),
        Err(ClaimError::AlreadyLive)
    );
    t.claim("cam2", "/d2", &s, 8, 2_000).unwrap();
    assert_eq!(t.claim("cam3", "/d3", &s, 8, 2_000), Err(ClaimError::Full));
    assert_eq!(t.claim("", "/d", &s, 8, 0), Err(ClaimError::BadKey));
    assert_eq!(t.claim("a/b", "/d", &s, 8, 0), Err(ClaimError::BadKey));
    assert_eq!(t.claim("../x", "/d", &s, 8, 0), Err(ClaimError::BadKey));
    assert_eq!(
        t.claim(&"k".repeat(65), "/d", &s, 8, 0),
        Err(ClaimError::BadKey)
    );
    assert_eq!(t.claim("ok", "", &s, 8, 0), Err(ClaimError::BadDir));
    assert_eq!(
        t.claim("ok", &"d".repeat(257), &s, 8, 0),
        Err(ClaimError::BadDir)
    );
    assert!(t.find_mut("cam2").is_some());
}

#[test]
fn republish_continues_numbering_with_discontinuity() {
    let mut slots = vec![StreamIndex::ZERO; 2];
    let mut t = Table::new(&mut slots);
    let s = StreamSettings::default();
    let c = t.claim("cam", "/d", &s, 1, 0).unwrap();
    let idx = t.find_mut("cam").unwrap();
    idx.apply(&init(c.first_init_version), 0);
    for m in 0..3 {
        apply_all(
            idx,
            &segment(m, 10, 200_000, 100, false, 1, m as i64 * 2000),
            0,
        );
    }
    // A half-done segment, then the writer goes away.
    idx.apply(
        &Output::Part {
            msn: 3,
            part: 0,
            duration_us: 200_000,
            independent: true,
            data: Bytes::from_static(b"x"),
            segment_pdt_ms: 0,
        },
        0,
    );
    let td = idx.target_duration();
    idx.end(10_000);
    assert_eq!(idx.state(), StreamState::Ended);
    // The listed parts of the unfinished segment became a short segment: no name a
    // player may have fetched is reused.
    let sealed = *idx.segment(3).expect("unfinished segment sealed");
    assert_eq!(
        (sealed.duration_us, sealed.parts, sealed.bytes),
        (200_000, 1, 1)
    );
    let old_id = c.publish_id;
    let c2 = t.claim("cam", "/d", &s, 2, 11_000).unwrap();
    assert_eq!(
        (c2.first_msn, c2.first_init_version, c2.discontinuity),
        (4, 2, true)
    );
    let idx = t.find_mut("cam").unwrap();
    assert!(!idx.is_writer(old_id));
    assert!(idx.is_writer(c2.publish_id));
    assert!(idx.pending_discontinuity());
    assert_eq!(idx.target_duration(), td, "target duration kept");
    // A stale writer's late output is ignored once the slot is ended.
    idx.end(12_000);
    let g = idx.generation();
    idx.apply(&init(9), 12_500);
    assert_eq!(idx.generation(), g);
    assert_eq!(idx.init_version(), 1);

    // A live slot whose writer stopped updating can be taken over.
    let mut slots = vec![StreamIndex::ZERO; 1];
    let mut t = Table::new(&mut slots);
    t.claim("cam", "/d", &s, 1, 0).unwrap();
    let idx = t.find_mut("cam").unwrap();
    idx.apply(&init(1), 0);
    apply_all(idx, &segment(0, 10, 200_000, 100, false, 1, 0), 100);
    assert_eq!(
        t.claim("cam", "/d", &s, 2, 100 + CLAIM_STALE_MS - 1),
        Err(ClaimError::AlreadyLive)
    );
    let c = t.claim("cam", "/d", &s, 2, 100 + CLAIM_STALE_MS).unwrap();
    assert_eq!((c.first_msn, c.discontinuity), (1, true));
}

#[test]
fn sweep_ends_stale_and_frees_expired() {
    let mut slots = vec![StreamIndex::ZERO; 2];
    let mut t = Table::new(&mut slots);
    let s = StreamSettings::default();
    t.claim("a", "/d/a", &s, 1, 0).unwrap();
    t.claim("b", "/d/b", &s, 1, 0).unwrap();
    let a = t.find_mut("a").unwrap();
    a.apply(&init(1), 0);
    for m in 0..12 {
        apply_all(
            a,
            &segment(m, 10, 200_000, 10, false, 1, 0),
            m as i64 * 2000,
        );
    }
    t.find_mut("b").unwrap().touch(25_000);
    assert!(t.sweep(28_000, 5_000).is_empty());
    assert_eq!(t.find("a").unwrap().state(), StreamState::Ended);
    assert_eq!(t.find("b").unwrap().state(), StreamState::Live);
    // Retention: the playlist duration (12 x 2 s) after the end.
    let retention = t.find("a").unwrap().availability_ms();
    assert_eq!(retention, 24_000);
    assert!(t.sweep(28_000 + retention - 1, 1_000_000).is_empty());
    assert_eq!(
        t.sweep(28_000 + retention, 1_000_000),
        vec!["/d/a".to_string()]
    );
    assert!(t.find("a").is_none());
    assert_eq!(slots[0].state(), StreamState::Free);
    // The freed slot is reusable; a new stream starts its numbering from the clock.
    let mut t = Table::new(&mut slots);
    let c = t.claim("c", "/d/c", &s, 1, 50_000).unwrap();
    assert_eq!((c.first_msn, c.first_init_version, c.slot), (500, 50, 0));
}

#[test]
fn window_media_sequence_discontinuity_sequence_and_tail() {
    let mut idx = live("w");
    idx.apply(&init(1), 0);
    let mut now = 0;
    for m in 0..20u64 {
        // A discontinuity at segment 3 and 15.
        let disc = m == 3 || m == 15;
        apply_all(&mut idx, &segment(m, 10, 200_000, 10, disc, 1, 0), now);
        now += 2_000;
    }
    let listed: Vec<u64> = idx.listed_segments().map(|s| s.msn).collect();
    assert_eq!(listed, (8..20).collect::<Vec<_>>());
    assert_eq!(idx.media_sequence(), 8);
    assert_eq!(idx.discontinuity_sequence(), 1, "segment 3 scrolled out");
    assert_eq!(idx.last_msn(), Some(19));
    assert_eq!(idx.next_msn(), 20);
    assert_eq!(idx.last_part(), Some((19, 9)));
    // The unlisted tail is kept for the availability time (24 s here).
    let tail: Vec<u64> = idx
        .segments()
        .filter(|s| !s.listed())
        .map(|s| s.msn)
        .collect();
    assert!(tail.contains(&7));
    let s7 = idx.segment(7).unwrap();
    assert!(now - s7.unlisted_ms < idx.availability_ms());
    // Parts of unlisted segments are dropped from the index.
    assert!(idx.parts().all(|p| p.msn >= 8));
    assert!(idx.has_all_parts(19));
    // Much later, the tail expires.
    idx.expire(now + 100_000);
    assert_eq!(idx.oldest_msn(), Some(8));
}

#[test]
fn target_duration_decided_by_first_segment() {
    let mut idx = live("td");
    idx.apply(&init(1), 0);
    // A 2.6 s first segment (long GOP) with a 2 s target: TD = 3.
    apply_all(&mut idx, &segment(0, 13, 200_000, 10, false, 1, 0), 0);
    assert_eq!(idx.target_duration(), 3);
    apply_all(&mut idx, &segment(1, 10, 200_000, 10, false, 1, 0), 0);
    assert_eq!(idx.target_duration(), 3, "constant afterwards");

    let mut idx = live("td2");
    assert_eq!(idx.target_duration(), 2, "provisional");
    assert!(!idx.target_duration_decided());
    idx.apply(&init(1), 0);
    apply_all(&mut idx, &segment(0, 9, 200_000, 10, false, 1, 0), 0);
    assert_eq!(idx.target_duration(), 2);
    assert!(idx.target_duration_decided());
}

#[test]
fn bit_rate_statistics() {
    let mut idx = live("br");
    idx.apply(&init(1), 0);
    // Parts only: an estimate.
    idx.apply(
        &Output::Part {
            msn: 0,
            part: 0,
            duration_us: 200_000,
            independent: true,
            data: Bytes::from(vec![0; 5_000]),
            segment_pdt_ms: 0,
        },
        0,
    );
    assert_eq!(idx.peak_bandwidth(), 200_000);
    idx.end(0);
    let mut idx = live("br");
    idx.apply(&init(1), 0);
    // 2 s segments of 250 kB (1 Mbit/s), one of 750 kB (3 Mbit/s), one of 1 s of 50 kB.
    let sizes = [250_000usize, 250_000, 750_000, 250_000];
    for (m, sz) in sizes.iter().enumerate() {
        apply_all(
            &mut idx,
            &segment(m as u64, 10, 200_000, sz / 10, false, 1, 0),
            0,
        );
    }
    assert_eq!(idx.peak_bandwidth(), 3_000_000);
    apply_all(&mut idx, &segment(4, 5, 200_000, 5_000, false, 1, 0), 0);
    assert_eq!(idx.peak_bandwidth(), 3_000_000);
    // Average: all bytes / all time.
    let total: usize = sizes.iter().sum::<usize>() + 25_000;
    assert_eq!(
        idx.average_bandwidth(),
        (total as u64 * 8) * 1_000_000 / 9_000_000
    );
    // Frame rate measured from the segments (30 frames per second).
    assert!((idx.frame_rate().unwrap() - 30.0).abs() < 1e-9);
    assert_eq!(idx.video_codec(), "avc1.64001f");
    assert_eq!(idx.audio_codec(), "mp4a.40.2");
    assert_eq!(idx.resolution(), Some((1280, 720)));
}

#[test]
fn peak_over_sets_of_short_segments() {
    // 1 s segments with TD 2: sets of 1..3 segments qualify (1–3 s).
    let mut idx = live("pk");
    idx.apply(&init(1), 0);
    let s = StreamSettings {
        window: 12,
        part_target_ms: 200,
        segment_target_ms: 2_000,
        clock_numbering: true,
    };
    assert_eq!(idx.settings(), s);
    let sizes = [100_000usize, 300_000, 100_000, 100_000];
    for (m, sz) in sizes.iter().enumerate() {
        apply_all(
            &mut idx,
            &segment(m as u64, 5, 200_000, sz / 5, false, 1, 0),
            0,
        );
    }
    // The 1 s segment of 300 kB alone: 2.4 Mbit/s.
    assert_eq!(idx.peak_bandwidth(), 2_400_000);
}

#[test]
fn init_versions_and_pending_discontinuity() {
    let mut idx = live("iv");
    idx.apply(&init(1), 0);
    assert!(!idx.pending_discontinuity());
    apply_all(&mut idx, &segment(0, 10, 200_000, 10, false, 1, 0), 0);
    idx.apply(&init(2), 0);
    assert_eq!(idx.init_version(), 2);
    assert!(idx.pending_discontinuity(), "config change mid-stream");
    apply_all(&mut idx, &segment(1, 10, 200_000, 10, true, 2, 0), 0);
    assert!(!idx.pending_discontinuity());
    assert!(idx.segment(1).unwrap().discontinuity());
}

#[test]
fn ts_rendition_flag() {
    let mut idx = live("ts");
    idx.apply(&init(1), 0);
    let ts = |msn: u64| Output::TsSegment {
        msn,
        duration_us: 2_000_000,
        data: Bytes::from_static(b"ts"),
    };
    for m in 0..4u64 {
        let mut outs = segment(m, 10, 200_000, 10, false, 1, 0);
        // TS for 0, 1 and 3, right before the segment (as the segmenter emits it).
        if m != 2 {
            outs.insert(outs.len() - 1, ts(m));
        }
        apply_all(&mut idx, &outs, 0);
    }
    let flags: Vec<bool> = idx.segments().map(|s| s.has_ts()).collect();
    assert_eq!(flags, [true, true, false, true]);
    assert!(idx.has_ts());
    let listed: Vec<u64> = idx.ts_segments().map(|s| s.msn).collect();
    assert_eq!(listed, [3], "only the consecutive newest ones");
    // TS renditions smaller than their segments do not lower the bit rates.
    assert_eq!(idx.ts_size_permille(), 1_000);
    let mut outs = segment(4, 10, 200_000, 10, false, 1, 0);
    outs.insert(
        10,
        Output::TsSegment {
            msn: 4,
            duration_us: 2_000_000,
            data: Bytes::from(vec![0x47; 2_000]),
        },
    );
    apply_all(&mut idx, &outs, 0);
    // 2 + 2 + 2 + 2000 TS bytes for 4 x 100 fMP4 bytes.
    assert_eq!(idx.ts_size_permille(), 2_006 * 1_000 / 400);
    let mv = crate::playlist::ts_multivariant_playlist(&idx, "index.m3u8");
    let plain = crate::playlist::multivariant_playlist(&idx, "index.m3u8");
    let bw = |t: &str| -> u64 {
        let v = t.split("BANDWIDTH=").nth(1).unwrap();
        v[..v.find(',').unwrap()].parse().unwrap()
    };
    assert_eq!(bw(&mv), (bw(&plain) * 5_015).div_ceil(1_000));
    // A TS output for another msn does not flag the next segment.
    apply_all(&mut idx, &[ts(9)], 0);
    apply_all(&mut idx, &segment(5, 10, 200_000, 10, false, 1, 0), 0);
    assert!(!idx.segment(5).unwrap().has_ts());
    assert!(!idx.has_ts());
    assert_eq!(idx.ts_segments().count(), 0);
}

mod files {
    use super::*;
    use std::path::PathBuf;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vid-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn names(d: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_and_sweep() {
        let d = tmpdir("sweep").join("a/b");
        let mut sd = StreamDir::create(&d).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o755);
        }
        let mut idx = live("f");
        let mut now = 0;
        let i1 = init(1);
        sd.write(&i1).unwrap();
        idx.apply(&i1, now);
        for m in 0..16u64 {
            if m == 8 {
                let i2 = init(2);
                sd.write(&i2).unwrap();
                idx.apply(&i2, now);
            }
            let iv = if m >= 8 { 2 } else { 1 };
            let mut outs = segment(m, 3, 666_666, 10, m == 8, iv, 0);
            outs.insert(
                3,
                Output::TsSegment {
                    msn: m,
                    duration_us: 2_000_000,
                    data: Bytes::from(vec![0x47; 188]),
                },
            );
            for o in outs {
                sd.write(&o).unwrap();
                idx.apply(&o, now);
            }
            sd.sweep(&idx, now).unwrap();
            now += 2_000;
        }
        // Parts are appended to their segment's file and served as ranges of it.
        let seg15 = std::fs::read(d.join("15.m4s")).unwrap();
        assert_eq!(seg15.len(), 30);
        assert_eq!(idx.part_range(15, 2), Some((20, 10)));
        assert_eq!(&seg15[20..30], &[2u8; 10][..], "part 2 lies at its range");
        assert!(!d.join("15.2.m4s").exists(), "no file per part");
        assert_eq!(std::fs::read(d.join("15.ts")).unwrap().len(), 188);
        assert_eq!(std::fs::read(d.join("init2.mp4")).unwrap(), b"init");
        // Nothing listed or within its availability is gone.
        for s in idx.segments() {
            assert!(d.join(format!("{}.m4s", s.msn)).exists(), "{}", s.msn);
            assert!(d.join(format!("{}.ts", s.msn)).exists(), "{}", s.msn);
        }
        // Window 12: 4..15 listed; 3 unlisted at 26 s, kept for 24 s.
        assert!(d.join("3.m4s").exists());
        assert!(
            d.join("init1.mp4").exists(),
            "segments 3..7 still use init1"
        );
        // Later, the tail and its parts and init1 go.
        sd.sweep(&idx, now + 30_000).unwrap();
        let left = names(&d);
        assert!(!left.contains(&"3.m4s".to_string()));
        assert!(!left.contains(&"3.ts".to_string()));
        assert!(left.contains(&"4.ts".to_string()));
        assert!(left.contains(&"4.m4s".to_string()));
        assert!(!left.iter().any(|n| n.ends_with(".tmp")));
        // A new writer adopts the files and removes stale temporaries.
        std::fs::write(d.join(".9.m4s.tmp"), b"half").unwrap();
        let sd2 = StreamDir::create(&d).unwrap();
        assert_eq!(sd2.len(), sd.len());
        assert!(!d.join(".9.m4s.tmp").exists());
        remove_stream_dir(&tmpdir("sweep")).unwrap();
        assert!(!d.exists());
        remove_stream_dir(&d).unwrap();
    }
}

#[test]
fn fresh_streams_number_media_from_the_clock() {
    // Two sessions of one key, the second after the first was freed: no media name of
    // the second can repeat one of the first, so caches never serve old media.
    let mut slots = vec![StreamIndex::ZERO; 1];
    let mut t = Table::new(&mut slots);
    let s = StreamSettings::default();
    let t0 = 1_795_759_275_123;
    let a = t.claim("cam", "/d", &s, 1, t0).unwrap();
    assert_eq!(a.first_msn, (t0 / 100) as u64);
    assert_eq!(a.first_init_version, (t0 / 1000) as u32);
    assert_eq!(t.find("cam").unwrap().next_msn(), a.first_msn);
    // However fast the first session advanced (one 1 s segment a second), it stays below.
    let later = t0 + 60_000;
    let last_msn_of_a = a.first_msn + 60;
    t.slot_mut(a.slot).unwrap().end(later);
    assert!(t.sweep(later + 3_600_000, 90_000).len() == 1, "freed");
    let b = t.claim("cam", "/d", &s, 1, later + 3_600_000).unwrap();
    assert!(b.first_msn > last_msn_of_a);
    assert!(b.first_init_version > a.first_init_version);
}

#[test]
fn high_water_bounds_lookups_and_sweeps() {
    let mut slots = vec![StreamIndex::ZERO; 64];
    let mut hw = 0usize;
    let s = StreamSettings::default();
    {
        let mut t = Table::with_high_water(&mut slots, &mut hw);
        assert!(t.find("a").is_none());
        t.claim("a", "/d/a", &s, 1, 0).unwrap();
        t.claim("b", "/d/b", &s, 1, 0).unwrap();
    }
    assert_eq!(hw, 2, "slots are taken lowest first");
    {
        let mut t = Table::with_high_water(&mut slots, &mut hw);
        assert_eq!(t.iter().count(), 2);
        assert_eq!(t.find_slot("b"), Some(1));
        // A freed slot is reused before the mark moves.
        t.slot_mut(0).unwrap().end(0);
        assert_eq!(t.sweep(10_000_000, 1_000_000).len(), 1);
        assert_eq!(t.claim("c", "/d/c", &s, 1, 10_000_000).unwrap().slot, 0);
    }
    assert_eq!(hw, 2);
    // Full when every slot up to the end is taken.
    let mut small = vec![StreamIndex::ZERO; 1];
    let mut hw = 0usize;
    let mut t = Table::with_high_water(&mut small, &mut hw);
    t.claim("x", "/d/x", &s, 1, 0).unwrap();
    assert_eq!(t.claim("y", "/d/y", &s, 1, 0), Err(ClaimError::Full));
}

#[test]
fn advertised_part_target_and_dependent_segments() {
    let mut idx = live("pt");
    assert_eq!(idx.part_target_ms(), 200);
    // The segmenter's advertised PART-TARGET (rounded up to whole frames) wins.
    let mut i = init(1);
    if let Output::Init { part_target_ms, .. } = &mut i {
        *part_target_ms = 201;
    }
    idx.apply(&i, 10);
    assert_eq!(idx.part_target_ms(), 201);
    // ...and never goes down within the publish.
    idx.apply(&init(2), 20);
    assert_eq!(idx.part_target_ms(), 201);
    apply_all(&mut idx, &segment(0, 10, 200_000, 100, false, 2, 1_000), 30);
    assert!(idx.independent_segments());
    // A segment cut without a keyframe (or with RASL pictures) is not independent:
    // EXT-X-INDEPENDENT-SEGMENTS goes while it is listed.
    let mut dep = segment(1, 10, 200_000, 100, false, 2, 3_000);
    if let Some(Output::Segment { independent, .. }) = dep.last_mut() {
        *independent = false;
    }
    apply_all(&mut idx, &dep, 40);
    assert!(!idx.segment(1).unwrap().independent());
    assert!(idx.segment(0).unwrap().independent());
    assert!(!idx.independent_segments());
    let text = crate::playlist::media_playlist(
        &idx,
        &Default::default(),
        &crate::playlist::RenderOptions {
            low_latency: true,
            ..Default::default()
        },
    );
    assert!(!text.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{text}");
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=0.201\n"),
        "{text}"
    );
    // Once it leaves the window the tag is back.
    for m in 2..20 {
        apply_all(
            &mut idx,
            &segment(m, 10, 200_000, 100, false, 2, 1_000 + 2_000 * m as i64),
            50,
        );
    }
    assert!(idx.independent_segments());
}

#[test]
fn carry_over_into_a_resized_table() {
    let s = StreamSettings::default();
    let life = crate::store::Lifecycle {
        grace_ms: 3000,
        takeover: crate::store::Takeover::Newest,
    };
    let mut old_slots = vec![StreamIndex::ZERO; 3];
    let mut old = Table::new(&mut old_slots);
    for key in ["a", "b", "c"] {
        let c = old
            .claim_with(key, "/d", &s, 1, crate::store::Now::same(0), &life)
            .unwrap();
        let idx = old.slot_mut(c.slot).unwrap();
        idx.apply(&init(c.first_init_version), 0);
        apply_all(idx, &segment(0, 10, 200_000, 100, false, 1, 0), 100);
    }
    old.find_mut("c").unwrap().end(200);
    let mut new_slots = vec![StreamIndex::ZERO; 2];
    let mut hw = 0;
    let mut new = Table::with_high_water(&mut new_slots, &mut hw);
    assert_eq!(new.carry_over(&old, 1_000), (2, 1));
    // Live ones await their publisher's reconnect for the grace period, then end.
    let a = *new.find("a").unwrap();
    assert!(a.publisher_gone());
    assert_eq!(a.next_msn(), 1);
    let c = new
        .claim_with("a", "/d", &s, 2, crate::store::Now::same(2_000), &life)
        .unwrap();
    assert_eq!((c.first_msn, c.discontinuity, c.took_over), (1, true, None));
    new.sweep_with(4_000, 90_000, &mut |_| true);
    assert_eq!(new.find("b").unwrap().state(), StreamState::Ended);
    assert_eq!(new.find("a").unwrap().state(), StreamState::Live);
    drop(new);
    assert_eq!(hw, 2);
}
