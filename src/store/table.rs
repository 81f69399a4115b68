//! The table of stream slots in the shared zone: claim, lookup, housekeeping.

use super::index::{StreamIndex, StreamSettings, StreamState, CLAIM_STALE_MS, MAX_DIR_LEN};
use super::lifecycle::{self, ClaimVerdict, Lifecycle, LiveSlot, LiveVerdict, Now, SlotLife};
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
    /// The key was taken from a connected publisher (of this process id), whose writes
    /// are refused from now on.
    pub took_over: Option<u32>,
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
        let life = Lifecycle::default();
        self.claim_with(key, dir, settings, owner, Now::same(now_ms), &life)
    }

    /// [`Self::claim`] with a lifecycle policy: a key that is live is continued when its
    /// publisher is gone (grace period) or silent, taken over or refused while it is
    /// connected (see [`lifecycle::claim_verdict`]).
    pub fn claim_with(
        &mut self,
        key: &str,
        dir: &str,
        settings: &StreamSettings,
        owner: u32,
        now: Now,
        life: &Lifecycle,
    ) -> Result<Claim, ClaimError> {
        let now_ms = now.mono_ms;
        if !valid_key(key) {
            return Err(ClaimError::BadKey);
        }
        if dir.is_empty() || dir.len() > MAX_DIR_LEN {
            return Err(ClaimError::BadDir);
        }
        if let Some(i) = self.position(key) {
            let s = &mut self.slots[i];
            let life_now = if s.state() != StreamState::Live {
                SlotLife::Ended
            } else if s.publisher_gone() {
                SlotLife::Grace
            } else {
                SlotLife::Live {
                    idle_ms: now_ms.saturating_sub(s.updated_ms()),
                }
            };
            let verdict = lifecycle::claim_verdict(life_now, life.takeover, CLAIM_STALE_MS);
            let took_over = match verdict {
                ClaimVerdict::Refuse => return Err(ClaimError::AlreadyLive),
                ClaimVerdict::TakeOver => Some(s.owner()),
                ClaimVerdict::Republish => None,
            };
            s.init_republish(dir, settings, owner, now);
            s.set_lifecycle(life);
            return Ok(Claim {
                first_msn: s.next_msn(),
                first_init_version: s.init_version().wrapping_add(1).max(1),
                discontinuity: s.pending_discontinuity(),
                publish_id: s.publish_id(),
                slot: i,
                took_over,
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
            let now = now.wall_ms.max(0);
            (
                (now / FRESH_MSN_PERIOD_MS) as u64,
                ((now / 1000) as u32).max(1),
            )
        } else {
            (0, 1)
        };
        s.init_fresh(key, dir, settings, owner, now, first_msn);
        s.set_lifecycle(life);
        Ok(Claim {
            first_msn,
            first_init_version,
            discontinuity: false,
            publish_id: s.publish_id(),
            slot: i,
            took_over: None,
        })
    }

    /// Copies every stream of `old` — the table of a zone that a reload replaces with one
    /// of another size — into this one. A live stream whose publisher is connected starts
    /// its grace period here: its writer stays with the old zone (which refuses it from now
    /// on), so it reconnects and continues the stream in this one. Returns the number of
    /// streams carried over and of those that did not fit.
    pub fn carry_over(&mut self, old: &Table, now_ms: i64) -> (usize, usize) {
        let (mut carried, mut dropped) = (0, 0);
        for s in old.iter().filter(|s| !s.is_free()) {
            let free = self.used().iter().position(|s| s.is_free());
            let i = match free {
                Some(i) => i,
                None if self.used < self.slots.len() => {
                    self.used += 1;
                    if let Some(hw) = self.high_water.as_deref_mut() {
                        *hw = self.used;
                    }
                    self.used - 1
                }
                None => {
                    dropped += 1;
                    continue;
                }
            };
            self.slots[i] = *s;
            self.slots[i].disconnect(now_ms);
            carried += 1;
        }
        (carried, dropped)
    }

    /// Periodic housekeeping: a live slot with no update for `stale_ms` becomes ended
    /// (its writer died); an ended slot whose retention (its availability: the playlist
    /// duration, at least 3 × TD, after its end) has passed is freed. Returns the dirs
    /// of freed slots, to delete.
    pub fn sweep(&mut self, now_ms: i64, stale_ms: i64) -> Vec<String> {
        self.sweep_with(now_ms, stale_ms, &mut |_| true)
    }

    /// [`Self::sweep`], where `owner_alive(pid)` tells whether the process that owns a
    /// live slot still exists: a dead owner's stream starts its grace period at once
    /// (then ends, see [`lifecycle::live_verdict`]). `now_ms` is monotonic.
    pub fn sweep_with(
        &mut self,
        now_ms: i64,
        stale_ms: i64,
        owner_alive: &mut dyn FnMut(u32) -> bool,
    ) -> Vec<String> {
        let mut dirs = Vec::new();
        for s in self.slots[..self.used].iter_mut() {
            match s.state() {
                StreamState::Free => {}
                StreamState::Live => {
                    let gone = s.publisher_gone();
                    let slot = LiveSlot {
                        idle_ms: now_ms.saturating_sub(s.updated_ms()),
                        gone_for_ms: gone.then(|| now_ms.saturating_sub(s.gone_ms())),
                        grace_ms: s.grace_ms() as i64,
                        // Only asked while the publisher counts as connected.
                        owner_alive: gone || owner_alive(s.owner()),
                    };
                    match lifecycle::live_verdict(slot, stale_ms) {
                        LiveVerdict::End => s.end(now_ms),
                        LiveVerdict::Disconnect => s.disconnect(now_ms),
                        LiveVerdict::Keep => s.expire(now_ms),
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
