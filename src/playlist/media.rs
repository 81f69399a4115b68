//! The media playlist.

use std::fmt::Write;

use super::time::format_pdt;
use super::{secs3, Format, MediaRequest, RenderOptions, Skip};
use crate::store::names::MediaFile;
use crate::store::{PartEntry, SegmentEntry, StreamIndex, StreamState};

/// Renders the media playlist of `idx`.
///
/// Plain (`low_latency: false`): VERSION 6, TARGETDURATION, MEDIA-SEQUENCE,
/// DISCONTINUITY-SEQUENCE (when non-zero or a discontinuity is listed),
/// INDEPENDENT-SEGMENTS (unless a listed segment is not independent), EXT-X-MAP before
/// the first segment and wherever the init section changes, PROGRAM-DATE-TIME on every segment, EXTINF with three decimals,
/// ENDLIST once ended.
///
/// Low-latency adds PART-INF, SERVER-CONTROL (CAN-BLOCK-RELOAD, PART-HOLD-BACK = 3 ×
/// part target, HOLD-BACK = 3 × TD, CAN-SKIP-UNTIL = 6 × TD), EXT-X-PART for segments
/// that start within 3 × TD of the live edge and for the segment being built, a
/// PRELOAD-HINT for the next part (not after ENDLIST), and delta updates
/// (`_HLS_skip`, VERSION 9) that replace the segments ending more than 6 × TD before
/// the end of the playlist with EXT-X-SKIP.
///
/// [`Format::Ts`] renders [`ts_playlist`] instead (request parameters ignored).
pub fn media_playlist(idx: &StreamIndex, req: &MediaRequest, opts: &RenderOptions) -> String {
    if opts.format == Format::Ts {
        return ts_playlist(idx);
    }
    let ended = idx.state() == StreamState::Ended;
    let ll = opts.low_latency;
    let td = idx.target_duration() as u64;
    let td_us = td * 1_000_000;
    let part_target_us = idx.part_target_ms() as u64 * 1_000;

    let listed: Vec<&SegmentEntry> = idx.listed_segments().collect();
    let partial: Vec<&PartEntry> = if ended {
        Vec::new()
    } else {
        idx.parts_of(idx.next_msn()).collect()
    };

    // Delta update: skip the segments that end at least CAN-SKIP-UNTIL before the end.
    let skip_until_us = 6 * td_us;
    let total_us: u64 = listed.iter().map(|s| s.duration_us).sum();
    let mut skipped = 0usize;
    if ll && !ended && req.skip != Skip::No {
        let mut end = 0u64;
        for s in &listed {
            end += s.duration_us;
            if total_us - end >= skip_until_us {
                skipped += 1;
            } else {
                break;
            }
        }
    }

    let mut o = String::with_capacity(256 + listed.len() * 96 + partial.len() * 64);
    o.push_str("#EXTM3U\n");
    let version = if skipped > 0 { 9 } else { 6 };
    let _ = writeln!(o, "#EXT-X-VERSION:{version}");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{td}");
    if ll {
        let _ = writeln!(
            o,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},HOLD-BACK={},PART-HOLD-BACK={}",
            secs3(skip_until_us),
            secs3(3 * td_us),
            secs3(3 * part_target_us)
        );
        let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={}", secs3(part_target_us));
    }
    let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", idx.media_sequence());
    let any_disc = listed.iter().any(|s| s.discontinuity())
        || (!partial.is_empty() && idx.pending_discontinuity());
    if idx.discontinuity_sequence() > 0 || any_disc {
        let _ = writeln!(
            o,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            idx.discontinuity_sequence()
        );
    }
    if idx.independent_segments() {
        o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    if skipped > 0 {
        let _ = writeln!(o, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }

    // Parts are listed for segments starting within 3 x TD of the live edge.
    let edge_us = total_us + partial.iter().map(|p| p.duration_us as u64).sum::<u64>();
    let parts_from_us = edge_us.saturating_sub(3 * td_us);

    let mut map: Option<u32> = None;
    let mut start_us = 0u64;
    for (i, s) in listed.iter().enumerate() {
        let seg_start = start_us;
        start_us += s.duration_us;
        if i < skipped {
            continue;
        }
        if s.discontinuity() {
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
        let _ = writeln!(
            o,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_pdt(s.program_date_time_ms)
        );
        if ll && seg_start >= parts_from_us && idx.has_all_parts(s.msn) {
            for p in idx.parts_of(s.msn) {
                write_part(&mut o, p);
            }
        }
        let _ = writeln!(o, "#EXTINF:{},", secs3(s.duration_us));
        let _ = writeln!(o, "{}", MediaFile::Segment { msn: s.msn }.name());
    }

    if ll && !ended {
        if !partial.is_empty() {
            if idx.pending_discontinuity() {
                o.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(idx.init_version()) {
                let _ = writeln!(
                    o,
                    "#EXT-X-MAP:URI=\"{}\"",
                    MediaFile::Init {
                        version: idx.init_version()
                    }
                    .name()
                );
            }
            // The segment being built is dated like it will be once complete.
            let _ = writeln!(
                o,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_pdt(idx.building_pdt_ms())
            );
            for p in &partial {
                write_part(&mut o, p);
            }
        }
        if let Some((msn, part)) = idx.next_part() {
            let _ = writeln!(
                o,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                MediaFile::Part { msn, part }.name()
            );
        }
    }
    if ended {
        o.push_str("#EXT-X-ENDLIST\n");
    }
    o
}

/// The MPEG-TS media playlist: the listed segments that have a TS rendition
/// ([`StreamIndex::ts_segments`]; with TS on for an H.264/AAC stream, all of them), with
/// the same TARGETDURATION, MEDIA-SEQUENCE, DISCONTINUITY-SEQUENCE, discontinuities,
/// PROGRAM-DATE-TIME and EXTINF as the fMP4 playlist. VERSION 3 (decimal EXTINF), no
/// EXT-X-MAP, no LL-HLS tags, `{msn}.ts` URIs, ENDLIST once ended.
///
/// Callers answer 404 instead when [`StreamIndex::has_ts`] is false.
pub fn ts_playlist(idx: &StreamIndex) -> String {
    let segments: Vec<&SegmentEntry> = idx.ts_segments().collect();
    let first = segments.first().map_or(idx.next_msn(), |s| s.msn);
    // Discontinuities of listed segments left out count as removed ones.
    let skipped_disc = idx
        .listed_segments()
        .take_while(|s| s.msn < first)
        .filter(|s| s.discontinuity())
        .count() as u64;
    let dsn = idx.discontinuity_sequence() + skipped_disc;
    let media_sequence = if segments.is_empty() {
        idx.media_sequence()
    } else {
        first
    };

    let mut o = String::with_capacity(160 + segments.len() * 80);
    o.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", idx.target_duration());
    let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
    if dsn > 0 || segments.iter().any(|s| s.discontinuity()) {
        let _ = writeln!(o, "#EXT-X-DISCONTINUITY-SEQUENCE:{dsn}");
    }
    if segments.iter().all(|s| s.independent()) {
        o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for s in &segments {
        if s.discontinuity() {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(
            o,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_pdt(s.program_date_time_ms)
        );
        let _ = writeln!(o, "#EXTINF:{},", secs3(s.duration_us));
        let _ = writeln!(o, "{}", MediaFile::TsSegment { msn: s.msn }.name());
    }
    if idx.state() == StreamState::Ended {
        o.push_str("#EXT-X-ENDLIST\n");
    }
    o
}

fn write_part(o: &mut String, p: &PartEntry) {
    let _ = write!(
        o,
        "#EXT-X-PART:DURATION={},URI=\"{}\"",
        secs3(p.duration_us as u64),
        MediaFile::Part {
            msn: p.msn,
            part: p.part
        }
        .name()
    );
    if p.independent() {
        o.push_str(",INDEPENDENT=YES");
    }
    o.push('\n');
}
