//! What a request under a stream's tree gets, decided from the index: whether a media
//! file may be sent (and which bytes of which file), its content type, how long a request
//! may be held, and the renditions of an ABR group (`hls_live_variants`) with the URIs
//! the multivariant playlist gives them.
//!
//! The server glue only looks the streams up and sends what is decided here.

use super::{max_age, variants_playlist, Format};
use crate::store::names::{self, MediaFile};
use crate::store::StreamIndex;

/// MIME type of MPEG-TS segments (also for audio-only streams, as HLS players expect).
pub const TS_MIME: &str = "video/mp2t";

/// What the index says of a requested media file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Avail {
    /// Not (or no longer, or not yet) a resource of the stream.
    No,
    /// The next part, announced by the preload hint (only with LL-HLS): hold the GET
    /// until the whole part exists.
    Hinted,
    /// A part: (offset, length) in its segment's file.
    Range((u64, u64)),
    /// A whole file (segment, init section, TS segment).
    Whole,
}

/// Whether `media` of the stream `idx` may be sent. Media is gated by the index: the file
/// of the segment being built already exists (its parts are appended to it) but is not a
/// segment until listed. `low_latency`: the location advertises the preload hint.
pub fn media_avail(idx: &StreamIndex, media: MediaFile, low_latency: bool) -> Avail {
    match media {
        MediaFile::Part { msn, part } => match idx.part_range(msn, part) {
            Some(range) => Avail::Range(range),
            None if low_latency && idx.next_part() == Some((msn, part)) => Avail::Hinted,
            None => Avail::No,
        },
        MediaFile::Segment { msn } if idx.segment(msn).is_none() => Avail::No,
        _ => Avail::Whole,
    }
}

/// Content type of a media file of a stream with (or without) video.
pub fn media_content_type(media: MediaFile, has_video: bool) -> &'static str {
    match media {
        MediaFile::TsSegment { .. } => TS_MIME,
        _ if has_video => "video/mp4",
        _ => "audio/mp4",
    }
}

/// The file on disk that holds `media` in the stream folder `dir`: a part lives in its
/// segment's file.
pub fn media_path(dir: &str, media: MediaFile) -> String {
    let file = match media {
        MediaFile::Part { msn, .. } => MediaFile::Segment { msn },
        m => m,
    };
    format!("{dir}/{}", file.name())
}

/// How long a request may be held: 3 × target duration (then 503).
pub fn hold_limit_ms(idx: &StreamIndex) -> i64 {
    3 * 1000 * idx.target_duration().max(1) as i64
}

/// The base key of `key`'s ABR group (`demo` for `demo_720`): `key` without the longest
/// of the configured `suffixes` it ends in (and is longer than), if any.
pub fn variant_base<'a>(suffixes: &[&str], key: &'a str) -> Option<&'a str> {
    suffixes
        .iter()
        .filter(|s| key.len() > s.len() && key.ends_with(*s))
        .max_by_key(|s| s.len())
        .map(|s| &key[..key.len() - s.len()])
}

/// The ABR group of `key`: every valid variant key, in the order the suffixes are
/// configured. A key that ends in a suffix belongs to the group of its base
/// (`demo_720` → `demo`); a base key names its own group.
pub fn variant_keys(suffixes: &[&str], key: &str) -> Vec<String> {
    let base = variant_base(suffixes, key).unwrap_or(key);
    suffixes
        .iter()
        .map(|s| format!("{base}{s}"))
        .filter(|k| names::valid_key(k))
        .collect()
}

/// Whether a stream has a playlist of `format` to offer in a multivariant playlist.
pub fn offers(idx: &StreamIndex, format: Format) -> bool {
    idx.target_duration_decided() && (format == Format::Fmp4 || idx.has_ts())
}

/// The renditions of the multivariant playlist of `key`: those of its `group` that
/// `lookup` finds (in group order); when none, `key` alone, a stream outside any group
/// being its own single variant. Empty: nothing to offer (404).
pub fn pick_variants<T>(
    group: &[String],
    key: &str,
    mut lookup: impl FnMut(&str) -> Option<T>,
) -> Vec<(String, T)> {
    let mut collect = |keys: &mut dyn Iterator<Item = &str>| -> Vec<(String, T)> {
        keys.filter_map(|k| lookup(k).map(|t| (k.to_owned(), t)))
            .collect()
    };
    let found = collect(&mut group.iter().map(String::as_str));
    if !found.is_empty() {
        return found;
    }
    collect(&mut std::iter::once(key))
}

/// The URI of each picked rendition, relative to `key`'s folder: `index.m3u8` when the
/// only rendition is `key` itself, `../{k}/index.m3u8` otherwise.
pub fn variant_uris(picked: &[&str], key: &str) -> Vec<String> {
    let single = picked.len() == 1 && picked[0] == key;
    picked
        .iter()
        .map(|k| {
            if single {
                "index.m3u8".to_owned()
            } else {
                format!("../{k}/index.m3u8")
            }
        })
        .collect()
}

/// The multivariant playlist of `key` over the picked renditions ([`pick_variants`]),
/// and its Cache-Control max-age: the shortest of theirs.
pub fn group_playlist(
    picked: &[(String, &StreamIndex)],
    key: &str,
    format: Format,
) -> (String, u32) {
    let keys: Vec<&str> = picked.iter().map(|(k, _)| k.as_str()).collect();
    let uris = variant_uris(&keys, key);
    let variants: Vec<(&StreamIndex, &str)> = picked
        .iter()
        .zip(&uris)
        .map(|((_, i), u)| (*i, u.as_str()))
        .collect();
    let body = variants_playlist(&variants, format);
    let max_age = picked
        .iter()
        .map(|(_, i)| max_age(i, false))
        .min()
        .unwrap_or(1);
    (body, max_age)
}
