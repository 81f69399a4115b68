//! Media files of one stream under its directory (plain `std::fs`).
//!
//! Names: `init{v}.mp4`, `{msn}.m4s`, `{msn}.ts`. A segment's file is built by appending
//! its parts as they are cut; a part (`{msn}.{part}.m4s` in playlists) is a byte range of
//! it, served only once the index lists it, so a reader never gets a part that is not
//! all on disk. Init sections and TS segments are written whole under a temporary name
//! and renamed into place.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::index::StreamIndex;
use super::names::MediaFile;
use crate::segmenter::Output;

/// The media files of one stream, as written by its (single) writer.
#[derive(Debug)]
pub struct StreamDir {
    dir: PathBuf,
    files: BTreeSet<MediaFile>,
    /// The segment being built: its parts are appended to `{msn}.m4s` as they come, and
    /// a part is served as its byte range of that file (see
    /// [`StreamIndex::part_range`]), so one file per segment holds the media once.
    building: Option<(u64, fs::File)>,
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
            if let Some(
                f @ (MediaFile::Init { .. }
                | MediaFile::Segment { .. }
                | MediaFile::Part { .. }
                | MediaFile::TsSegment { .. }),
            ) = MediaFile::parse(name)
            {
                files.insert(f);
            }
        }
        Ok(StreamDir {
            dir: dir.to_path_buf(),
            files,
            building: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let result = (|| {
            let mut f = match create_file(&tmp) {
                // The folder of an ended stream with the same key was just removed by
                // housekeeping: make it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&self.dir)?;
                    create_file(&tmp)?
                }
                r => r?,
            };
            f.write_all(data)?;
            drop(f);
            fs::rename(&tmp, self.dir.join(name))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes one segmenter output: a part is appended to its segment's file (the index
    /// lists it only afterwards, and the segment only once complete); a segment, whose
    /// parts were all appended, is then complete as it stands; init sections and TS
    /// segments are written whole, atomically.
    pub fn write(&mut self, out: &Output) -> io::Result<()> {
        let (file, data) = match out {
            Output::Part { msn, data, .. } => return self.append_part(*msn, data),
            Output::Segment { msn, .. } => {
                return match self.building.take() {
                    Some((building, _)) if building == *msn => Ok(()),
                    _ => Err(io::Error::other(format!(
                        "segment {msn} ends without its parts"
                    ))),
                };
            }
            Output::Init { version, data, .. } => (MediaFile::Init { version: *version }, data),
            Output::TsSegment { msn, data, .. } => (MediaFile::TsSegment { msn: *msn }, data),
        };
        self.write_atomic(&file.name(), data)?;
        self.files.insert(file);
        Ok(())
    }

    fn append_part(&mut self, msn: u64, data: &[u8]) -> io::Result<()> {
        if self.building.as_ref().is_none_or(|(m, _)| *m != msn) {
            let path = self.dir.join(MediaFile::Segment { msn }.name());
            let f = match create_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&self.dir)?;
                    create_file(&path)?
                }
                r => r?,
            };
            self.files.insert(MediaFile::Segment { msn });
            self.building = Some((msn, f));
        }
        let (_, f) = self.building.as_mut().expect("segment file");
        f.write_all(data)
    }

    /// Deletes files no longer listed and past their availability: segments unlisted for
    /// at least the availability time (playlist duration, ≥ 3 × TD) or older than
    /// anything the index keeps; parts and TS renditions with their segment (parts also
    /// past a finished segment's part count); init versions older than the current one that no kept segment uses.
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
                MediaFile::Segment { msn } | MediaFile::TsSegment { msn } => segment_gone(msn),
                MediaFile::Part { msn, part } => {
                    segment_gone(msn)
                        || idx
                            .segment(msn)
                            .is_some_and(|s| part >= s.parts && msn < next)
                }
                MediaFile::Init { version } => {
                    version < current_init && !used_inits.contains(&version)
                }
                MediaFile::MediaPlaylist | MediaFile::MultivariantPlaylist => false,
            };
            if gone {
                doomed.push(*f);
            }
        }
        let mut first_err = None;
        for f in doomed {
            match fs::remove_file(self.dir.join(f.name())) {
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

/// Media files are world-readable, writable by their writer only (0644).
fn create_file(path: &Path) -> io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o644);
    }
    opts.open(path)
}

/// Removes a stream's directory and everything in it; a missing directory is fine.
pub fn remove_stream_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
