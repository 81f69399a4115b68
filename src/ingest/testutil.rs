//! What the in-memory tests of the ingest side share: a zone table in memory and a
//! connection with the test settings.

use std::path::PathBuf;

use super::{Connection, IngestConfig, SharedIndex};
use crate::auth::publish::Secrets;
use crate::store::{StreamIndex, Table};

/// The shared table, in memory.
pub struct Slots(pub Vec<StreamIndex>);

impl Slots {
    pub fn new(n: usize) -> Self {
        Slots(vec![StreamIndex::ZERO; n])
    }

    pub fn has(&mut self, key: &str) -> bool {
        let mut found = false;
        self.with_table(&mut |t| found = t.find(key).is_some());
        found
    }
}

impl SharedIndex for Slots {
    fn with_table(&mut self, f: &mut dyn FnMut(&mut Table)) -> bool {
        f(&mut Table::new(&mut self.0));
        true
    }
}

/// A connection publishing under a fresh temporary folder named after `tag` and `name`
/// (2 s segments, 200 ms parts, no grace, no takeover), and that folder.
pub fn conn(tag: &str, name: &str, callback: bool, secrets: Secrets) -> (Connection, PathBuf) {
    let root = std::env::temp_dir().join(format!("vid-{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let c = Connection::new(IngestConfig {
        root: root.clone(),
        segment_target_ms: 2000,
        part_target_ms: 200,
        window: 6,
        max_message_size: 1 << 20,
        owner: 1,
        ts: false,
        publish_secrets: secrets,
        publish_callback: callback,
        lifecycle: Default::default(),
        record: None,
    });
    (c, root)
}
