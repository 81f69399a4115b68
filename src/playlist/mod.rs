//! Playlist rendering: a pure function of a stream index snapshot and the request.
//!
//! - [`parse_query`] reads the `_HLS_msn` / `_HLS_part` / `_HLS_skip` parameters.
//! - [`blocking_state`] decides whether a blocking request can be answered now;
//!   [`held`] decides a held request each time its stream changes or its deadline passes.
//! - [`media_playlist`] renders the (LL-)HLS media playlist (fMP4, or MPEG-TS with
//!   [`Format::Ts`] / [`ts_playlist`]), [`multivariant_playlist`]
//!   the multivariant playlist, [`max_age`] the Cache-Control lifetime.
//! - [`serving`] decides what a request under a stream's tree gets (media availability,
//!   ABR groups).
//!
//! No `_HLS_*` parameter ever appears in what is rendered; all URIs are relative.

pub mod held;
mod listing;
mod media;
mod multivariant;
mod query;
mod reports;
pub mod serving;
pub mod time;

#[cfg(test)]
mod tests;

pub use listing::{streams_json, StreamSummary};
pub use media::{media_playlist, ts_playlist};
pub use multivariant::{multivariant_playlist, ts_multivariant_playlist, variants_playlist};
pub use query::{parse_query, MediaRequest, Skip};
pub use reports::{rendition_reports, RenditionReport};

use crate::store::{StreamIndex, StreamState};

/// MIME type of the stream listing.
pub const JSON_MIME: &str = "application/json";

/// MIME type of playlists.
pub const PLAYLIST_MIME: &str = "application/vnd.apple.mpegurl";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// LL-HLS: parts, preload hints, EXT-X-SERVER-CONTROL (blocking reload, delta
    /// updates). `false`: a plain live playlist. Ignored for [`Format::Ts`].
    pub low_latency: bool,
    /// Which rendition the media playlist lists.
    pub format: Format,
}

/// The segment format a media playlist lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// fMP4/CMAF segments and parts (`{msn}.m4s`, EXT-X-MAP), LL-HLS capable.
    #[default]
    Fmp4,
    /// MPEG-TS segments (`{msn}.ts`) for legacy players: VERSION 3, no EXT-X-MAP, no
    /// LL-HLS tags. Only streams with a TS rendition have one
    /// ([`StreamIndex::has_ts`]).
    Ts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Answer now.
    Ready,
    /// Hold the request until the index changes (at most 3 × TD, then 503).
    Wait,
    /// 400 with this reason.
    BadRequest(&'static str),
}

/// Parts a client may ask for ahead of the last published one (§6.2.5.2): 3 / PART-TARGET
/// when PART-TARGET < 1 s, else 3.
pub fn advance_part_limit(part_target_ms: u32) -> u64 {
    if part_target_ms > 0 && part_target_ms < 1_000 {
        (3_000 / part_target_ms as u64).max(3)
    } else {
        3
    }
}

/// Decides a blocking request: `Ready` when the requested segment (or part) exists, the
/// playlist has ENDLIST, or no `_HLS_msn` was given; `Wait` when it does not exist yet;
/// `BadRequest` when `_HLS_msn` is more than two segments past the last one or the part
/// is beyond the advance part limit. A part index past the last part of a complete
/// segment M means part 0 of M+1.
pub fn blocking_state(idx: &StreamIndex, req: &MediaRequest) -> Blocking {
    if idx.state() != StreamState::Live {
        return Blocking::Ready;
    }
    let Some(msn) = req.msn else {
        return Blocking::Ready;
    };
    let next = idx.next_msn();
    if msn > next.saturating_add(1) {
        return Blocking::BadRequest("_HLS_msn is more than two segments ahead");
    }
    let Some(part) = req.part else {
        return if msn < next {
            Blocking::Ready
        } else {
            Blocking::Wait
        };
    };
    let part = part as u64;
    if msn < next {
        return match idx.segment(msn) {
            Some(s) if part >= s.parts as u64 => {
                if msn + 1 < next || idx.part(msn + 1, 0).is_some() {
                    Blocking::Ready
                } else {
                    Blocking::Wait
                }
            }
            _ => Blocking::Ready,
        };
    }
    let have = idx.parts_of(next).count() as u64;
    if msn == next && part < have {
        return Blocking::Ready;
    }
    // How far ahead of the last published part the request is.
    let per_segment = (idx.settings().segment_target_ms as u64)
        .div_ceil(idx.part_target_ms().max(1) as u64)
        .max(1);
    let ahead = if msn == next {
        part + 1 - have
    } else {
        per_segment.saturating_sub(have) + part + 1
    };
    if ahead > advance_part_limit(idx.part_target_ms()) {
        return Blocking::BadRequest("_HLS_part is beyond the advance part limit");
    }
    Blocking::Wait
}

/// Cache-Control max-age (seconds) of a 200 playlist response (LL-HLS-CHECKLIST,
/// delivery): blocking 6 × TD, non-blocking TD / 2 (at least 1 s).
pub fn max_age(idx: &StreamIndex, blocking: bool) -> u32 {
    let td = idx.target_duration();
    if blocking {
        6 * td
    } else {
        (td / 2).max(1)
    }
}

/// Cache-Control max-age (seconds) of a playlist error response: blocking 4 × TD
/// (404), non-blocking 1 × TD.
pub fn max_age_error(idx: &StreamIndex, blocking: bool) -> u32 {
    let td = idx.target_duration();
    if blocking {
        4 * td
    } else {
        td
    }
}

/// `12.345` for microseconds: three decimals, rounded to the nearest millisecond.
pub(crate) fn secs3(us: u64) -> String {
    let ms = (us + 500) / 1_000;
    format!("{}.{:03}", ms / 1_000, ms % 1_000)
}
