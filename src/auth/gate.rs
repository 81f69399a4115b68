//! The "publish pending" state of one RTMP connection while a publish callback is out.
//!
//! Sans-IO: the ingest connection asks [`Gate::hold`] when a publish arrives; with a
//! callback configured the publish waits (nothing claimed, no folder, the RTMP session
//! still in its pre-publish limits). The glue takes the request once
//! ([`Gate::take_request`]), sends it, and hands the answer back ([`Gate::resolve`]),
//! which says what to do with the held publish.

use super::callback::Decision;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPublish {
    pub stream_id: u32,
    pub name: String,
    pub query: Option<String>,
}

#[derive(Debug, Default)]
pub struct Gate {
    enabled: bool,
    pending: Option<PendingPublish>,
    asked: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// No callback: go on with the publish now.
    Proceed,
    /// Wait for the callback's answer.
    Wait,
    /// A publish is already waiting on this connection.
    Busy,
}

impl Gate {
    pub fn new(enabled: bool) -> Self {
        Gate {
            enabled,
            ..Gate::default()
        }
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub fn hold(&mut self, stream_id: u32, name: &str, query: Option<&str>) -> Hold {
        if !self.enabled {
            return Hold::Proceed;
        }
        if self.pending.is_some() {
            return Hold::Busy;
        }
        self.pending = Some(PendingPublish {
            stream_id,
            name: name.to_owned(),
            query: query.map(str::to_owned),
        });
        self.asked = false;
        Hold::Wait
    }

    /// The publish to ask about, once per held publish.
    pub fn take_request(&mut self) -> Option<&PendingPublish> {
        if self.asked {
            return None;
        }
        self.asked = true;
        self.pending.as_ref()
    }

    /// The callback answered (or failed): the held publish and what to do with it.
    /// `None` when nothing was waiting (an answer that came too late).
    pub fn resolve(&mut self, d: Decision) -> Option<(PendingPublish, Decision)> {
        let p = self.pending.take()?;
        self.asked = false;
        Some((p, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_callback_publishes_proceed() {
        let mut g = Gate::new(false);
        assert_eq!(g.hold(1, "demo", None), Hold::Proceed);
        assert!(!g.is_pending());
        assert_eq!(g.take_request(), None);
    }

    #[test]
    fn held_publish_is_asked_once_and_resolved_once() {
        let mut g = Gate::new(true);
        assert_eq!(g.hold(1, "demo", Some("pass=x")), Hold::Wait);
        assert!(g.is_pending());
        let p = g.take_request().cloned().unwrap();
        assert_eq!(
            p,
            PendingPublish {
                stream_id: 1,
                name: "demo".into(),
                query: Some("pass=x".into())
            }
        );
        assert_eq!(g.take_request(), None, "asked once");
        assert_eq!(g.hold(1, "again", None), Hold::Busy);
        let (p2, d) = g.resolve(Decision::Rename("pub".into())).unwrap();
        assert_eq!((p2, d), (p, Decision::Rename("pub".into())));
        assert!(!g.is_pending());
        assert_eq!(
            g.resolve(Decision::Allow),
            None,
            "a late answer does nothing"
        );
        // A later publish on the same connection is held again.
        assert_eq!(g.hold(2, "next", None), Hold::Wait);
        assert_eq!(g.take_request().map(|p| p.stream_id), Some(2));
    }
}
