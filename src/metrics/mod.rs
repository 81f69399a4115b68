//! Operating counters: what `hls_live_metrics;` exports (Prometheus text format) and what
//! the status API (`hls_live_streams;`) adds to each stream.
//!
//! The [`Table`] is plain data (`repr(C)`, `Copy`, no pointers) so that the nginx glue can
//! place one in a shared-memory zone and every worker adds to the same counters; it lives
//! across `nginx -s reload`. Everything here is pure: the glue passes the monotonic clock
//! (`now` in milliseconds) and holds the zone lock around each call.
//!
//! Streams get their own series up to [`MAX_STREAMS`]; when the table is full the entry of
//! the ended stream idle the longest is reused (its counters restart, which Prometheus
//! treats as a counter reset), and if every entry is live the newcomer is counted under
//! the stream label [`OVERFLOW_LABEL`].

mod render;
pub mod status;
#[cfg(test)]
mod tests;

pub use render::{render, CONTENT_TYPE};

/// Streams with series of their own.
pub const MAX_STREAMS: usize = 256;
/// The `stream` label of everything counted for streams beyond [`MAX_STREAMS`] (and of
/// requests for keys that were never published). Not a valid stream key.
pub const OVERFLOW_LABEL: &str = "~other";
/// Worker processes with their own `vid_worker_held_requests` series.
pub const MAX_WORKERS: usize = 64;
/// A publish that starts this soon after the previous publish of the key ended counts as
/// a reconnect.
pub const RECONNECT_WINDOW_MS: i64 = 30_000;

const KEY_CAP: usize = 64;
const ADDR_CAP: usize = 48;
const SOFTWARE_CAP: usize = 64;

/// The kinds of resource a viewer asks for (label `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Playlist,
    BlockingPlaylist,
    Part,
    Segment,
    Init,
    Multivariant,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Playlist,
        Kind::BlockingPlaylist,
        Kind::Part,
        Kind::Segment,
        Kind::Init,
        Kind::Multivariant,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Playlist => "playlist",
            Kind::BlockingPlaylist => "blocking",
            Kind::Part => "part",
            Kind::Segment => "segment",
            Kind::Init => "init",
            Kind::Multivariant => "multivariant",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Error statuses with series of their own; others count as `4xx` / `5xx`.
pub const STATUSES: [u16; 14] = [
    400, 403, 404, 405, 408, 410, 412, 416, 429, 499, 500, 502, 503, 504,
];
const STATUS_SLOTS: usize = STATUSES.len() + 2;

fn status_slot(status: u16) -> Option<usize> {
    if !(400..600).contains(&status) {
        return None;
    }
    Some(
        STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(if status < 500 {
                STATUSES.len()
            } else {
                STATUSES.len() + 1
            }),
    )
}

fn status_label(slot: usize) -> String {
    match slot {
        i if i < STATUSES.len() => STATUSES[i].to_string(),
        i if i == STATUSES.len() => "4xx".into(),
        _ => "5xx".into(),
    }
}

/// Why a publisher was refused (label `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Invalid or unauthorized stream key.
    BadKey,
    /// A codec or media format vid does not carry.
    BadCodec,
    /// Zone full, stream already published, size or rate limits.
    Limits,
    /// Anything else (protocol errors, storage errors).
    Other,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::BadKey,
        Refusal::BadCodec,
        Refusal::Limits,
        Refusal::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadKey => "bad_key",
            Refusal::BadCodec => "bad_codec",
            Refusal::Limits => "limits",
            Refusal::Other => "other",
        }
    }

    /// Classify the error an ingest connection was closed with.
    pub fn of(err: &crate::ingest::IngestError) -> Refusal {
        use crate::ingest::IngestError;
        match err {
            IngestError::Media(crate::flv::FlvError::Unsupported(_)) => Refusal::BadCodec,
            IngestError::Media(_) => Refusal::Other,
            IngestError::Refused(why) => {
                let why = why.to_ascii_lowercase();
                if why.contains("key") || why.contains("token") || why.contains("signature") {
                    Refusal::BadKey
                } else if why.contains("codec") || why.contains("unsupported") {
                    Refusal::BadCodec
                } else if why.contains("already")
                    || why.contains("no room")
                    || why.contains("limit")
                    || why.contains("too many")
                    || why.contains("too large")
                {
                    Refusal::Limits
                } else {
                    Refusal::Other
                }
            }
            IngestError::Rtmp(e) => {
                if e.to_string().to_ascii_lowercase().contains("too large") {
                    Refusal::Limits
                } else {
                    Refusal::Other
                }
            }
            IngestError::Io(_) => Refusal::Other,
        }
    }
}

/// Bytes received per second over the last few whole seconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    /// Second (monotonic ms / 1000) of `buckets[sec % N]`'s content, per bucket.
    secs: [i64; RATE_BUCKETS],
    buckets: [u64; RATE_BUCKETS],
}

const RATE_BUCKETS: usize = 6;
/// Whole seconds averaged by [`RateWindow::bits_per_second`].
pub const RATE_SECONDS: i64 = 4;

impl RateWindow {
    pub const ZERO: RateWindow = RateWindow {
        secs: [i64::MIN; RATE_BUCKETS],
        buckets: [0; RATE_BUCKETS],
    };

    pub fn add(&mut self, now_ms: i64, bytes: u64) {
        let sec = now_ms.div_euclid(1000);
        let i = sec.rem_euclid(RATE_BUCKETS as i64) as usize;
        if self.secs[i] != sec {
            self.secs[i] = sec;
            self.buckets[i] = 0;
        }
        self.buckets[i] += bytes;
    }

    /// Average bit rate over the [`RATE_SECONDS`] whole seconds before the current one.
    pub fn bits_per_second(&self, now_ms: i64) -> u64 {
        let sec = now_ms.div_euclid(1000);
        let total: u64 = (1..=RATE_SECONDS)
            .map(|d| sec - d)
            .map(|s| {
                let i = s.rem_euclid(RATE_BUCKETS as i64) as usize;
                if self.secs[i] == s {
                    self.buckets[i]
                } else {
                    0
                }
            })
            .sum();
        total * 8 / RATE_SECONDS as u64
    }
}

/// Distinct playlist clients over the last few target durations, estimated by linear
/// counting: each client hash sets one bit of a 1024-bit map per time bucket; the
/// estimate over the union of the recent buckets is `-m ln(zero bits / m)`. Exact to a
/// few percent up to about a thousand clients, bounded memory at any number.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewers {
    /// Bucket number (time / bucket width) of each map.
    epochs: [i64; VIEWER_BUCKETS],
    maps: [[u64; VIEWER_WORDS]; VIEWER_BUCKETS],
}

const VIEWER_BUCKETS: usize = 4;
const VIEWER_WORDS: usize = 16;
const VIEWER_BITS: usize = VIEWER_WORDS * 64;
/// Target durations a viewer estimate covers (the current bucket plus the previous ones).
pub const VIEWER_WINDOW_TDS: i64 = 3;

impl Viewers {
    pub const ZERO: Viewers = Viewers {
        epochs: [i64::MIN; VIEWER_BUCKETS],
        maps: [[0; VIEWER_WORDS]; VIEWER_BUCKETS],
    };

    /// Note a playlist request of client `hash`; buckets are `td_ms` wide.
    pub fn note(&mut self, now_ms: i64, td_ms: i64, hash: u64) {
        let e = now_ms.div_euclid(td_ms.max(1000));
        let i = e.rem_euclid(VIEWER_BUCKETS as i64) as usize;
        if self.epochs[i] != e {
            self.epochs[i] = e;
            self.maps[i] = [0; VIEWER_WORDS];
        }
        let bit = (mix(hash) % VIEWER_BITS as u64) as usize;
        self.maps[i][bit / 64] |= 1 << (bit % 64);
    }

    /// Estimated distinct clients over the current bucket and the
    /// `VIEWER_WINDOW_TDS - 1` before it.
    pub fn estimate(&self, now_ms: i64, td_ms: i64) -> u64 {
        let e = now_ms.div_euclid(td_ms.max(1000));
        let mut union = [0u64; VIEWER_WORDS];
        for d in 0..VIEWER_WINDOW_TDS {
            let want = e - d;
            let i = want.rem_euclid(VIEWER_BUCKETS as i64) as usize;
            if self.epochs[i] == want {
                for (u, w) in union.iter_mut().zip(self.maps[i].iter()) {
                    *u |= w;
                }
            }
        }
        let set: u32 = union.iter().map(|w| w.count_ones()).sum();
        let zero = VIEWER_BITS as f64 - set as f64;
        if set == 0 {
            return 0;
        }
        let m = VIEWER_BITS as f64;
        let est = if zero < 1.0 {
            m * m.ln() // saturated: the largest value the map can tell
        } else {
            -m * (zero / m).ln()
        };
        est.round() as u64
    }
}

/// A 64-bit finalizer (splitmix64), so that nearby hashes spread over the map.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fixed-capacity ASCII string stored inline.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub const EMPTY: Self = Text {
        len: 0,
        bytes: [0; N],
    };

    /// Printable ASCII only (others become '?'), truncated to the capacity.
    pub fn new(s: &str) -> Self {
        let mut t = Self::EMPTY;
        for (i, b) in s.bytes().take(N.min(255)).enumerate() {
            t.bytes[i] = if (0x20..0x7f).contains(&b) { b } else { b'?' };
            t.len = i as u8 + 1;
        }
        t
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// Everything counted for one stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamCounters {
    pub key: Text<KEY_CAP>,
    /// A publisher is connected now.
    pub live: bool,
    pub ingest_bytes: u64,
    pub ingest_frames: u64,
    pub segments: u64,
    pub parts: u64,
    pub publishes: u64,
    pub reconnects: u64,
    pub requests: [u64; 6],
    pub bytes_served: u64,
    pub held_now: i64,
    pub errors: [u64; STATUS_SLOTS],
    /// Monotonic ms of the last media frame received (0: none yet).
    pub last_frame_ms: i64,
    /// Monotonic ms of the last publish start / end (0: never).
    pub publish_start_ms: i64,
    pub publish_end_ms: i64,
    /// Monotonic ms of the last change of any kind (eviction order).
    pub touched_ms: i64,
    /// Target duration last seen by a playlist request (viewer buckets), ms.
    pub td_ms: i64,
    pub rate: RateWindow,
    pub viewers: Viewers,
    pub publisher_addr: Text<ADDR_CAP>,
    pub publisher_software: Text<SOFTWARE_CAP>,
}

impl StreamCounters {
    pub const ZERO: StreamCounters = StreamCounters {
        key: Text::EMPTY,
        live: false,
        ingest_bytes: 0,
        ingest_frames: 0,
        segments: 0,
        parts: 0,
        publishes: 0,
        reconnects: 0,
        requests: [0; 6],
        bytes_served: 0,
        held_now: 0,
        errors: [0; STATUS_SLOTS],
        last_frame_ms: 0,
        publish_start_ms: 0,
        publish_end_ms: 0,
        touched_ms: 0,
        td_ms: 2000,
        rate: RateWindow::ZERO,
        viewers: Viewers::ZERO,
        publisher_addr: Text::EMPTY,
        publisher_software: Text::EMPTY,
    };

    fn in_use(&self) -> bool {
        self.key.len > 0
    }

    /// Current ingest bit rate (0 when no publisher).
    pub fn ingest_bps(&self, now_ms: i64) -> u64 {
        self.rate.bits_per_second(now_ms)
    }

    /// Seconds since the last frame, if any frame was received.
    pub fn last_frame_age_s(&self, now_ms: i64) -> Option<f64> {
        (self.last_frame_ms != 0).then(|| (now_ms - self.last_frame_ms).max(0) as f64 / 1000.0)
    }

    pub fn viewers(&self, now_ms: i64) -> u64 {
        self.viewers.estimate(now_ms, self.td_ms)
    }

    pub fn requests_of(&self, kind: Kind) -> u64 {
        self.requests[kind.index()]
    }
}

/// What one ingest connection reports since its last report (see
/// [`crate::ingest::Connection::take_stats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestDelta {
    pub bytes: u64,
    pub frames: u64,
    pub segments: u64,
    pub parts: u64,
    /// A publish was accepted in this delta.
    pub published: bool,
    /// The publish ended in this delta.
    pub unpublished: bool,
    /// Segment target duration of the publish (viewer estimate buckets), ms.
    pub segment_target_ms: u32,
}

impl IngestDelta {
    /// Count what the segmenter produced.
    pub fn add_outputs(&mut self, outputs: &[crate::segmenter::Output]) {
        for o in outputs {
            match o {
                crate::segmenter::Output::Part { .. } => self.parts += 1,
                crate::segmenter::Output::Segment { .. } => self.segments += 1,
                _ => {}
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == IngestDelta::default()
    }
}

/// Origin-wide counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Origin {
    pub rtmp_connections: u64,
    pub rtmp_refusals: [u64; 4],
    pub render_hits: u64,
    pub render_misses: u64,
    pub held_per_worker: [i64; MAX_WORKERS],
    pub whip: Whip,
}

/// WHIP (WebRTC ingest) sessions.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Whip {
    /// Offers answered (sessions started).
    pub answered: u64,
    /// Offers refused (4xx/5xx).
    pub refused: u64,
    /// Sessions ended, by reason ([`crate::whip::Closed::index`]).
    pub closed: [u64; WHIP_CLOSE_REASONS],
    /// Datagrams that belonged to no session.
    pub strays: u64,
    /// Sessions open in each worker.
    pub active_per_worker: [i64; MAX_WORKERS],
}

/// Reasons a WHIP session ends, as [`crate::whip::Closed::LABELS`] names them.
pub const WHIP_CLOSE_REASONS: usize = 5;

/// The whole shared table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Table {
    pub origin: Origin,
    pub overflow: StreamCounters,
    pub streams: [StreamCounters; MAX_STREAMS],
}

impl Table {
    pub const ZERO: Table = Table {
        origin: Origin {
            rtmp_connections: 0,
            rtmp_refusals: [0; 4],
            render_hits: 0,
            render_misses: 0,
            held_per_worker: [0; MAX_WORKERS],
            whip: Whip {
                answered: 0,
                refused: 0,
                closed: [0; WHIP_CLOSE_REASONS],
                strays: 0,
                active_per_worker: [0; MAX_WORKERS],
            },
        },
        overflow: StreamCounters::ZERO,
        streams: [StreamCounters::ZERO; MAX_STREAMS],
    };

    pub fn find(&self, key: &str) -> Option<&StreamCounters> {
        self.streams
            .iter()
            .find(|s| s.in_use() && s.key.as_str() == key)
    }

    /// The entry of a stream that has one, else the overflow entry. For viewer-side
    /// counts: requests never create entries (any URI would otherwise make one).
    pub fn entry_or_overflow(&mut self, key: &str) -> &mut StreamCounters {
        match self
            .streams
            .iter()
            .position(|s| s.in_use() && s.key.as_str() == key)
        {
            Some(i) => &mut self.streams[i],
            None => &mut self.overflow,
        }
    }

    /// The entry of `key`, made if needed (publishers only): a free entry, else the
    /// ended stream idle the longest, else the overflow entry.
    pub fn entry(&mut self, key: &str, now_ms: i64) -> &mut StreamCounters {
        if let Some(i) = self
            .streams
            .iter()
            .position(|s| s.in_use() && s.key.as_str() == key)
        {
            return &mut self.streams[i];
        }
        let free = self.streams.iter().position(|s| !s.in_use());
        let victim = free.or_else(|| {
            self.streams
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.live && s.held_now <= 0)
                .min_by_key(|(_, s)| s.touched_ms)
                .map(|(i, _)| i)
        });
        match victim {
            Some(i) => {
                let s = &mut self.streams[i];
                *s = StreamCounters::ZERO;
                s.key = Text::new(key);
                s.touched_ms = now_ms;
                s
            }
            None => &mut self.overflow,
        }
    }

    /// Add what an ingest connection publishing `key` reported.
    pub fn ingest(&mut self, key: &str, d: &IngestDelta, now_ms: i64) {
        let s = self.entry(key, now_ms);
        s.touched_ms = now_ms;
        if d.published {
            s.publishes += 1;
            if s.publish_end_ms != 0 && now_ms - s.publish_end_ms <= RECONNECT_WINDOW_MS {
                s.reconnects += 1;
            }
            s.live = true;
            s.publish_start_ms = now_ms;
            s.rate = RateWindow::ZERO;
            if d.segment_target_ms > 0 {
                s.td_ms = (d.segment_target_ms as i64).max(1000);
            }
        }
        s.ingest_bytes += d.bytes;
        s.ingest_frames += d.frames;
        s.segments += d.segments;
        s.parts += d.parts;
        if d.bytes > 0 {
            s.rate.add(now_ms, d.bytes);
        }
        if d.frames > 0 {
            s.last_frame_ms = now_ms;
        }
        if d.unpublished {
            s.live = false;
            s.publish_end_ms = now_ms;
        }
    }

    /// Record who publishes `key`.
    pub fn publisher(&mut self, key: &str, addr: &str, software: &str, now_ms: i64) {
        let s = self.entry(key, now_ms);
        s.publisher_addr = Text::new(addr);
        s.publisher_software = Text::new(software);
    }

    /// Count one finished viewer request.
    pub fn request(&mut self, key: &str, kind: Kind, status: u16, body_bytes: u64) {
        let s = self.entry_or_overflow(key);
        s.requests[kind.index()] += 1;
        s.bytes_served += body_bytes;
        if let Some(slot) = status_slot(status) {
            s.errors[slot] += 1;
        }
    }

    /// A playlist request from client `client_hash` (viewer estimate).
    pub fn viewer(&mut self, key: &str, client_hash: u64, now_ms: i64) {
        if let Some(s) = self
            .streams
            .iter_mut()
            .find(|s| s.in_use() && s.key.as_str() == key)
        {
            s.viewers.note(now_ms, s.td_ms, client_hash);
        }
    }

    /// A request of `key` starts (+1) or stops (-1) being held by `worker`.
    pub fn held(&mut self, key: &str, worker: usize, delta: i64) {
        let s = self.entry_or_overflow(key);
        s.held_now = (s.held_now + delta).max(0);
        if let Some(w) = self.origin.held_per_worker.get_mut(worker) {
            *w = (*w + delta).max(0);
        }
    }

    /// A WHIP offer was answered by `worker`: one more session open there.
    pub fn whip_answered(&mut self, worker: usize) {
        self.origin.whip.answered += 1;
        if let Some(w) = self.origin.whip.active_per_worker.get_mut(worker) {
            *w += 1;
        }
    }

    /// A WHIP session of `worker` ended for reason `reason` (an index below
    /// [`WHIP_CLOSE_REASONS`]).
    pub fn whip_closed(&mut self, worker: usize, reason: usize) {
        if let Some(c) = self.origin.whip.closed.get_mut(reason) {
            *c += 1;
        }
        if let Some(w) = self.origin.whip.active_per_worker.get_mut(worker) {
            *w = (*w - 1).max(0);
        }
    }

    /// A worker starts: it has no WHIP session (a previous worker in its slot may have
    /// died with some).
    pub fn whip_worker_started(&mut self, worker: usize) {
        if let Some(w) = self.origin.whip.active_per_worker.get_mut(worker) {
            *w = 0;
        }
    }

    pub fn refusal(&mut self, why: Refusal) {
        self.origin.rtmp_refusals[why as usize] += 1;
    }
}

/// Zone occupancy, read from the stream index zone at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneSlots {
    pub used: u64,
    pub free: u64,
}
