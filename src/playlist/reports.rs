//! EXT-X-RENDITION-REPORT: where the other renditions of an ABR group stand, so an LL-HLS
//! client can switch with a blocking request for the right part.

use std::fmt::Write;

use crate::store::{StreamIndex, StreamState};

/// The last part of one other rendition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RenditionReport {
    /// Relative URI of its media playlist, e.g. `../demo_480/index.m3u8`.
    pub uri: String,
    pub last_msn: u64,
    pub last_part: u32,
}

impl RenditionReport {
    /// None while the rendition has no part yet or is not live.
    pub fn of(idx: &StreamIndex, uri: String) -> Option<RenditionReport> {
        if idx.state() != StreamState::Live {
            return None;
        }
        let (last_msn, last_part) = idx.last_part()?;
        Some(RenditionReport {
            uri,
            last_msn,
            last_part,
        })
    }
}

/// The report tags, one line each.
pub fn rendition_reports(reports: &[RenditionReport]) -> String {
    let mut o = String::new();
    for r in reports {
        let _ = writeln!(
            o,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
            r.uri, r.last_msn, r.last_part
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_tag_per_rendition() {
        let text = rendition_reports(&[
            RenditionReport {
                uri: "../demo_480/index.m3u8".into(),
                last_msn: 12,
                last_part: 3,
            },
            RenditionReport {
                uri: "../demo_720/index.m3u8".into(),
                last_msn: 11,
                last_part: 0,
            },
        ]);
        assert_eq!(
            text,
            "#EXT-X-RENDITION-REPORT:URI=\"../demo_480/index.m3u8\",LAST-MSN=12,LAST-PART=3\n\
             #EXT-X-RENDITION-REPORT:URI=\"../demo_720/index.m3u8\",LAST-MSN=11,LAST-PART=0\n"
        );
        assert_eq!(rendition_reports(&[]), "");
    }

    #[test]
    fn no_report_for_a_stream_without_parts() {
        assert_eq!(RenditionReport::of(&StreamIndex::ZERO, "x".into()), None);
    }
}
