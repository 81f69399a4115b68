//! The multivariant playlist: the stream's media playlist, or every rendition of an ABR
//! group (streams published under related keys, e.g. `demo_720`, `demo_480`).

use std::fmt::Write;

use super::Format;
use crate::store::StreamIndex;

/// Renders the multivariant playlist with one EXT-X-STREAM-INF for `media_uri`
/// (relative, e.g. `index.m3u8`): BANDWIDTH = peak segment bit rate, AVERAGE-BANDWIDTH
/// = average segment bit rate, CODECS of every track, RESOLUTION and FRAME-RATE for
/// video. Before the first segment the bit rates are estimated from the parts.
pub fn multivariant_playlist(idx: &StreamIndex, media_uri: &str) -> String {
    variants_playlist(&[(idx, media_uri)], Format::Fmp4)
}

/// The multivariant playlist of several renditions, in the order given: one
/// EXT-X-STREAM-INF per `(index, media playlist URI)`, each with its own measured
/// bit rates, codecs, resolution and frame rate, in `format` (MPEG-TS renditions: the
/// bit rates scaled by the measured TS/fMP4 size ratio).
pub fn variants_playlist(variants: &[(&StreamIndex, &str)], format: Format) -> String {
    let mut o = String::with_capacity(128 + 160 * variants.len());
    o.push_str("#EXTM3U\n");
    if variants.iter().all(|(idx, _)| idx.independent_segments()) {
        o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for (idx, uri) in variants {
        let permille = match format {
            Format::Ts => idx.ts_size_permille(),
            Format::Fmp4 => 1_000,
        };
        stream_inf(&mut o, idx, uri, permille);
    }
    o
}

/// The multivariant playlist of the MPEG-TS rendition: as [`multivariant_playlist`],
/// with the bit rates scaled by the measured TS/fMP4 size ratio
/// ([`StreamIndex::ts_size_permille`]).
pub fn ts_multivariant_playlist(idx: &StreamIndex, media_uri: &str) -> String {
    variants_playlist(&[(idx, media_uri)], Format::Ts)
}

fn stream_inf(o: &mut String, idx: &StreamIndex, media_uri: &str, permille: u64) {
    let scale = |bps: u64| (bps as u128 * permille as u128).div_ceil(1_000) as u64;
    let peak = scale(idx.peak_bandwidth()).max(1);
    let avg = scale(idx.average_bandwidth()).clamp(1, peak);
    let _ = write!(
        o,
        "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={avg}"
    );
    let codecs: Vec<&str> = [idx.video_codec(), idx.audio_codec()]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    if !codecs.is_empty() {
        let _ = write!(o, ",CODECS=\"{}\"", codecs.join(","));
    }
    if let Some((w, h)) = idx.resolution() {
        let _ = write!(o, ",RESOLUTION={w}x{h}");
    }
    if let Some(fps) = idx.frame_rate() {
        let _ = write!(o, ",FRAME-RATE={fps:.3}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "{media_uri}");
}
