//! The vid edge (`hls_live_edge`): one origin fetch per object per edge, and every other
//! viewer of that object answered the moment the fetch completes, in any worker.
//!
//! Plain logic, no nginx:
//! - [`canonical_query`]: the LL-HLS query exactly as `nginx-conf/edge.conf` normalises it
//!   (`_HLS_msn`, `_HLS_part`, `_HLS_skip`, in that order, leading zeros dropped, anything
//!   else dropped, malformed or repeated → 400);
//! - [`Slot`] and the in-flight table's state machine ([`acquire`], [`finish`], [`check`])
//!   over a slice of slots that the nginx glue keeps in a shared-memory zone;
//! - [`Verdict`]: what a held request does next.

#[cfg(test)]
mod tests;

/// Longest cache key (normalised URI + canonical query) the table holds; longer keys are
/// served without coalescing.
pub const MAX_KEY: usize = 232;

/// Slots looked at from a key's home slot (open addressing, linear probing).
pub const PROBE: usize = 32;

/// A finished fetch stands for this long: requests that arrive meanwhile go straight to
/// the cache; a later one starts a new (coalesced) fetch, which is normally a cache hit.
pub const LINGER_MS: i64 = 1000;

/// The LL-HLS parameters of a query, canonical, without the `?`: `""` when there are none.
/// `Err(())` for a query the origin answers 400 (a parameter without a value, a value that
/// is not a number without sign of at most 19 significant digits, an `_HLS_skip` other than
/// `YES`/`v2`, a parameter given twice).
#[allow(clippy::result_unit_err)]
pub fn canonical_query(args: &[u8]) -> Result<String, ()> {
    let mut msn: Option<&[u8]> = None;
    let mut part: Option<&[u8]> = None;
    let mut skip: Option<&[u8]> = None;
    if !args.is_empty() {
        for p in args.split(|&b| b == b'&') {
            let (name, value) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], Some(&p[i + 1..])),
                None => (p, None),
            };
            let field = match name {
                b"_HLS_msn" => &mut msn,
                b"_HLS_part" => &mut part,
                b"_HLS_skip" => &mut skip,
                _ => continue,
            };
            let Some(value) = value else { return Err(()) };
            if field.is_some() {
                return Err(());
            }
            let ok = if name == b"_HLS_skip" {
                value == b"YES" || value == b"v2"
            } else {
                number(value).is_some()
            };
            if !ok {
                return Err(());
            }
            *field = Some(value);
        }
    }
    let mut out = String::new();
    for (name, v) in [("_HLS_msn", msn), ("_HLS_part", part)] {
        if let Some(v) = v.and_then(number) {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(v);
        }
    }
    if let Some(v) = skip {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str("_HLS_skip=");
        out.push_str(if v == b"YES" { "YES" } else { "v2" });
    }
    Ok(out)
}

/// Digits without leading zeros (at least one digit), at most 19 of them.
fn number(v: &[u8]) -> Option<&str> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let z = v
        .iter()
        .take_while(|&&b| b == b'0')
        .count()
        .min(v.len() - 1);
    let d = &v[z..];
    (d.len() <= 19).then(|| core::str::from_utf8(d).unwrap_or("0"))
}

/// The cache key: the normalised URI and the canonical query.
pub fn cache_key(uri: &[u8], query: &str) -> Vec<u8> {
    let mut k = uri.to_vec();
    if !query.is_empty() {
        k.push(b'?');
        k.extend_from_slice(query.as_bytes());
    }
    k
}

/// FNV-1a, 64 bits.
pub fn hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

pub const EMPTY: u32 = 0;
pub const FETCHING: u32 = 1;
pub const DONE: u32 = 2;

/// One entry of the in-flight table (lives in shared memory: plain old data).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Slot {
    pub hash: u64,
    /// Bumped by every new fetch of this slot: a held request waits for one generation.
    pub gen: u32,
    /// [`EMPTY`], [`FETCHING`] or [`DONE`].
    pub state: u32,
    /// Monotonic ms: when the fetch started ([`FETCHING`]) or ended ([`DONE`]).
    pub since_ms: i64,
    /// [`DONE`]: the HTTP status of the fetch; 0 = abandoned (nobody answered).
    pub status: u16,
    pub key_len: u16,
    pub key: [u8; MAX_KEY],
}

impl Slot {
    pub const ZERO: Slot = Slot {
        hash: 0,
        gen: 0,
        state: EMPTY,
        since_ms: 0,
        status: 0,
        key_len: 0,
        key: [0; MAX_KEY],
    };

    fn is(&self, key: &[u8], h: u64) -> bool {
        self.state != EMPTY && self.hash == h && &self.key[..self.key_len as usize] == key
    }

    /// May be taken for another key.
    fn free(&self, now: i64, stale_ms: i64) -> bool {
        match self.state {
            EMPTY => true,
            DONE => now - self.since_ms > LINGER_MS,
            _ => now - self.since_ms > stale_ms,
        }
    }

    fn start(&mut self, key: &[u8], h: u64, now: i64) -> Acquire {
        if !self.is(key, h) {
            self.hash = h;
            self.key_len = key.len() as u16;
            self.key[..key.len()].copy_from_slice(key);
        }
        self.gen = self.gen.wrapping_add(1);
        self.state = FETCHING;
        self.since_ms = now;
        self.status = 0;
        Acquire::Fetch { gen: self.gen }
    }
}

/// What a request for a key does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Start the fetch of this generation (and wait for it like the others).
    Fetch { gen: u32 },
    /// Wait for the fetch of this generation, which another request runs.
    Wait { gen: u32 },
    /// The object was just fetched: serve it from the cache.
    Serve,
    /// No room in the table (or the key is too long): serve without coalescing.
    Bypass,
}

/// Find or claim the slot for `key` (index into `slots` returned with the decision).
/// `stale_ms`: a fetch running longer than this is taken as lost (its worker died).
pub fn acquire(slots: &mut [Slot], key: &[u8], now: i64, stale_ms: i64) -> (usize, Acquire) {
    let n = slots.len();
    if n == 0 || key.len() > MAX_KEY {
        return (0, Acquire::Bypass);
    }
    let h = hash(key);
    let home = (h % n as u64) as usize;
    let mut free = None;
    for i in 0..PROBE.min(n) {
        let at = (home + i) % n;
        let s = &mut slots[at];
        if s.is(key, h) {
            let a = match s.state {
                FETCHING if now - s.since_ms <= stale_ms => Acquire::Wait { gen: s.gen },
                DONE if now - s.since_ms <= LINGER_MS && ok(s.status) => Acquire::Serve,
                // Lost, old, failed or abandoned: fetch again (coalesced again).
                _ => s.start(key, h, now),
            };
            return (at, a);
        }
        if free.is_none() && s.free(now, stale_ms) {
            free = Some(at);
        }
    }
    match free {
        Some(at) => (at, slots[at].start(key, h, now)),
        None => (0, Acquire::Bypass),
    }
}

/// A status whose response the edge caches (the origin gives it a lifetime), so the cache
/// can answer everybody: 2xx, 3xx, 404 and 410. Any other status (400, 5xx, …) is passed
/// to the waiters as it is; 0 (nobody answered) is not a status.
pub fn ok(status: u16) -> bool {
    (200..400).contains(&status) || status == 404 || status == 410
}

/// The fetch of generation `gen` of slot `at` ended with `status` (0 = abandoned).
/// Returns false if the slot has moved on (another fetch took it over).
pub fn finish(slots: &mut [Slot], at: usize, gen: u32, status: u16, now: i64) -> bool {
    match slots.get_mut(at) {
        Some(s) if s.gen == gen && s.state == FETCHING => {
            s.state = DONE;
            s.status = status;
            s.since_ms = now;
            true
        }
        _ => false,
    }
}

/// What a held request does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    /// The fetch is done: serve from the cache.
    Serve,
    /// The fetch failed: answer this status.
    Error(u16),
    /// The fetch was abandoned or its slot reused: decide again ([`acquire`]).
    Retry,
    /// Held past the deadline: 504.
    TimedOut,
}

/// The state of the fetch a request waits for (generation `gen` of slot `at`).
pub fn check(slots: &[Slot], at: usize, gen: u32, now: i64, deadline: i64) -> Verdict {
    let v = match slots.get(at) {
        Some(s) if s.gen == gen => match s.state {
            FETCHING => Verdict::Wait,
            DONE if ok(s.status) => Verdict::Serve,
            DONE if s.status != 0 => Verdict::Error(s.status),
            _ => Verdict::Retry,
        },
        _ => Verdict::Retry,
    };
    match v {
        Verdict::Wait | Verdict::Retry if now >= deadline => Verdict::TimedOut,
        v => v,
    }
}
