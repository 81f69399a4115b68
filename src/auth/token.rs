//! Playback tokens: one token per stream (not per URI), with an expiry and optionally
//! bound to the viewer's address, carried as a path prefix:
//!
//! ```text
//! /t/{exp}-{sig}/live/{key}/index.m3u8
//! sig = base64url(md5("{exp}{key}{addr} {secret}"))     (addr empty when not bound)
//! ```
//!
//! Playlists use relative URIs, so every URI a player derives from the one it was given
//! (media playlists, parts, segments, the preload hint, init sections, rendition
//! reports) carries the same prefix with no player support. The scheme is the one stock
//! nginx checks with `secure_link $sig,$exp; secure_link_md5 "$exp$key $secret";`, so
//! CDN edges verify the same tokens as the origin.

use std::fmt;

use md5::{Digest, Md5};

use super::{b64url_decode, b64url_encode, ct_eq};

/// The path component that announces a token: `/t/{exp}-{sig}/`.
pub const MARKER: &str = "t";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No `/t/{exp}-{sig}/` component (or a malformed one).
    Missing,
    /// The signature does not match this stream (another stream's, another secret).
    BadSignature,
    /// The signature matches but `exp` has passed.
    Expired,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Missing => "no playback token",
            TokenError::BadSignature => "playback token is not valid for this stream",
            TokenError::Expired => "playback token has expired",
        })
    }
}

fn digest(exp: u64, key: &str, addr: Option<&str>, secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(exp.to_string().as_bytes());
    h.update(key.as_bytes());
    h.update(addr.unwrap_or("").as_bytes());
    h.update(b" ");
    h.update(secret);
    h.finalize().into()
}

/// The signature for stream `key` until `exp` (Unix seconds), optionally bound to `addr`.
pub fn signature(key: &str, exp: u64, addr: Option<&str>, secret: &[u8]) -> String {
    b64url_encode(&digest(exp, key, addr, secret))
}

/// The path prefix a viewer is given: `/t/{exp}-{sig}` (append `/live/{key}/…`).
pub fn prefix(key: &str, exp: u64, addr: Option<&str>, secret: &[u8]) -> String {
    format!("/{MARKER}/{exp}-{}", signature(key, exp, addr, secret))
}

/// Finds `{exp}-{sig}` right after a `t` component of `uri`'s path.
pub fn find(uri: &str) -> Option<(u64, &str)> {
    let mut parts = uri.split('/');
    while let Some(p) = parts.next() {
        if p != MARKER {
            continue;
        }
        let (exp, sig) = parts.next()?.split_once('-')?;
        if exp.is_empty() || exp.len() > 12 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if sig.len() != 22 {
            return None;
        }
        return Some((exp.parse().ok()?, sig));
    }
    None
}

/// Checks the token in `uri` for stream `key` (and `addr` when bound) at Unix time
/// `now_s`, against each configured secret.
pub fn verify(
    uri: &str,
    key: &str,
    addr: Option<&str>,
    secrets: &[&[u8]],
    now_s: u64,
) -> Result<(), TokenError> {
    let (exp, sig) = find(uri).ok_or(TokenError::Missing)?;
    let got = b64url_decode(sig).ok_or(TokenError::Missing)?;
    let mut ok = false;
    for secret in secrets {
        ok |= ct_eq(&digest(exp, key, addr, secret), &got);
    }
    if !ok {
        return Err(TokenError::BadSignature);
    }
    if exp < now_s {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_000;
    const S: &[u8] = b"playback secret";

    #[test]
    fn known_signature() {
        // Independent check: printf '1767225600demo secret' | openssl md5 -binary | base64
        //   | tr '+/' '-_' | tr -d '='
        assert_eq!(
            prefix("demo", 1_767_225_600, None, b"secret"),
            "/t/1767225600-RUEvtKJQvVy2RJrEfIUT8Q"
        );
    }

    #[test]
    fn valid_for_every_uri_of_the_stream() {
        let p = prefix("demo", NOW + 60, None, S);
        for file in [
            "index.m3u8",
            "master.m3u8",
            "init0.mp4",
            "12.m4s",
            "12.3.m4s",
            "12.ts",
        ] {
            let uri = format!("{p}/live/demo/{file}");
            assert_eq!(verify(&uri, "demo", None, &[S], NOW), Ok(()), "{uri}");
        }
    }

    #[test]
    fn refusals() {
        let p = prefix("demo", NOW + 60, None, S);
        // Another stream.
        let uri = format!("{p}/live/other/index.m3u8");
        assert_eq!(
            verify(&uri, "other", None, &[S], NOW),
            Err(TokenError::BadSignature)
        );
        // Another secret.
        let uri = format!("{p}/live/demo/index.m3u8");
        assert_eq!(
            verify(&uri, "demo", None, &[b"x"], NOW),
            Err(TokenError::BadSignature)
        );
        // Expired.
        let old = prefix("demo", NOW - 1, None, S);
        let uri = format!("{old}/live/demo/index.m3u8");
        assert_eq!(
            verify(&uri, "demo", None, &[S], NOW),
            Err(TokenError::Expired)
        );
        // A moved expiry.
        let sig = signature("demo", NOW + 60, None, S);
        let uri = format!("/t/{}-{sig}/live/demo/index.m3u8", NOW + 3600);
        assert_eq!(
            verify(&uri, "demo", None, &[S], NOW),
            Err(TokenError::BadSignature)
        );
        // Missing or malformed.
        for uri in [
            "/live/demo/index.m3u8".to_string(),
            format!("/t/{}/live/demo/index.m3u8", NOW + 60),
            format!("/t/x-{sig}/live/demo/index.m3u8"),
            format!("/t/{}-{}/live/demo/index.m3u8", NOW + 60, &sig[..21]),
            format!("/t/{}-{}*/live/demo/index.m3u8", NOW + 60, &sig[..21]),
        ] {
            assert_eq!(
                verify(&uri, "demo", None, &[S], NOW),
                Err(TokenError::Missing),
                "{uri}"
            );
        }
    }

    #[test]
    fn bound_to_an_address() {
        let p = prefix("demo", NOW + 60, Some("192.0.2.7"), S);
        let uri = format!("{p}/live/demo/index.m3u8");
        assert_eq!(verify(&uri, "demo", Some("192.0.2.7"), &[S], NOW), Ok(()));
        assert_eq!(
            verify(&uri, "demo", Some("192.0.2.8"), &[S], NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&uri, "demo", None, &[S], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn rotation() {
        for secret in [&b"old"[..], b"new"] {
            let uri = format!("{}/live/demo/1.m4s", prefix("demo", NOW + 60, None, secret));
            assert_eq!(verify(&uri, "demo", None, &[b"old", b"new"], NOW), Ok(()));
        }
    }
}
