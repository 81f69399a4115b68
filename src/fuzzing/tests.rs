//! Every committed corpus file (`fuzz/corpus/{target}/*`) run through its target, so that
//! CI replays what the fuzzer found without the fuzzing toolchain.

use std::path::Path;

use super::{run, TARGETS};

#[test]
fn corpus_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for target in TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {target}");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            run(target, &data);
            total += 1;
        }
    }
    assert!(total >= TARGETS.len());
}

#[test]
fn ingest_seed_publishes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ingest");
    for name in ["h264", "h265"] {
        let data = std::fs::read(root.join(name)).unwrap();
        let mut index = super::MemoryIndex::new(2);
        let (_, failed) = super::ingest_into(&data, &mut index);
        assert!(!failed);
        let i = &index.slots[0];
        assert_eq!(i.key(), "k", "{name}");
        assert!(i.segments().count() >= 1, "{name}: {i:?}");
    }
}

#[test]
fn ingest_drops_bad_nal_frames_and_goes_on() {
    // The H.264 seed publish with a zero-length NAL unit and an overlong one injected
    // after the first keyframe: both frames are dropped, logged once, and the stream
    // goes on to the end.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ingest");
    let data = std::fs::read(root.join("h264")).unwrap();
    let msgs = super::parse_ingest_messages(&data[1..]);
    let zero_len: &[u8] = &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a, 0, 0, 0, 0];
    let overlong: &[u8] = &[0x27, 1, 0, 0, 0, 0, 0, 1, 0, 0x41, 0x9a];
    let mut with_bad: Vec<(u8, u16, &[u8])> = Vec::new();
    let mut good = 0;
    for (ty, delta, body) in &msgs {
        with_bad.push((*ty, *delta, body));
        if *ty == 9 {
            good += 1;
            if good == 3 {
                with_bad.push((9, 0, zero_len));
                with_bad.push((9, 0, overlong));
            }
        }
    }
    let mut input = vec![0u8];
    input.extend(super::ingest_messages(&with_bad));
    let mut index = super::MemoryIndex::new(2);
    let (log, failed) = super::ingest_into(&input, &mut index);
    assert!(!failed, "{log:?}");
    let warnings: Vec<_> = log
        .iter()
        .filter(|(l, m)| *l == crate::ingest::LogLevel::Warn && m.contains("dropped a video frame"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log:?}");
    assert!(log.iter().any(|(_, m)| m.contains("ended")), "{log:?}");
    // The same media as without the bad frames.
    let mut clean = super::MemoryIndex::new(2);
    super::ingest_into(&data, &mut clean);
    let a: Vec<_> = index.slots[0].segments().map(|s| s.duration_us).collect();
    let b: Vec<_> = clean.slots[0].segments().map(|s| s.duration_us).collect();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
