//! Recording playlists: pure text in, text out.
//!
//! A recording's `index.m3u8` is an EVENT playlist while the broadcast is live (segments
//! are only ever appended) and a VOD playlist once it ended: `EXT-X-PLAYLIST-TYPE:VOD`,
//! `EXT-X-ENDLIST`, `EXT-X-DISCONTINUITY` where the stream was interrupted and
//! `EXT-X-MAP` wherever the initialization section changes. The same parser reads it
//! back, so a recording can be continued or finished by a process that did not start it.

use std::fmt::Write;

use crate::playlist::time::format_pdt;
use crate::store::names::MediaFile;

/// One segment of a recording, as listed in its playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecSegment {
    pub msn: u64,
    pub duration_us: u64,
    pub init_version: u32,
    /// A discontinuity precedes this segment (the stream was interrupted).
    pub discontinuity: bool,
    pub pdt_ms: i64,
    /// Starts with a keyframe that needs nothing before it. The playlists carry
    /// EXT-X-INDEPENDENT-SEGMENTS only when every segment does (read back from that tag).
    pub independent: bool,
}

/// The EXT-X-INDEPENDENT-SEGMENTS line, if every segment is independent.
fn independent_tag(segments: &[RecSegment]) -> &'static str {
    if segments.iter().all(|s| s.independent) {
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
    } else {
        ""
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Live: segments are appended, no ENDLIST.
    Event,
    /// Finished: ENDLIST.
    Vod,
}

/// EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer is at most it.
pub fn target_duration(segments: &[RecSegment]) -> u64 {
    segments
        .iter()
        .map(|s| (s.duration_us + 500_000) / 1_000_000)
        .max()
        .unwrap_or(1)
        .max(1)
}

/// `d.dddddd` seconds (microsecond precision, so a VOD's total is exact).
fn secs6(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Renders a recording playlist. The first segment never carries a DISCONTINUITY
/// (nothing precedes it); a change of init section always gets an EXT-X-MAP.
pub fn render(segments: &[RecSegment], kind: Kind) -> String {
    let mut o = String::with_capacity(256 + segments.len() * 72);
    o.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", target_duration(segments));
    let _ = writeln!(
        o,
        "#EXT-X-PLAYLIST-TYPE:{}",
        match kind {
            Kind::Event => "EVENT",
            Kind::Vod => "VOD",
        }
    );
    o.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    o.push_str(independent_tag(segments));
    let mut map: Option<u32> = None;
    for (i, s) in segments.iter().enumerate() {
        let disc = i > 0 && s.discontinuity;
        if disc {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(s.init_version) {
            let _ = writeln!(
                o,
                "#EXT-X-MAP:URI=\"{}\"",
                MediaFile::Init {
                    version: s.init_version
                }
                .name()
            );
            map = Some(s.init_version);
        }
        if i == 0 || disc {
            let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{}", format_pdt(s.pdt_ms));
        }
        let _ = writeln!(o, "#EXTINF:{},", secs6(s.duration_us));
        let _ = writeln!(o, "{}", MediaFile::Segment { msn: s.msn }.name());
    }
    if kind == Kind::Vod {
        o.push_str("#EXT-X-ENDLIST\n");
    }
    o
}

/// Reads back a playlist written by [`render`]: its segments and whether it ended.
/// PDTs of segments without their own tag are derived from the previous one.
/// Unknown lines are ignored; a segment URI that is not ours makes it `None`.
pub fn parse(text: &str) -> Option<(Vec<RecSegment>, bool)> {
    let mut out = Vec::new();
    let mut init = None;
    let mut disc = false;
    let mut pdt: Option<i64> = None;
    let mut dur: Option<u64> = None;
    let mut ended = false;
    let independent = text
        .lines()
        .any(|l| l.trim() == "#EXT-X-INDEPENDENT-SEGMENTS");
    for line in text.lines() {
        let line = line.trim();
        if let Some(uri) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let name = uri.strip_suffix('"')?;
            match MediaFile::parse(name)? {
                MediaFile::Init { version } => init = Some(version),
                _ => return None,
            }
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if let Some(t) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = parse_pdt(t);
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d = d.split(',').next()?;
            dur = Some(parse_secs_us(d)?);
        } else if !line.is_empty() && !line.starts_with('#') {
            let MediaFile::Segment { msn } = MediaFile::parse(line)? else {
                return None;
            };
            let duration_us = dur.take()?;
            let pdt_ms = match pdt.take() {
                Some(p) => p,
                None => out
                    .last()
                    .map(|p: &RecSegment| p.pdt_ms + (p.duration_us / 1000) as i64)
                    .unwrap_or(0),
            };
            out.push(RecSegment {
                msn,
                duration_us,
                init_version: init?,
                discontinuity: std::mem::take(&mut disc),
                pdt_ms,
                independent,
            });
        }
    }
    Some((out, ended))
}

fn parse_secs_us(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 9 || frac.len() > 9 {
        return None;
    }
    let w: u64 = whole.parse().ok()?;
    let mut f = 0u64;
    for (i, c) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .enumerate()
    {
        if !c.is_ascii_digit() {
            return None;
        }
        let _ = i;
        f = f * 10 + u64::from(c - b'0');
    }
    Some(w * 1_000_000 + f)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (as [`format_pdt`] writes it) to Unix milliseconds.
pub fn parse_pdt(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, m as u32, d as u32) * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of `civil_from_days`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, dur_ms: u64, init: u32, disc: bool, pdt: i64) -> RecSegment {
        RecSegment {
            msn,
            duration_us: dur_ms * 1000,
            init_version: init,
            discontinuity: disc,
            pdt_ms: pdt,
            independent: true,
        }
    }

    #[test]
    fn vod_with_discontinuity_and_map() {
        let t0 = 1_764_000_000_000;
        let segs = vec![
            seg(10, 2000, 1, true, t0),
            seg(11, 2400, 1, false, t0 + 2000),
            seg(12, 1000, 2, false, t0 + 4400),
            seg(20, 2000, 3, true, t0 + 9000),
        ];
        let vod = render(&segs, Kind::Vod);
        assert_eq!(
            vod,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:00.000Z\n\
             #EXTINF:2.000000,\n10.m4s\n#EXTINF:2.400000,\n11.m4s\n\
             #EXT-X-MAP:URI=\"init2.mp4\"\n#EXTINF:1.000000,\n12.m4s\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init3.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:09.000Z\n#EXTINF:2.000000,\n20.m4s\n\
             #EXT-X-ENDLIST\n"
        );
        let event = render(&segs, Kind::Event);
        assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(!event.contains("ENDLIST"));
        // Round trip (the first segment's discontinuity is not rendered).
        let (back, ended) = parse(&vod).unwrap();
        assert!(ended);
        let mut want = segs.clone();
        want[0].discontinuity = false;
        assert_eq!(back, want);
        assert_eq!(parse(&event).unwrap(), (want, false));
    }

    #[test]
    fn independent_segments_only_when_all_are() {
        let t0 = 1_764_000_000_000;
        let mut segs = vec![
            seg(1, 2000, 1, false, t0),
            seg(2, 2000, 1, false, t0 + 2000),
        ];
        assert!(render(&segs, Kind::Vod).contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
        // A segment cut without a keyframe: the tag goes, in the DVR playlist too.
        segs[1].independent = false;
        let vod = render(&segs, Kind::Vod);
        assert!(!vod.contains("INDEPENDENT"), "{vod}");
        assert!(!render_dvr(&segs, true, "/r/", false).contains("INDEPENDENT"));
        // Read back (a resumed recording): conservative, no segment is claimed independent.
        let (back, _) = parse(&vod).unwrap();
        assert!(back.iter().all(|s| !s.independent));
        assert!(!render(&back, Kind::Vod).contains("INDEPENDENT"));
    }

    #[test]
    fn target_duration_rounds() {
        assert_eq!(target_duration(&[]), 1);
        assert_eq!(target_duration(&[seg(0, 2499, 0, false, 0)]), 2);
        assert_eq!(target_duration(&[seg(0, 2500, 0, false, 0)]), 3);
    }

    #[test]
    fn parse_rejects_foreign() {
        assert!(parse("#EXTM3U\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXTINF:1,\n../x.m4s\n").is_none());
        assert!(parse("#EXTM3U\n#EXTINF:1,\n1.m4s\n").is_none()); // no MAP
        assert!(parse("#EXTM3U\n#EXT-X-MAP:URI=\"init1.mp4\"\n1.m4s\n").is_none()); // no EXTINF
        assert_eq!(parse("#EXTM3U\n").unwrap(), (vec![], false));
    }

    #[test]
    fn pdt_round_trip() {
        for ms in [0, 951_782_400_123, 1_764_000_000_000, 4_102_444_799_999] {
            assert_eq!(parse_pdt(&format_pdt(ms)), Some(ms));
        }
        assert_eq!(parse_pdt("2025-13-01T00:00:00.000Z"), None);
        assert_eq!(parse_pdt("garbage"), None);
    }
}

/// Delta updates may skip segments that end at least this many target durations before
/// the end of the playlist (EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL).
pub const DVR_SKIP_TDS: u64 = 6;

/// A recording played as a DVR window (`hls_live_dvr`): the recording's segments with
/// URIs under `base` (the recording folder's URL, ending in `/`). While live it is an
/// EVENT playlist that announces CAN-SKIP-UNTIL = 6 × TD, and a request with
/// `_HLS_skip=YES` (`skip`) gets a delta update: the segments that end at least that long
/// before the end are replaced by EXT-X-SKIP, so a two-hour window reloads as a few
/// lines. Once ended it is the plain VOD playlist (no delta updates).
pub fn render_dvr(segments: &[RecSegment], ended: bool, base: &str, skip: bool) -> String {
    let td = target_duration(segments);
    let mut o = String::with_capacity(256 + segments.len() * 80);
    o.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{td}");
    let _ = writeln!(
        o,
        "#EXT-X-PLAYLIST-TYPE:{}",
        if ended { "VOD" } else { "EVENT" }
    );
    let skip_us = DVR_SKIP_TDS * td * 1_000_000;
    if !ended {
        let _ = writeln!(
            o,
            "#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL={}.0,HOLD-BACK={}.0",
            DVR_SKIP_TDS * td,
            3 * td
        );
    }
    o.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    o.push_str(independent_tag(segments));
    let total: u64 = segments.iter().map(|s| s.duration_us).sum();
    let mut skipped = 0;
    if skip && !ended {
        let mut end = 0u64;
        for s in segments {
            end += s.duration_us;
            if end + skip_us <= total {
                skipped += 1;
            } else {
                break;
            }
        }
        if skipped > 0 {
            let _ = writeln!(o, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
    }
    let mut map: Option<u32> = None;
    for (i, s) in segments.iter().enumerate().skip(skipped) {
        let disc = i > 0 && s.discontinuity;
        if disc {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(s.init_version) {
            let _ = writeln!(
                o,
                "#EXT-X-MAP:URI=\"{base}{}\"",
                MediaFile::Init {
                    version: s.init_version
                }
                .name()
            );
            map = Some(s.init_version);
        }
        if i == skipped || disc {
            let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{}", format_pdt(s.pdt_ms));
        }
        let _ = writeln!(o, "#EXTINF:{},", secs6(s.duration_us));
        let _ = writeln!(o, "{base}{}", MediaFile::Segment { msn: s.msn }.name());
    }
    if ended {
        o.push_str("#EXT-X-ENDLIST\n");
    }
    o
}

#[cfg(test)]
mod dvr_tests {
    use super::*;

    #[test]
    fn delta_updates() {
        let segs: Vec<RecSegment> = (0..100)
            .map(|i| RecSegment {
                msn: 1000 + i,
                duration_us: 2_000_000,
                init_version: if i < 50 { 1 } else { 2 },
                discontinuity: i == 50,
                pdt_ms: 1_764_000_000_000 + i as i64 * 2000,
                independent: true,
            })
            .collect();
        let full = render_dvr(&segs, false, "/recordings/k/ID/", false);
        assert!(full.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(full.contains("#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.0\n"));
        assert!(full.contains("#EXT-X-MAP:URI=\"/recordings/k/ID/init1.mp4\"\n"));
        assert_eq!(full.matches(".m4s\n").count(), 100);
        assert!(!full.contains("EXT-X-SKIP") && !full.contains("ENDLIST"));
        let delta = render_dvr(&segs, false, "/recordings/k/ID/", true);
        // 200 s in all; segments ending at or before 188 s are skipped: 94.
        assert!(
            delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=94\n"),
            "{delta}"
        );
        assert_eq!(delta.matches(".m4s\n").count(), 6);
        assert!(delta.contains(
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=94\n#EXT-X-MAP:URI=\"/recordings/k/ID/init2.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:03:08.000Z\n#EXTINF:2.000000,\n\
             /recordings/k/ID/1094.m4s\n"
        ));
        assert!(!delta.contains("init1.mp4"));
        assert!(delta.len() * 5 < full.len());
        let vod = render_dvr(&segs, true, "/r/", true);
        assert!(
            vod.ends_with("#EXT-X-ENDLIST\n")
                && !vod.contains("SKIP")
                && !vod.contains("SERVER-CONTROL")
        );
        assert_eq!(vod.matches(".m4s\n").count(), 100);
        // Nothing old enough: no EXT-X-SKIP.
        let short = render_dvr(&segs[..5], false, "/r/", true);
        assert!(!short.contains("EXT-X-SKIP"));
    }
}
