//! The life of a stream slot: who may claim it, when a vanished publisher's stream ends.
//!
//! Pure decisions, the glue supplies the time and whether a process is alive. All
//! durations here are on a monotonic clock (nginx's `ngx_current_msec`, CLOCK_MONOTONIC,
//! one clock for every worker of a machine): a step of the wall clock (NTP, VM resume)
//! never makes a live stream look stale. The wall clock serves only PROGRAM-DATE-TIME,
//! names and the "started" time shown to people.

/// The two clocks of one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the Unix epoch: PROGRAM-DATE-TIME, names, display.
    pub wall_ms: i64,
    /// Milliseconds on a monotonic clock: every duration, deadline and liveness check.
    pub mono_ms: i64,
}

impl Now {
    /// One value for both clocks (tests, tools without a separate monotonic clock).
    pub fn same(ms: i64) -> Now {
        Now {
            wall_ms: ms,
            mono_ms: ms,
        }
    }
}

/// What happens when a key that is live is published again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// The newest publisher takes the key over; the old connection is closed.
    Newest,
    /// The new publisher is refused while the current one is connected and has written
    /// within [`super::index::CLAIM_STALE_MS`].
    Refuse,
}

/// Per-server lifecycle settings, fixed for a slot at claim time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// How long a stream stays live (no EXT-X-ENDLIST) after its publisher left; a
    /// republish of the key within it continues the playlist with a discontinuity.
    pub grace_ms: u32,
    pub takeover: Takeover,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            grace_ms: 0,
            takeover: Takeover::Refuse,
        }
    }
}

/// The default grace period: three target durations.
pub fn default_grace_ms(segment_target_ms: u32) -> u32 {
    3 * segment_target_ms.div_ceil(1000).max(1) * 1000
}

/// What a slot of the claimed key looks like, as far as a claim is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotLife {
    /// A publisher is connected (as far as the index knows); it last wrote `idle_ms` ago.
    Live { idle_ms: i64 },
    /// Live, its publisher gone, the grace period running.
    Grace,
    /// Ended (EXT-X-ENDLIST written).
    Ended,
}

/// The verdict on a claim of a key that has a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimVerdict {
    /// Continue the slot (new publish id, discontinuity), nobody else is writing it.
    Republish,
    /// Continue the slot and take it from its current, connected writer.
    TakeOver,
    /// Refuse: the key is being published.
    Refuse,
}

/// May a new publisher claim a key whose slot is in state `slot`?
pub fn claim_verdict(slot: SlotLife, takeover: Takeover, stale_ms: i64) -> ClaimVerdict {
    match slot {
        SlotLife::Grace | SlotLife::Ended => ClaimVerdict::Republish,
        SlotLife::Live { idle_ms } if idle_ms >= stale_ms => ClaimVerdict::Republish,
        SlotLife::Live { .. } => match takeover {
            Takeover::Newest => ClaimVerdict::TakeOver,
            Takeover::Refuse => ClaimVerdict::Refuse,
        },
    }
}

/// What the housekeeping sweep does with a live slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveVerdict {
    /// Nothing.
    Keep,
    /// The publisher is gone (its process died, or it has written nothing for the stale
    /// limit): start the grace period now.
    Disconnect,
    /// End the stream (EXT-X-ENDLIST): the grace period is over.
    End,
}

/// The state of a live slot for the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveSlot {
    /// Since the last write of its publisher.
    pub idle_ms: i64,
    /// Since its publisher left; `None` while connected.
    pub gone_for_ms: Option<i64>,
    pub grace_ms: i64,
    /// Whether the process that owns the slot still exists.
    pub owner_alive: bool,
}

/// The sweep's verdict on a live slot.
pub fn live_verdict(s: LiveSlot, stale_ms: i64) -> LiveVerdict {
    match s.gone_for_ms {
        Some(gone) if gone >= s.grace_ms => LiveVerdict::End,
        Some(_) => LiveVerdict::Keep,
        None if !s.owner_alive || s.idle_ms >= stale_ms => {
            if s.grace_ms <= 0 {
                LiveVerdict::End
            } else {
                LiveVerdict::Disconnect
            }
        }
        None => LiveVerdict::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_defaults_to_three_target_durations() {
        assert_eq!(default_grace_ms(2000), 6000);
        assert_eq!(default_grace_ms(1500), 6000);
        assert_eq!(default_grace_ms(6000), 18000);
    }

    #[test]
    fn claim_verdicts() {
        use ClaimVerdict::*;
        let live = SlotLife::Live { idle_ms: 100 };
        assert_eq!(claim_verdict(live, Takeover::Newest, 10_000), TakeOver);
        assert_eq!(claim_verdict(live, Takeover::Refuse, 10_000), Refuse);
        let silent = SlotLife::Live { idle_ms: 10_000 };
        assert_eq!(claim_verdict(silent, Takeover::Refuse, 10_000), Republish);
        assert_eq!(claim_verdict(silent, Takeover::Newest, 10_000), Republish);
        for t in [Takeover::Newest, Takeover::Refuse] {
            assert_eq!(claim_verdict(SlotLife::Grace, t, 10_000), Republish);
            assert_eq!(claim_verdict(SlotLife::Ended, t, 10_000), Republish);
        }
    }

    #[test]
    fn live_verdicts() {
        let base = LiveSlot {
            idle_ms: 0,
            gone_for_ms: None,
            grace_ms: 6000,
            owner_alive: true,
        };
        assert_eq!(live_verdict(base, 90_000), LiveVerdict::Keep);
        // A dead owner starts the grace period at once, whatever the idle time.
        let dead = LiveSlot {
            owner_alive: false,
            ..base
        };
        assert_eq!(live_verdict(dead, 90_000), LiveVerdict::Disconnect);
        // Without a grace period it ends at once.
        let dead0 = LiveSlot {
            grace_ms: 0,
            ..dead
        };
        assert_eq!(live_verdict(dead0, 90_000), LiveVerdict::End);
        let silent = LiveSlot {
            idle_ms: 90_000,
            ..base
        };
        assert_eq!(live_verdict(silent, 90_000), LiveVerdict::Disconnect);
        let grace = LiveSlot {
            gone_for_ms: Some(5999),
            ..base
        };
        assert_eq!(live_verdict(grace, 90_000), LiveVerdict::Keep);
        // During the grace the owner's liveness no longer matters.
        let grace_dead = LiveSlot {
            owner_alive: false,
            ..grace
        };
        assert_eq!(live_verdict(grace_dead, 90_000), LiveVerdict::Keep);
        let over = LiveSlot {
            gone_for_ms: Some(6000),
            ..base
        };
        assert_eq!(live_verdict(over, 90_000), LiveVerdict::End);
    }
}
