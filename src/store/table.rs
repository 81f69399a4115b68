//! The table of stream slots in the shared zone: claim, lookup, housekeeping.

use super::index::{StreamIndex, StreamSettings, StreamState, CLAIM_STALE_MS, MAX_DIR_LEN};
use super::names::valid_key;

/// A fresh stream's first media sequence number is the clock in these units.
pub const FRESH_MSN_PERIOD_MS: i64 = 100;

/// What a new publisher's segmenter needs from its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub first_msn: u64,
    pub first_init_version: u32,
    /// The first segment carries EXT-X-DISCONTINUITY (republish).
    pub discontinuity: bool,
    /// Identifies this publish; check it with [`StreamIndex::is_writer`] before applying.
    pub publish_id: u64,
    /// Index of the slot in the table.
    pub slot: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The key is live and its writer updated it recently.
    AlreadyLive,
    /// No free slot.
    Full,
    /// Not `[A-Za-z0-9_-]{1,64}`.
    BadKey,
    /// Empty or longer than [`MAX_DIR_LEN`] bytes.
    BadDir,
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClaimError::AlreadyLive => "stream is already being published",
            ClaimError::Full => "no free stream slot",
            ClaimError::BadKey => "invalid stream key",
            ClaimError::BadDir => "invalid stream directory",
        })
    }
}

impl std::error::Error for ClaimError {}

/// The stream slots of the shared zone.
///
/// Slots are taken lowest first and a table remembers how many it has ever used (its
/// high-water mark), so lookups and sweeps touch only those: a zone sized for thousands
/// of streams costs what the streams it really holds cost. (Each slot is ~16 KB; walking
/// every one of a 64 MB zone would touch thousands of pages per sweep.)
pub struct Table<'a> {
    slots: &'a mut [StreamIndex],
    used: usize,
    high_water: Option<&'a mut usize>,
}

impl<'a> Table<'a> {
    /// A table over every slot given.
    pub fn new(slots: &'a mut [StreamIndex]) -> Self {
        let used = slots.len();
        Table {
            slots,
            used,
            high_water: None,
        }
    }

    /// A table whose slots past `*high_water` have never been used; claims raise it.
    pub fn with_high_water(slots: &'a mut [StreamIndex], high_water: &'a mut usize) -> Self {
        let used = (*high_water).min(slots.len());
        Table {
            slots,
            used,
            high_water: Some(high_water),
        }
    }

    fn used(&self) -> &[StreamIndex] {
        &self.slots[..self.used]
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.used()
            .iter()
            .position(|s| s.state() != StreamState::Free && s.key() == key)
    }

    /// Slots in the table, used or not.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Every slot ever used, free ones included.
    pub fn iter(&self) -> impl Iterator<Item = &StreamIndex> + '_ {
        self.used().iter()
    }

    /// The slot number of `key`, if it has one.
    pub fn find_slot(&self, key: &str) -> Option<usize> {
        self.position(key)
    }

    pub fn find(&self, key: &str) -> Option<&StreamIndex> {
        self.position(key).map(|i| &self.slots[i])
    }

    pub fn find_mut(&mut self, key: &str) -> Option<&mut StreamIndex> {
        self.position(key).map(move |i| &mut self.slots[i])
    }

    pub fn slot(&self, i: usize) -> Option<&StreamIndex> {
        self.slots.get(i)
    }

    pub fn slot_mut(&mut self, i: usize) -> Option<&mut StreamIndex> {
        self.slots.get_mut(i)
    }

    /// Claims `key` for a new publisher: `Err(AlreadyLive)` if it is live and its writer
    /// updated it within [`CLAIM_STALE_MS`]; an ended (or abandoned) slot of the same key
    /// is reused and continues MEDIA-SEQUENCE with a discontinuity (republish); else a
    /// free slot; `Err(Full)` if none.
    pub fn claim(
        &mut self,
        key: &str,
        dir: &str,
        settings: &StreamSettings,
        owner: u32,
        now_ms: i64,
    ) -> Result<Claim, ClaimError> {
        if !valid_key(key) {
            return Err(ClaimError::BadKey);
        }
        if dir.is_empty() || dir.len() > MAX_DIR_LEN {
            return Err(ClaimError::BadDir);
        }
        if let Some(i) = self.position(key) {
            let s = &mut self.slots[i];
            if s.state() == StreamState::Live
                && now_ms.saturating_sub(s.updated_ms()) < CLAIM_STALE_MS
            {
                return Err(ClaimError::AlreadyLive);
            }
            s.init_republish(dir, settings, owner, now_ms);
            return Ok(Claim {
                first_msn: s.next_msn(),
                first_init_version: s.init_version().wrapping_add(1).max(1),
                discontinuity: s.pending_discontinuity(),
                publish_id: s.publish_id(),
                slot: i,
            });
        }
        let i = match self.used().iter().position(|s| s.is_free()) {
            Some(i) => i,
            None if self.used < self.slots.len() => {
                self.used += 1;
                if let Some(hw) = self.high_water.as_deref_mut() {
                    *hw = self.used;
                }
                self.used - 1
            }
            None => return Err(ClaimError::Full),
        };
        let s = &mut self.slots[i];
        // A new stream's media names never repeat an earlier session's, even one of the
        // same key long gone from this origin but still in some cache: numbering starts
        // from the clock, faster than any stream can advance it (segments are ≥ 1 s).
        let (first_msn, first_init_version) = if settings.clock_numbering {
            let now = now_ms.max(0);
            (
                (now / FRESH_MSN_PERIOD_MS) as u64,
                ((now / 1000) as u32).max(1),
            )
        } else {
            (0, 1)
        };
        s.init_fresh(key, dir, settings, owner, now_ms, first_msn);
        Ok(Claim {
            first_msn,
            first_init_version,
            discontinuity: false,
            publish_id: s.publish_id(),
            slot: i,
        })
    }

    /// Periodic housekeeping: a live slot with no update for `stale_ms` becomes ended
    /// (its writer died); an ended slot whose retention (its availability: the playlist
    /// duration, at least 3 × TD, after its end) has passed is freed. Returns the dirs
    /// of freed slots, to delete.
    pub fn sweep(&mut self, now_ms: i64, stale_ms: i64) -> Vec<String> {
        let mut dirs = Vec::new();
        for s in self.slots[..self.used].iter_mut() {
            match s.state() {
                StreamState::Free => {}
                StreamState::Live => {
                    if now_ms.saturating_sub(s.updated_ms()) >= stale_ms {
                        s.end(now_ms);
                    } else {
                        s.expire(now_ms);
                    }
                }
                StreamState::Ended => {
                    if now_ms.saturating_sub(s.ended_ms()) >= s.availability_ms() {
                        dirs.push(s.dir().to_string());
                        s.free();
                    } else {
                        s.expire(now_ms);
                    }
                }
            }
        }
        dirs
    }
}
