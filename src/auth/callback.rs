//! The publish callback (`rtmp_live_on_publish URL;`), in the manner of nginx-rtmp's
//! `on_publish`: an HTTP POST with the publish's details, whose answer decides.
//!
//! - 2xx: publish as asked.
//! - 3xx with `Location`: publish under the key named there (its last path component),
//!   so the key a streamer uses can stay secret while the public key is another one.
//! - Anything else, a bad answer, a refused connection or a timeout: refuse.
//!
//! When the publish ends, the same request with `call=publish_done` notifies (its
//! answer is ignored). Only the bytes are built and read here; the nginx glue
//! (`src/nginx/callback.rs`) moves them over a non-blocking connection with a timer.

use std::fmt;

use crate::store::names;

/// Longest response head read (status line + headers).
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Publish,
    PublishDone,
}

/// What the request carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub app: &'a str,
    pub name: &'a str,
    pub addr: &'a str,
    /// The query of the publish name (`KEY?a=b`), forwarded as form fields.
    pub query: Option<&'a str>,
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The form body: `call=…&app=…&name=…&addr=…` then the query's own parameters
/// (re-encoded; ones that would override ours are dropped).
pub fn form_body(call: Call, f: &Fields) -> String {
    let call = match call {
        Call::Publish => "publish",
        Call::PublishDone => "publish_done",
    };
    let mut body = format!(
        "call={call}&app={}&name={}&addr={}",
        form_encode(f.app),
        form_encode(f.name),
        form_encode(f.addr)
    );
    for pair in f.query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if matches!(k, "call" | "app" | "name" | "addr") {
            continue;
        }
        body.push('&');
        body.push_str(&form_encode(&percent_decode(k)));
        body.push('=');
        body.push_str(&form_encode(&percent_decode(v)));
    }
    body
}

/// Decodes `%XX` and `+`; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The whole HTTP/1.0-style request (one request per connection, `Connection: close`).
pub fn request(host: &str, path: &str, call: Call, f: &Fields) -> Vec<u8> {
    let body = form_body(call, f);
    let path = if path.is_empty() { "/" } else { path };
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vid\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status line and the one header we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    TooLong,
    Malformed,
    /// The connection ended before the head was complete.
    Truncated,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseError::TooLong => "response head too long",
            ResponseError::Malformed => "malformed response",
            ResponseError::Truncated => "connection closed before a complete response",
        })
    }
}

/// Reads a response head from bytes as they arrive (bounded by [`MAX_HEAD`]).
#[derive(Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
}

impl ResponseReader {
    /// `None`: need more bytes. The body is never needed.
    pub fn feed(&mut self, data: &[u8]) -> Option<Result<Response, ResponseError>> {
        let room = MAX_HEAD.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        match self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => Some(parse_head(&self.buf[..end])),
            None if self.buf.len() >= MAX_HEAD => Some(Err(ResponseError::TooLong)),
            None => None,
        }
    }

    /// The peer closed: whatever is complete decides.
    pub fn eof(&mut self) -> Result<Response, ResponseError> {
        match self.feed(&[]) {
            Some(r) => r,
            None => Err(ResponseError::Truncated),
        }
    }
}

fn parse_head(head: &[u8]) -> Result<Response, ResponseError> {
    let head = std::str::from_utf8(head).map_err(|_| ResponseError::Malformed)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut it = status_line.splitn(3, ' ');
    let version = it.next().unwrap_or("");
    let code = it.next().unwrap_or("");
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ResponseError::Malformed);
    }
    let status: u16 = code.parse().map_err(|_| ResponseError::Malformed)?;
    let mut location = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(ResponseError::Malformed);
        };
        if k.trim().eq_ignore_ascii_case("location") {
            location = Some(v.trim().to_string());
        }
    }
    Ok(Response { status, location })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Publish under this key instead.
    Rename(String),
    /// The service said no (4xx, or a redirect to no valid key).
    Deny(String),
    /// The service could not be asked, or failed (no connection, timeout, a malformed
    /// answer, 5xx): refused as well; a WHIP publisher is told to retry (503).
    Unreachable(String),
}

impl Decision {
    /// Why the publish is refused; None if it goes on.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Decision::Deny(why) | Decision::Unreachable(why) => Some(why),
            Decision::Allow | Decision::Rename(_) => None,
        }
    }
}

/// What a response means for the publish.
pub fn decide(r: &Result<Response, ResponseError>) -> Decision {
    let r = match r {
        Ok(r) => r,
        Err(e) => return Decision::Unreachable(format!("publish callback: {e}")),
    };
    match r.status {
        200..=299 => Decision::Allow,
        300..=399 => {
            let Some(loc) = r.location.as_deref() else {
                return Decision::Deny(format!(
                    "publish callback answered {} without Location",
                    r.status
                ));
            };
            let path = loc.split(['?', '#']).next().unwrap_or("");
            let key = path.rsplit('/').next().unwrap_or("");
            if names::valid_key(key) {
                Decision::Rename(key.to_string())
            } else {
                Decision::Deny(format!(
                    "publish callback redirected to an invalid stream key ({} characters)",
                    key.len()
                ))
            }
        }
        s @ 500..=599 => Decision::Unreachable(format!("publish callback answered {s}")),
        s => Decision::Deny(format!("publish callback answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields<'static> {
        Fields {
            app: "live",
            name: "demo",
            addr: "192.0.2.1",
            query: Some("pass=s3cr%2Ft&name=evil&x"),
        }
    }

    #[test]
    fn builds_the_request() {
        let req =
            String::from_utf8(request("cb.local:8000", "/auth", Call::Publish, &fields())).unwrap();
        let body = "call=publish&app=live&name=demo&addr=192.0.2.1&pass=s3cr%2Ft&x=";
        assert_eq!(
            req,
            format!(
                "POST /auth HTTP/1.1\r\nHost: cb.local:8000\r\nUser-Agent: vid\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        );
        let done =
            String::from_utf8(request("h", "", Call::PublishDone, &Fields::default())).unwrap();
        assert!(done.starts_with("POST / HTTP/1.1\r\n"));
        assert!(done.ends_with("\r\n\r\ncall=publish_done&app=&name=&addr="));
    }

    #[test]
    fn encodes_everything_unsafe() {
        assert_eq!(form_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_decode("a%2Fb+c%zz%"), "a/b c%zz%");
        let f = Fields {
            query: Some("k=%0d%0aX: y"),
            ..fields()
        };
        let body = form_body(Call::Publish, &f);
        assert!(body.ends_with("&k=%0D%0AX%3A%20y"), "{body}");
    }

    fn read_all(chunks: &[&[u8]]) -> Option<Result<Response, ResponseError>> {
        let mut r = ResponseReader::default();
        for c in chunks {
            if let Some(res) = r.feed(c) {
                return Some(res);
            }
        }
        None
    }

    #[test]
    fn reads_responses_in_pieces() {
        let res = read_all(&[b"HTTP/1.1 20", b"4 No Content\r\nServer: x\r", b"\n\r\n"]);
        assert_eq!(
            res,
            Some(Ok(Response {
                status: 204,
                location: None
            }))
        );
        let res = read_all(&[
            b"HTTP/1.0 302 Found\r\nlocation:  rtmp://h/live/public_1?x=1 \r\n\r\nbody",
        ]);
        let r = res.unwrap();
        assert_eq!(decide(&r), Decision::Rename("public_1".into()));
        assert_eq!(read_all(&[b"HTTP/1.1 200 OK\r\n"]), None);
        let mut rd = ResponseReader::default();
        assert_eq!(rd.feed(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(rd.eof(), Err(ResponseError::Truncated));
    }

    #[test]
    fn bad_responses() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n",
        ] {
            assert_eq!(
                read_all(&[bad]),
                Some(Err(ResponseError::Malformed)),
                "{bad:?}"
            );
        }
        let mut rd = ResponseReader::default();
        let junk = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(rd.feed(&junk), Some(Err(ResponseError::TooLong)));
    }

    #[test]
    fn decisions() {
        let ok = |status, location: Option<&str>| {
            Ok(Response {
                status,
                location: location.map(str::to_string),
            })
        };
        assert_eq!(decide(&ok(200, None)), Decision::Allow);
        assert_eq!(decide(&ok(201, None)), Decision::Allow);
        assert_eq!(
            decide(&ok(301, Some("other"))),
            Decision::Rename("other".into())
        );
        assert_eq!(
            decide(&ok(307, Some("/live/x-y_z"))),
            Decision::Rename("x-y_z".into())
        );
        assert!(matches!(decide(&ok(302, None)), Decision::Deny(_)));
        assert!(matches!(
            decide(&ok(302, Some("/live/a.b"))),
            Decision::Deny(_)
        ));
        assert!(matches!(
            decide(&ok(302, Some("/live/"))),
            Decision::Deny(_)
        ));
        assert_eq!(
            decide(&ok(403, None)),
            Decision::Deny("publish callback answered 403".into())
        );
        assert_eq!(
            decide(&ok(503, None)),
            Decision::Unreachable("publish callback answered 503".into())
        );
        assert!(matches!(decide(&ok(100, None)), Decision::Deny(_)));
        assert!(matches!(
            decide(&Err(ResponseError::Truncated)),
            Decision::Unreachable(_)
        ));
        assert_eq!(
            decide(&ok(503, None)).refusal(),
            Some("publish callback answered 503")
        );
        assert_eq!(decide(&ok(204, None)).refusal(), None);
    }
}
