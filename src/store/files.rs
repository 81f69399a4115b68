//! Media files of one stream under its directory (plain `std::fs`).
//!
//! Names: `init{v}.mp4`, `{msn}.m4s`, `{msn}.{part}.m4s`. Every file is written under a
//! temporary name in the same directory and renamed into place, so a reader never sees
//! half a file.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::index::StreamIndex;
use crate::segmenter::Output;

pub fn init_name(version: u32) -> String {
    format!("init{version}.mp4")
}

pub fn segment_name(msn: u64) -> String {
    format!("{msn}.m4s")
}

pub fn part_name(msn: u64, part: u32) -> String {
    format!("{msn}.{part}.m4s")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MediaFile {
    Init(u32),
    Segment(u64),
    Part(u64, u32),
}

fn parse_name(name: &str) -> Option<MediaFile> {
    fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    if let Some(v) = name
        .strip_prefix("init")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return num(v).map(MediaFile::Init);
    }
    let stem = name.strip_suffix(".m4s")?;
    match stem.split_once('.') {
        None => num(stem).map(MediaFile::Segment),
        Some((m, p)) => Some(MediaFile::Part(num(m)?, num(p)?)),
    }
}

/// The media files of one stream, as written by its (single) writer.
#[derive(Debug)]
pub struct StreamDir {
    dir: PathBuf,
    files: BTreeSet<MediaFile>,
}

impl StreamDir {
    /// Creates the directory (mode 0755, parents as needed) and adopts media files
    /// already in it (left by an earlier publish), so that `sweep` removes them in time.
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        let mut files = BTreeSet::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A temporary file of a writer that died mid-write.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(f) = parse_name(name) {
                files.insert(f);
            }
        }
        Ok(StreamDir {
            dir: dir.to_path_buf(),
            files,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            drop(f);
            fs::rename(&tmp, self.dir.join(name))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes the file of one segmenter output.
    pub fn write(&mut self, out: &Output) -> io::Result<()> {
        let (file, name, data) = match out {
            Output::Init { version, data, .. } => {
                (MediaFile::Init(*version), init_name(*version), data)
            }
            Output::Part {
                msn, part, data, ..
            } => (MediaFile::Part(*msn, *part), part_name(*msn, *part), data),
            Output::Segment { msn, data, .. } => {
                (MediaFile::Segment(*msn), segment_name(*msn), data)
            }
        };
        self.write_atomic(&name, data)?;
        self.files.insert(file);
        Ok(())
    }

    /// Deletes files no longer listed and past their availability: segments unlisted for
    /// at least the availability time (playlist duration, ≥ 3 × TD) or older than
    /// anything the index keeps; parts with their segment (or past a finished segment's
    /// part count); init versions older than the current one that no kept segment uses.
    pub fn sweep(&mut self, idx: &StreamIndex, now_ms: i64) -> io::Result<()> {
        let avail = idx.availability_ms();
        let oldest = idx.oldest_msn();
        let next = idx.next_msn();
        let segment_gone = |msn: u64| -> bool {
            match idx.segment(msn) {
                Some(s) => !s.listed() && now_ms.saturating_sub(s.unlisted_ms) >= avail,
                None => match oldest {
                    Some(o) => msn < o,
                    // Nothing kept: everything before the next segment is gone.
                    None => msn < next,
                },
            }
        };
        let used_inits: BTreeSet<u32> = idx.segments().map(|s| s.init_version).collect();
        let current_init = idx.init_version();
        let mut doomed = Vec::new();
        for f in &self.files {
            let gone = match *f {
                MediaFile::Segment(msn) => segment_gone(msn),
                MediaFile::Part(msn, part) => {
                    segment_gone(msn)
                        || idx
                            .segment(msn)
                            .is_some_and(|s| part >= s.parts && msn < next)
                }
                MediaFile::Init(v) => v < current_init && !used_inits.contains(&v),
            };
            if gone {
                doomed.push(*f);
            }
        }
        let mut first_err = None;
        for f in doomed {
            let name = match f {
                MediaFile::Init(v) => init_name(v),
                MediaFile::Segment(m) => segment_name(m),
                MediaFile::Part(m, p) => part_name(m, p),
            };
            match fs::remove_file(self.dir.join(name)) {
                Ok(()) => {
                    self.files.remove(&f);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.files.remove(&f);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Number of media files this writer knows of.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Removes a stream's directory and everything in it; a missing directory is fine.
pub fn remove_stream_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name("init3.mp4"), Some(MediaFile::Init(3)));
        assert_eq!(parse_name("12.m4s"), Some(MediaFile::Segment(12)));
        assert_eq!(parse_name("12.4.m4s"), Some(MediaFile::Part(12, 4)));
        for bad in [
            "index.m3u8",
            "x.m4s",
            "1.2.3.m4s",
            "init.mp4",
            "+1.m4s",
            ".1.m4s.tmp",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(parse_name(&part_name(7, 0)), Some(MediaFile::Part(7, 0)));
    }
}
