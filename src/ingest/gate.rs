//! The publish callback's side of [`Connection`]: a publish held in the "publish
//! pending" state ([`crate::auth::gate`]) until the callback's answer is handed in.

use super::{Connection, IngestError, LogLevel, SharedIndex};
use crate::auth::callback::Decision;
use crate::auth::gate::Hold;

/// A held publish the glue must ask the callback about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackAsk {
    pub app: String,
    pub name: String,
    pub query: Option<String>,
}

impl Connection {
    /// True: the publish waits for the callback. A second publish while one waits is
    /// refused.
    pub(super) fn hold_publish(
        &mut self,
        stream_id: u32,
        name: &str,
        query: Option<&str>,
    ) -> Result<bool, IngestError> {
        match self.gate.hold(stream_id, name, query) {
            Hold::Proceed => Ok(false),
            Hold::Wait => Ok(true),
            Hold::Busy => {
                let why = "a publish is already waiting on this connection".to_string();
                self.rtmp
                    .reject_publish(stream_id, "NetStream.Publish.BadName", &why);
                Err(IngestError::Refused(why))
            }
        }
    }

    /// The request to send for a held publish (once).
    pub fn callback_request(&mut self) -> Option<CallbackAsk> {
        let app = self.app.clone().unwrap_or_default();
        let p = self.gate.take_request()?;
        Some(CallbackAsk {
            app,
            name: p.name.clone(),
            query: p.query.clone(),
        })
    }

    /// The RTMP app of the connection ("" before `connect`).
    pub fn app(&self) -> &str {
        self.app.as_deref().unwrap_or("")
    }

    /// Whether a publish waits for the callback.
    pub fn publish_pending(&self) -> bool {
        self.gate.is_pending()
    }

    /// The callback's answer: publish (as asked or renamed) or refuse.
    pub fn resolve_publish(
        &mut self,
        d: Decision,
        now_ms: i64,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        let Some((p, d)) = self.gate.resolve(d) else {
            return Ok(());
        };
        let app = self.app.clone().unwrap_or_default();
        match d {
            Decision::Allow => self.publish(p.stream_id, p.name, now_ms, shared),
            Decision::Rename(key) => {
                self.say(
                    LogLevel::Notice,
                    format!(
                        "publish \"{app}/{}\" renamed to \"{key}\" by the callback",
                        p.name
                    ),
                );
                self.publish(p.stream_id, key, now_ms, shared)
            }
            Decision::Deny(why) => {
                let why = format!("publish \"{app}/{}\" refused: {why}", p.name);
                self.rtmp
                    .reject_publish(p.stream_id, "NetStream.Publish.BadName", &why);
                Err(IngestError::Refused(why))
            }
        }
    }
}
