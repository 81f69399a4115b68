//! Names of a stream's resources: stream keys, file names and the URIs that address them.
//! One place decides them, so ingest (which writes files) and HTTP (which serves them)
//! can never disagree.

/// Longest accepted stream key (the index stores keys up to this length).
pub use super::index::MAX_KEY_LEN;

/// Stream keys are `[A-Za-z0-9_-]{1,64}`: nothing else can ever reach a path.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A resource of one stream, as named in a URI's last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MediaFile {
    MediaPlaylist,
    MultivariantPlaylist,
    Init {
        version: u32,
    },
    Segment {
        msn: u64,
    },
    Part {
        msn: u64,
        part: u32,
    },
    /// The MPEG-TS rendition of segment `msn`.
    TsSegment {
        msn: u64,
    },
}

impl MediaFile {
    pub fn parse(name: &str) -> Option<MediaFile> {
        match name {
            "index.m3u8" => return Some(MediaFile::MediaPlaylist),
            "master.m3u8" => return Some(MediaFile::MultivariantPlaylist),
            _ => {}
        }
        if let Some(v) = name
            .strip_prefix("init")
            .and_then(|s| s.strip_suffix(".mp4"))
        {
            return number(v).map(|version| MediaFile::Init { version });
        }
        if let Some(msn) = name.strip_suffix(".ts") {
            return number(msn).map(|msn| MediaFile::TsSegment { msn });
        }
        let stem = name.strip_suffix(".m4s")?;
        match stem.split_once('.') {
            None => number(stem).map(|msn| MediaFile::Segment { msn }),
            Some((msn, part)) => Some(MediaFile::Part {
                msn: number(msn)?,
                part: number(part)?,
            }),
        }
    }

    /// The file name (and relative URI) of this resource.
    pub fn name(&self) -> String {
        match *self {
            MediaFile::MediaPlaylist => "index.m3u8".into(),
            MediaFile::MultivariantPlaylist => "master.m3u8".into(),
            MediaFile::Init { version } => format!("init{version}.mp4"),
            MediaFile::Segment { msn } => format!("{msn}.m4s"),
            MediaFile::Part { msn, part } => format!("{msn}.{part}.m4s"),
            MediaFile::TsSegment { msn } => format!("{msn}.ts"),
        }
    }
}

/// Canonical decimal only: no sign, no leading zeros, no overflow.
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty()
        || s.len() > 19
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Split a request path ending in `/{key}/{file}` into a valid key and the file name.
pub fn split_uri(uri: &[u8]) -> Option<(&str, &str)> {
    let uri = std::str::from_utf8(uri).ok()?;
    let (rest, file) = uri.rsplit_once('/')?;
    let key = rest.rsplit('/').next()?;
    valid_key(key).then_some((key, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(valid_key("demo_720-a"));
        assert!(!valid_key(""));
        assert!(!valid_key("../etc"));
        assert!(!valid_key("a/b"));
        assert!(!valid_key("a.b"));
        assert!(!valid_key(&"a".repeat(65)));
        assert!(valid_key(&"a".repeat(64)));
    }

    #[test]
    fn files_round_trip() {
        for f in [
            MediaFile::MediaPlaylist,
            MediaFile::MultivariantPlaylist,
            MediaFile::Init { version: 3 },
            MediaFile::Segment { msn: 0 },
            MediaFile::Segment { msn: 123 },
            MediaFile::Part { msn: 7, part: 0 },
            MediaFile::Part { msn: 7, part: 11 },
            MediaFile::TsSegment { msn: 0 },
            MediaFile::TsSegment { msn: 42 },
        ] {
            assert_eq!(MediaFile::parse(&f.name()), Some(f));
        }
        for bad in [
            "01.m4s",
            "-1.m4s",
            "1..m4s",
            "1.2.3.m4s",
            "x.m4s",
            "init.mp4",
            "index.m3u",
            "1.m4s.tmp",
            "99999999999999999999.m4s",
            "01.ts",
            "1.2.ts",
            ".ts",
            "x.ts",
            "1.ts.tmp",
            "-3.ts",
        ] {
            assert_eq!(MediaFile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn uris() {
        assert_eq!(
            split_uri(b"/live/demo/index.m3u8"),
            Some(("demo", "index.m3u8"))
        );
        assert_eq!(split_uri(b"/demo/3.m4s"), Some(("demo", "3.m4s")));
        assert_eq!(split_uri(b"/live/../index.m3u8"), None);
        assert_eq!(split_uri(b"index.m3u8"), None);
    }
}
