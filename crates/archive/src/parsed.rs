//! Parsed documents handed from ingest to the indexer, so a message just archived is not read back
//! and parsed a second time. Only an optimisation: the indexer reads and parses the original from
//! the store whenever a document is not here (after a restart, for merges, beyond the budget).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coffer_mail::ArchivedDocument;

/// Text bytes the cache may hold; beyond it new documents are not kept.
const BUDGET: usize = 256 << 20;

#[derive(Clone, Default)]
pub struct ParsedCache {
    /// The documents by message id, and the text bytes they hold.
    inner: Arc<Mutex<(Documents, usize)>>,
}

type Documents = HashMap<i64, Arc<ArchivedDocument>>;

fn weight(doc: &ArchivedDocument) -> usize {
    doc.body.len() + doc.attachments.iter().map(|a| a.text.as_ref().map_or(0, String::len)).sum::<usize>() + 512
}

impl ParsedCache {
    pub fn put(&self, id: i64, doc: Arc<ArchivedDocument>) {
        let mut guard = self.inner.lock().unwrap();
        let (map, bytes) = &mut *guard;
        let w = weight(&doc);
        if *bytes + w <= BUDGET && map.insert(id, doc).is_none() {
            *bytes += w;
        }
    }

    pub fn take(&self, id: i64) -> Option<Arc<ArchivedDocument>> {
        let mut guard = self.inner.lock().unwrap();
        let (map, bytes) = &mut *guard;
        let doc = map.remove(&id)?;
        *bytes -= weight(&doc);
        Some(doc)
    }
}
