//! What the archive asks of a search engine. The embedded tantivy index ([`SearchIndex`]) is the
//! first; an engine on its own servers would be a sibling. The query language and the scope rule
//! (tenant, visibility) are part of the request, so every engine answers the same question.

use crate::Result;
use crate::schema::IndexDocument;
use crate::search::{Scope, SearchIndex, SearchRequest, SearchResults};

pub trait SearchBackend: Send + Sync {
    /// Adds or replaces these documents (by message id) and commits them.
    fn apply(&self, docs: &[IndexDocument]) -> Result<()>;
    /// Sees what was committed since (by this process or a writer beside it).
    fn reload(&self) -> Result<()>;
    /// One page of results, with the exact total.
    fn search(&self, req: &SearchRequest) -> Result<SearchResults>;
    /// Every matching id, unpaged (exports).
    fn all_ids(&self, query: &str, scope: &Scope) -> Result<Vec<u64>>;
    /// True when message `id` is among what the query finds in the scope.
    fn matches(&self, query: &str, scope: &Scope, id: u64) -> Result<bool>;
    /// Removes the documents of these messages and commits.
    fn remove(&self, ids: &[u64]) -> Result<()>;
    /// Leaves nothing of removed documents in the engine's storage.
    fn purge(&self) -> Result<()>;
    /// Removes every document (before a rebuild).
    fn clear(&self) -> Result<()>;
    /// Finishes background work (merges) before the process ends.
    fn finish_writing(&self) -> Result<()>;
    /// The parts of the index whose checksums fail.
    fn damaged_files(&self) -> Result<Vec<String>>;
    /// Sets a damaged index aside and starts an empty one; says where the old one went.
    fn replace(&self) -> Result<String>;
}

impl SearchBackend for SearchIndex {
    fn apply(&self, docs: &[IndexDocument]) -> Result<()> {
        SearchIndex::apply(self, docs)
    }
    fn reload(&self) -> Result<()> {
        SearchIndex::reload(self)
    }
    fn search(&self, req: &SearchRequest) -> Result<SearchResults> {
        SearchIndex::search(self, req)
    }
    fn all_ids(&self, query: &str, scope: &Scope) -> Result<Vec<u64>> {
        SearchIndex::all_ids(self, query, scope)
    }
    fn matches(&self, query: &str, scope: &Scope, id: u64) -> Result<bool> {
        SearchIndex::matches(self, query, scope, id)
    }
    fn remove(&self, ids: &[u64]) -> Result<()> {
        SearchIndex::remove(self, ids)
    }
    fn purge(&self) -> Result<()> {
        SearchIndex::purge(self)
    }
    fn clear(&self) -> Result<()> {
        SearchIndex::clear(self)
    }
    fn finish_writing(&self) -> Result<()> {
        SearchIndex::finish_writing(self)
    }
    fn damaged_files(&self) -> Result<Vec<String>> {
        SearchIndex::damaged_files(self)
    }
    fn replace(&self) -> Result<String> {
        SearchIndex::replace(self).map(|p| p.display().to_string())
    }
}
