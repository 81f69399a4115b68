//! The publish callback's side of [`Connection`]: a publish held in the "publish
//! pending" state ([`crate::auth::gate`]) until the callback's answer is handed in.

use super::{Connection, IngestError, LogLevel, SharedIndex};
use crate::auth::callback::Decision;
use crate::auth::gate::Hold;
use crate::store::{names, Now};

/// A held publish the glue must ask the callback about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackAsk {
    pub app: String,
    pub name: String,
    pub query: Option<String>,
}

impl Connection {
    /// A publish command: the signed-key check, then the callback's gate, then publish.
    pub(super) fn on_publish(
        &mut self,
        stream_id: u32,
        name: String,
        query: Option<String>,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        // An invalid name is refused by `publish` with its own message.
        if names::valid_key(&name) {
            let signed = self
                .cfg
                .publish_secrets
                .check(&name, query.as_deref(), self.unix_s);
            if let Err(e) = signed {
                let app = self.app.clone().unwrap_or_default();
                let why = format!("publish \"{app}/{name}\" refused: {e}");
                self.rtmp
                    .reject_publish(stream_id, "NetStream.Publish.BadName", &why);
                return Err(IngestError::Refused(why));
            }
        }
        if self.hold_publish(stream_id, &name, query.as_deref())? {
            return Ok(()); // answered by resolve_publish
        }
        self.publish(stream_id, name, now, shared)
    }

    /// True: the publish waits for the callback. A second publish while one waits is
    /// refused.
    fn hold_publish(
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
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        let Some((p, d)) = self.gate.resolve(d) else {
            return Ok(());
        };
        let app = self.app.clone().unwrap_or_default();
        match d {
            Decision::Allow => self.publish(p.stream_id, p.name, now, shared),
            Decision::Rename(key) => {
                self.say(
                    LogLevel::Notice,
                    format!(
                        "publish \"{app}/{}\" renamed to \"{key}\" by the callback",
                        p.name
                    ),
                );
                self.publish(p.stream_id, key, now, shared)
            }
            Decision::Deny(why) | Decision::Unreachable(why) => {
                let why = format!("publish \"{app}/{}\" refused: {why}", p.name);
                self.rtmp
                    .reject_publish(p.stream_id, "NetStream.Publish.BadName", &why);
                Err(IngestError::Refused(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::publish::{signed_key, Secrets};
    use crate::ingest::testutil::Slots;
    use crate::rtmp::amf0::{encode_all, Value};

    /// One RTMP message in 128-byte chunks (fmt 0, then fmt 3 continuations).
    fn message(csid: u8, type_id: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![csid, 0, 0, 0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&sid.to_le_bytes());
        for (i, chunk) in payload.chunks(128).enumerate() {
            if i > 0 {
                out.push(0xc0 | csid);
            }
            out.extend_from_slice(chunk);
        }
        out
    }

    fn cmd(values: &[Value], sid: u32) -> Vec<u8> {
        message(if sid == 0 { 3 } else { 4 }, 20, sid, &encode_all(values))
    }

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    /// Handshake, connect "live", createStream, publish NAME.
    fn client_publish(name: &str) -> Vec<u8> {
        let mut b = vec![3u8];
        b.extend_from_slice(&[0u8; 1536]); // C1
        b.extend_from_slice(&[0u8; 1536]); // C2
        b.extend(cmd(
            &[
                s("connect"),
                Value::Number(1.0),
                Value::Object(vec![("app".into(), s("live"))]),
            ],
            0,
        ));
        b.extend(cmd(
            &[s("createStream"), Value::Number(2.0), Value::Null],
            0,
        ));
        b.extend(cmd(
            &[
                s("publish"),
                Value::Number(3.0),
                Value::Null,
                s(name),
                s("live"),
            ],
            1,
        ));
        b
    }

    fn conn(name: &str, callback: bool, secrets: Secrets) -> (Connection, std::path::PathBuf) {
        crate::ingest::testutil::conn("gate", name, callback, secrets)
    }

    fn output_has(c: &Connection, what: &str) -> bool {
        c.output().windows(what.len()).any(|w| w == what.as_bytes())
    }

    #[test]
    fn publish_waits_for_the_callback_then_renames() {
        let (mut c, root) = conn("rename", true, Secrets::default());
        let mut idx = Slots::new(4);
        c.feed(&client_publish("secret?pass=1"), 0, &mut idx)
            .unwrap();
        // Pending: nothing claimed, no folder, nothing answered yet.
        assert!(c.publish_pending());
        assert_eq!(c.key(), None);
        assert!(!idx.has("secret") && !root.join("secret").exists());
        assert!(!output_has(&c, "NetStream.Publish"));
        let ask = c.callback_request().unwrap();
        assert_eq!(
            ask,
            CallbackAsk {
                app: "live".into(),
                name: "secret".into(),
                query: Some("pass=1".into())
            }
        );
        assert_eq!(c.callback_request(), None, "asked once");
        c.resolve_publish(Decision::Rename("public".into()), Now::same(10), &mut idx)
            .unwrap();
        assert_eq!(c.key(), Some("public"));
        assert!(idx.has("public") && !idx.has("secret"));
        assert!(root.join("public").is_dir() && !root.join("secret").exists());
        assert!(output_has(&c, "NetStream.Publish.Start"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn denied_publish_gets_badname_and_holds_nothing() {
        let (mut c, root) = conn("deny", true, Secrets::default());
        let mut idx = Slots::new(4);
        c.feed(&client_publish("demo"), 0, &mut idx).unwrap();
        assert!(c.callback_request().is_some());
        let e = c
            .resolve_publish(
                Decision::Deny("publish callback answered 403".into()),
                Now::same(10),
                &mut idx,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "publish \"live/demo\" refused: publish callback answered 403"
        );
        assert!(output_has(&c, "NetStream.Publish.BadName"));
        assert!(!c.publish_pending() && c.key().is_none() && !idx.has("demo"));
        assert!(!root.join("demo").exists());
        // A late answer does nothing.
        c.resolve_publish(Decision::Allow, Now::same(20), &mut idx)
            .unwrap();
        assert!(!idx.has("demo"));
    }

    #[test]
    fn without_a_callback_publish_is_immediate() {
        let (mut c, root) = conn("direct", false, Secrets::default());
        let mut idx = Slots::new(4);
        c.feed(&client_publish("demo"), 0, &mut idx).unwrap();
        assert_eq!(c.key(), Some("demo"));
        assert_eq!(c.callback_request(), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn signed_keys_are_checked_before_anything_is_held() {
        let secret = b"a secret of enough length".to_vec();
        let (mut c, root) = conn("signed", true, Secrets(vec![secret.clone()]));
        let mut idx = Slots::new(4);
        c.set_unix_time(1_000);
        let e = c
            .feed(
                &client_publish("demo?exp=999&sig=AAAAAAAAAAAAAAAAAAAAAA"),
                0,
                &mut idx,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "publish \"live/demo\" refused: wrong stream key signature"
        );
        assert!(!c.publish_pending() && !idx.has("demo") && !root.join("demo").exists());
        assert!(output_has(&c, "NetStream.Publish.BadName"));
        // Signed: goes on to the callback, the query kept for it.
        let (mut c, _) = conn("signed2", true, Secrets(vec![secret.clone()]));
        c.set_unix_time(1_000);
        c.feed(
            &client_publish(&signed_key("demo", 2_000, &secret)),
            0,
            &mut idx,
        )
        .unwrap();
        assert!(c.publish_pending());
        assert_eq!(c.callback_request().unwrap().name, "demo");
    }
}
