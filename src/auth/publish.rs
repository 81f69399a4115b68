//! Signed publish keys, checked locally with no I/O.
//!
//! A streamer publishes `KEY?exp=EXP&sig=SIG`: `EXP` is a Unix time in seconds after
//! which the key can no longer start a publish, and `SIG` is the first 16 bytes of
//! HMAC-SHA256(secret, "KEY:EXP") in base64url (22 characters). With several secrets
//! configured (rotation), a signature made with any of them is accepted.
//!
//! The stream is published as `KEY`: the query never reaches paths, playlists or logs.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{b64url_decode, b64url_encode, ct_eq};

/// Bytes of the HMAC kept in a signature (128 bits).
pub const SIG_BYTES: usize = 16;
/// Length of a signature in base64url.
pub const SIG_CHARS: usize = 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// No `exp=` / `sig=` in the query.
    Missing,
    /// `exp` or `sig` present but not well-formed (or repeated).
    Malformed,
    /// The signature is right but `exp` has passed.
    Expired,
    /// No configured secret produces this signature.
    BadSignature,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::Missing => "unsigned stream key (exp= and sig= are required)",
            KeyError::Malformed => "malformed stream key signature",
            KeyError::Expired => "stream key signature has expired",
            KeyError::BadSignature => "wrong stream key signature",
        })
    }
}

/// The configured secrets (`rtmp_live_secret`); empty: publishing is not signed.
#[derive(Clone, Default)]
pub struct Secrets(pub Vec<Vec<u8>>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// Ok when no secret is configured, else [`verify`].
    pub fn check(&self, key: &str, query: Option<&str>, now_s: u64) -> Result<(), KeyError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let secrets: Vec<&[u8]> = self.0.iter().map(Vec::as_slice).collect();
        verify(key, query, &secrets, now_s)
    }
}

fn mac(key: &str, exp: u64, secret: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(key.as_bytes());
    m.update(b":");
    m.update(exp.to_string().as_bytes());
    m.finalize().into_bytes().into()
}

/// The signature of `key` valid until `exp` (Unix seconds).
pub fn signature(key: &str, exp: u64, secret: &[u8]) -> String {
    b64url_encode(&mac(key, exp, secret)[..SIG_BYTES])
}

/// The stream key a streamer pastes: `KEY?exp=EXP&sig=SIG`.
pub fn signed_key(key: &str, exp: u64, secret: &[u8]) -> String {
    format!("{key}?exp={exp}&sig={}", signature(key, exp, secret))
}

/// Checks the query of a publish name (`exp=…&sig=…`, other parameters ignored) against
/// the configured secrets at Unix time `now_s`.
pub fn verify(
    key: &str,
    query: Option<&str>,
    secrets: &[&[u8]],
    now_s: u64,
) -> Result<(), KeyError> {
    let (mut exp, mut sig) = (None, None);
    for pair in query.unwrap_or("").split('&') {
        let slot = match pair.split_once('=') {
            Some(("exp", v)) => (&mut exp, v),
            Some(("sig", v)) => (&mut sig, v),
            _ => continue,
        };
        if slot.0.replace(slot.1).is_some() {
            return Err(KeyError::Malformed);
        }
    }
    let (exp, sig) = match (exp, sig) {
        (None, None) => return Err(KeyError::Missing),
        (Some(e), Some(s)) => (e, s),
        _ => return Err(KeyError::Malformed),
    };
    if exp.is_empty() || exp.len() > 12 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::Malformed);
    }
    let exp_n: u64 = exp.parse().map_err(|_| KeyError::Malformed)?;
    if exp_n.to_string() != exp {
        return Err(KeyError::Malformed); // leading zeros: one spelling per signature
    }
    if sig.len() != SIG_CHARS {
        return Err(KeyError::Malformed);
    }
    let got = b64url_decode(sig).ok_or(KeyError::Malformed)?;
    let mut ok = false;
    for secret in secrets {
        // Every secret is tried, so the time taken does not tell which one matched.
        ok |= ct_eq(&mac(key, exp_n, secret)[..SIG_BYTES], &got);
    }
    if !ok {
        return Err(KeyError::BadSignature);
    }
    if exp_n < now_s {
        return Err(KeyError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_000;
    const A: &[u8] = b"first secret";
    const B: &[u8] = b"second secret";

    fn query(signed: &str) -> (&str, Option<&str>) {
        match signed.split_once('?') {
            Some((k, q)) => (k, Some(q)),
            None => (signed, None),
        }
    }

    #[test]
    fn no_secret_means_unsigned() {
        assert_eq!(Secrets::default().check("demo", None, NOW), Ok(()));
        let two = Secrets(vec![A.to_vec(), B.to_vec()]);
        assert_eq!(two.check("demo", None, NOW), Err(KeyError::Missing));
        let s = signed_key("demo", NOW + 1, B);
        let (k, q) = query(&s);
        assert_eq!(two.check(k, q, NOW), Ok(()));
        assert!(!format!("{two:?}").contains("secret"));
    }

    #[test]
    fn known_signature() {
        // Independent check: printf 'demo:1767225600' | openssl dgst -sha256 -hmac secret
        //   -binary | head -c 16 | base64 | tr '+/' '-_' | tr -d '='
        assert_eq!(
            signed_key("demo", 1_767_225_600, b"secret"),
            "demo?exp=1767225600&sig=FRFBTOloMDXQiAn7xfSxgA"
        );
    }

    #[test]
    fn valid_key() {
        let s = signed_key("demo", NOW + 60, A);
        let (k, q) = query(&s);
        assert_eq!(k, "demo");
        assert_eq!(verify(k, q, &[A], NOW), Ok(()));
        // Other parameters are ignored; order does not matter.
        let q2 = format!(
            "x=1&sig={}&exp={}",
            signature("demo", NOW + 60, A),
            NOW + 60
        );
        assert_eq!(verify("demo", Some(&q2), &[A], NOW), Ok(()));
        // The last second is still valid.
        assert_eq!(verify(k, q, &[A], NOW + 60), Ok(()));
    }

    #[test]
    fn expired() {
        let s = signed_key("demo", NOW - 1, A);
        let (k, q) = query(&s);
        assert_eq!(verify(k, q, &[A], NOW), Err(KeyError::Expired));
    }

    #[test]
    fn wrong_signature() {
        let s = signed_key("demo", NOW + 60, A);
        let (k, q) = query(&s);
        assert_eq!(verify(k, q, &[B], NOW), Err(KeyError::BadSignature));
        // A later expiry with the old signature.
        let q2 = format!("exp={}&sig={}", NOW + 61, signature("demo", NOW + 60, A));
        assert_eq!(
            verify("demo", Some(&q2), &[A], NOW),
            Err(KeyError::BadSignature)
        );
        // An expired key with a wrong signature says "wrong", not "expired".
        let q3 = format!("exp={}&sig={}", NOW - 5, signature("demo", NOW + 60, A));
        assert_eq!(
            verify("demo", Some(&q3), &[A], NOW),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn signature_of_another_key() {
        let s = signed_key("other", NOW + 60, A);
        let (_, q) = query(&s);
        assert_eq!(verify("demo", q, &[A], NOW), Err(KeyError::BadSignature));
    }

    #[test]
    fn rotation_accepts_both_secrets() {
        for secret in [A, B] {
            let s = signed_key("demo", NOW + 60, secret);
            let (k, q) = query(&s);
            assert_eq!(verify(k, q, &[A, B], NOW), Ok(()));
            assert_eq!(verify(k, q, &[B, A], NOW), Ok(()));
        }
        let s = signed_key("demo", NOW + 60, b"retired");
        let (k, q) = query(&s);
        assert_eq!(verify(k, q, &[A, B], NOW), Err(KeyError::BadSignature));
    }

    #[test]
    fn malformed() {
        let sig = signature("demo", NOW + 60, A);
        let exp = NOW + 60;
        for q in [
            format!("exp={exp}"),
            format!("sig={sig}"),
            format!("exp=&sig={sig}"),
            format!("exp=-1&sig={sig}"),
            format!("exp=0{exp}&sig={sig}"),
            format!("exp=1e9&sig={sig}"),
            format!("exp=9999999999999&sig={sig}"),
            format!("exp={exp}&sig={}", &sig[..21]),
            format!("exp={exp}&sig={sig}A"),
            format!("exp={exp}&sig={}+", &sig[..21]),
            format!("exp={exp}&sig={sig}&sig={sig}"),
            format!("exp={exp}&exp={exp}&sig={sig}"),
        ] {
            assert_eq!(
                verify("demo", Some(&q), &[A], NOW),
                Err(KeyError::Malformed),
                "{q}"
            );
        }
        assert_eq!(verify("demo", None, &[A], NOW), Err(KeyError::Missing));
        assert_eq!(verify("demo", Some(""), &[A], NOW), Err(KeyError::Missing));
        assert_eq!(
            verify("demo", Some("foo=bar"), &[A], NOW),
            Err(KeyError::Missing)
        );
    }
}
