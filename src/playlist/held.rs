//! Held requests: what a blocking playlist reload or a GET of the preload-hinted part
//! waits for, the decision each time its stream's index changes or its deadline passes,
//! and the cache lifetime of the error it is released with.
//!
//! The server glue keeps the requests and their timers; everything it decides about one
//! comes from here, from that stream's own index.

use super::{blocking_state, max_age_error, Blocking, MediaRequest};
use crate::store::{StreamIndex, StreamState};

/// What a held request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held<'a> {
    /// A blocking playlist reload (`_HLS_msn`, `_HLS_part`).
    Playlist(&'a MediaRequest),
    /// The preload-hinted part `msn.part`.
    Part { msn: u64, part: u32 },
}

/// The decision on a held request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep holding.
    Wait,
    /// Answer with the playlist or the part.
    Ready,
    /// 404: the stream is gone, or the awaited part will never exist.
    Gone,
    /// 503: the hold limit (3 × TD) passed.
    TimedOut,
}

/// Decide `held` against its stream's index (`None`: the stream is not in the zone) at
/// monotonic `now_ms`, with the request's `deadline_ms`.
pub fn judge(idx: Option<&StreamIndex>, held: Held, now_ms: i64, deadline_ms: i64) -> Verdict {
    let Some(idx) = idx else {
        return Verdict::Gone;
    };
    let v = match held {
        Held::Playlist(req) => match blocking_state(idx, req) {
            Blocking::Wait => Verdict::Wait,
            // Nothing is rendered before TARGETDURATION is decided.
            _ if idx.target_duration_decided() => Verdict::Ready,
            _ if idx.state() == StreamState::Live => Verdict::Wait,
            _ => Verdict::Gone,
        },
        Held::Part { msn, part } => {
            if idx.part(msn, part).is_some() {
                Verdict::Ready
            } else if idx.next_part() == Some((msn, part)) {
                Verdict::Wait
            } else {
                // The segment closed before this part, or the stream ended.
                Verdict::Gone
            }
        }
    };
    match v {
        Verdict::Wait if now_ms >= deadline_ms => Verdict::TimedOut,
        v => v,
    }
}

/// Cache-Control max-age (s) of the error a held request is released with, from its own
/// stream's index: a blocking playlist 404 4 × TD, any other error 1 × TD; 1 s when the
/// stream is not in the zone (as for any request of an unknown stream).
pub fn error_max_age(idx: Option<&StreamIndex>, held: Held, verdict: Verdict) -> u32 {
    let Some(idx) = idx else {
        return 1;
    };
    let blocking_playlist = matches!(held, Held::Playlist(_)) && verdict == Verdict::Gone;
    max_age_error(idx, blocking_playlist)
}
