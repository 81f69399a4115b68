//! RTMP handshake, server side: C0+C1 → S0+S1+S2, then C2.
//!
//! Two flavours exist. The plain one (RTMP spec 1.0) echoes C1 as S2. The
//! "digest" one, used by Flash-era encoders and by ffmpeg, hides an
//! HMAC-SHA256 digest in C1 at a position derived from four bytes of C1
//! (one of two schemes); a server that finds it answers with a digest S1
//! and with an S2 whose last 32 bytes are signed with a key derived from
//! the client's digest. Clients that do not use the digest variant get the
//! plain reply.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Size of C1/S1/C2/S2.
pub const PACKET_SIZE: usize = 1536;
/// The only RTMP version byte (C0) accepted.
pub const RTMP_VERSION: u8 = 3;

const DIGEST_LEN: usize = 32;

/// "Genuine Adobe Flash Player 001" + 32 constant bytes.
const CLIENT_KEY_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
/// "Genuine Adobe Flash Media Server 001" + 32 constant bytes.
const SERVER_KEY_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];

/// Version we announce in a digest S1 (any non-zero value tells the client
/// that S1 carries a digest).
const SERVER_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];

/// Where the digest sits: the offset is derived from the 4 bytes at `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestScheme {
    /// Offset bytes at 8, digest within bytes 12..772.
    Base8,
    /// Offset bytes at 772, digest within bytes 776..1536.
    Base772,
}

impl DigestScheme {
    fn base(self) -> usize {
        match self {
            DigestScheme::Base8 => 8,
            DigestScheme::Base772 => 772,
        }
    }

    /// Position of the 32-byte digest in a 1536-byte packet.
    pub fn offset(self, packet: &[u8; PACKET_SIZE]) -> usize {
        let base = self.base();
        let sum: usize = packet[base..base + 4].iter().map(|&b| b as usize).sum();
        sum % 728 + base + 4
    }
}

fn full_key(text: &[u8]) -> Vec<u8> {
    let mut k = text.to_vec();
    k.extend_from_slice(&KEY_TAIL);
    k
}

fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC of the packet with the 32 digest bytes at `offset` left out.
fn digest_skipping(key: &[u8], packet: &[u8; PACKET_SIZE], offset: usize) -> [u8; DIGEST_LEN] {
    hmac_parts(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Finds a valid digest in a C1 (`client == true`, client partial key) or an
/// S1 (server partial key). Returns the scheme and the digest.
pub fn find_digest(
    packet: &[u8; PACKET_SIZE],
    client: bool,
) -> Option<(DigestScheme, [u8; DIGEST_LEN])> {
    let key = if client {
        CLIENT_KEY_TEXT
    } else {
        SERVER_KEY_TEXT
    };
    // nginx-rtmp and ffmpeg both try the 772 scheme first.
    for scheme in [DigestScheme::Base772, DigestScheme::Base8] {
        let off = scheme.offset(packet);
        let want = digest_skipping(key, packet, off);
        if want[..] == packet[off..off + DIGEST_LEN] {
            return Some((scheme, want));
        }
    }
    None
}

/// Writes a digest into `packet` at the position the scheme derives.
fn write_digest(packet: &mut [u8; PACKET_SIZE], key: &[u8], scheme: DigestScheme) {
    let off = scheme.offset(packet);
    let d = digest_skipping(key, packet, off);
    packet[off..off + DIGEST_LEN].copy_from_slice(&d);
}

/// Key that signs the response (S2 / C2) to a packet carrying `peer_digest`.
fn response_key(peer_is_client: bool, peer_digest: &[u8; DIGEST_LEN]) -> [u8; DIGEST_LEN] {
    // The responder signs with its own full key.
    let own = if peer_is_client {
        full_key(SERVER_KEY_TEXT)
    } else {
        full_key(CLIENT_KEY_TEXT)
    };
    hmac_parts(&own, &[peer_digest])
}

/// Checks that the last 32 bytes of S2 sign the rest of it for `c1_digest`.
pub fn verify_s2(s2: &[u8; PACKET_SIZE], c1_digest: &[u8; DIGEST_LEN]) -> bool {
    let key = response_key(true, c1_digest);
    let sig = hmac_parts(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]);
    sig[..] == s2[PACKET_SIZE - DIGEST_LEN..]
}

/// Signs a C1 the way Flash-era clients do (used by tests, and handy for
/// exercising a server).
pub fn sign_c1(c1: &mut [u8; PACKET_SIZE], scheme: DigestScheme) {
    write_digest(c1, CLIENT_KEY_TEXT, scheme);
}

/// Deterministic filler for the random parts of S1/S2 (no secrecy is needed:
/// the bytes only have to differ between connections).
fn fill_random(buf: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(buf.chunks_mut(DIGEST_LEN)) {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(counter.to_be_bytes());
        let out = h.finalize();
        chunk.copy_from_slice(&out[..chunk.len()]);
    }
}

/// S0+S1+S2 (1 + 1536 + 1536 bytes) answering a C1.
pub fn server_response(c1: &[u8; PACKET_SIZE]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * PACKET_SIZE);
    out.push(RTMP_VERSION);
    let mut s1 = [0u8; PACKET_SIZE];
    // Time field 0 (our epoch), then the version field.
    let client_version_zero = c1[4..8] == [0, 0, 0, 0];
    let found = if client_version_zero {
        None
    } else {
        find_digest(c1, true)
    };
    let seed = Sha256::digest(c1);
    fill_random(&mut s1[8..], &seed);
    match found {
        Some((scheme, c1_digest)) => {
            s1[4..8].copy_from_slice(&SERVER_VERSION);
            write_digest(&mut s1, SERVER_KEY_TEXT, scheme);
            let mut s2 = [0u8; PACKET_SIZE];
            fill_random(&mut s2, &s1[PACKET_SIZE - DIGEST_LEN..]);
            let key = response_key(true, &c1_digest);
            let sig = hmac_parts(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]);
            s2[PACKET_SIZE - DIGEST_LEN..].copy_from_slice(&sig);
            out.extend_from_slice(&s1);
            out.extend_from_slice(&s2);
        }
        None => {
            // Plain handshake: S1 version field zero, S2 echoes C1.
            out.extend_from_slice(&s1);
            out.extend_from_slice(c1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c1_pattern(seed: u8) -> [u8; PACKET_SIZE] {
        let mut c1 = [0u8; PACKET_SIZE];
        for (i, b) in c1.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        // ffmpeg's announced version 9.0.124.2
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        c1
    }

    fn split(resp: &[u8]) -> ([u8; PACKET_SIZE], [u8; PACKET_SIZE]) {
        assert_eq!(resp.len(), 1 + 2 * PACKET_SIZE);
        assert_eq!(resp[0], 3);
        let mut s1 = [0u8; PACKET_SIZE];
        let mut s2 = [0u8; PACKET_SIZE];
        s1.copy_from_slice(&resp[1..1 + PACKET_SIZE]);
        s2.copy_from_slice(&resp[1 + PACKET_SIZE..]);
        (s1, s2)
    }

    #[test]
    fn digest_offsets_stay_in_range() {
        let mut p = [0xffu8; PACKET_SIZE];
        assert_eq!(DigestScheme::Base8.offset(&p), (4 * 255) % 728 + 12);
        assert!(DigestScheme::Base772.offset(&p) + DIGEST_LEN <= PACKET_SIZE);
        p = [0u8; PACKET_SIZE];
        assert_eq!(DigestScheme::Base772.offset(&p), 776);
    }

    #[test]
    fn digest_handshake_both_schemes() {
        for scheme in [DigestScheme::Base8, DigestScheme::Base772] {
            for seed in 0..8u8 {
                let mut c1 = c1_pattern(seed);
                sign_c1(&mut c1, scheme);
                let (found_scheme, c1_digest) = find_digest(&c1, true).expect("client digest");
                assert_eq!(found_scheme, scheme);
                let (s1, s2) = split(&server_response(&c1));
                assert_eq!(&s1[4..8], &SERVER_VERSION);
                let (s1_scheme, _) = find_digest(&s1, false).expect("S1 digest");
                assert_eq!(s1_scheme, scheme);
                assert!(verify_s2(&s2, &c1_digest));
                // A digest made with the wrong key is not accepted.
                assert!(find_digest(&s1, true).is_none());
                let mut bad = s2;
                bad[100] ^= 1;
                assert!(!verify_s2(&bad, &c1_digest));
            }
        }
    }

    #[test]
    fn plain_handshake_echoes_c1() {
        // Zero version field: plain, even if a digest happened to be present.
        let mut c1 = c1_pattern(1);
        c1[4..8].copy_from_slice(&[0, 0, 0, 0]);
        let (s1, s2) = split(&server_response(&c1));
        assert_eq!(&s1[4..8], &[0, 0, 0, 0]);
        assert_eq!(s2, c1);
        // Non-zero version but no valid digest: also plain.
        let c1 = c1_pattern(2);
        assert!(find_digest(&c1, true).is_none());
        let (s1, s2) = split(&server_response(&c1));
        assert_eq!(&s1[4..8], &[0, 0, 0, 0]);
        assert_eq!(s2, c1);
    }

    #[test]
    fn response_differs_per_client() {
        let mut a = c1_pattern(3);
        let mut b = c1_pattern(4);
        sign_c1(&mut a, DigestScheme::Base8);
        sign_c1(&mut b, DigestScheme::Base8);
        assert_ne!(server_response(&a)[9..200], server_response(&b)[9..200]);
    }
}
