//! The multivariant playlist: one variant, the stream's media playlist.

use std::fmt::Write;

use crate::store::StreamIndex;

/// Renders the multivariant playlist with one EXT-X-STREAM-INF for `media_uri`
/// (relative, e.g. `index.m3u8`): BANDWIDTH = peak segment bit rate, AVERAGE-BANDWIDTH
/// = average segment bit rate, CODECS of every track, RESOLUTION and FRAME-RATE for
/// video. Before the first segment the bit rates are estimated from the parts.
pub fn multivariant_playlist(idx: &StreamIndex, media_uri: &str) -> String {
    let mut o = String::with_capacity(256);
    o.push_str("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let peak = idx.peak_bandwidth().max(1);
    let avg = idx.average_bandwidth().clamp(1, peak);
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
    o
}
