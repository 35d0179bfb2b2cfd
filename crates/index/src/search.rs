use rayon::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::query::{self, Expr};
use crate::schema::{Fields, IndexDocument, normalize_address, normalize_mailbox};
use crate::{IndexError, Result};

/// Who is searching: always one tenant; for a user role, only messages where one of their
/// addresses takes part or that sit in one of their mailboxes.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// None: every tenant (a system administrator's search across tenants).
    pub tenant: Option<u64>,
    /// None: the whole tenant (administrators, auditors).
    pub visible_to: Option<Visibility>,
}

#[derive(Debug, Clone, Default)]
pub struct Visibility {
    pub addresses: Vec<String>,
    pub mailboxes: Vec<String>,
}

/// The most results one page may hold.
pub const MAX_PAGE: usize = 10_000;
/// The deepest position a page may reach (offset + limit); past it, narrow the query or export.
pub const MAX_RESULT_WINDOW: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest first.
    #[default]
    Date,
    Oldest,
    Relevance,
    /// Largest first.
    Size,
}

impl Sort {
    /// `date` (newest first), `oldest`, `relevance`, `size` (largest first).
    pub fn parse(name: &str) -> Option<Sort> {
        match name {
            "date" | "newest" => Some(Sort::Date),
            "oldest" => Some(Sort::Oldest),
            "relevance" => Some(Sort::Relevance),
            "size" | "largest" => Some(Sort::Size),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sort::Date => "date",
            Sort::Oldest => "oldest",
            Sort::Relevance => "relevance",
            Sort::Size => "size",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub scope: Scope,
    pub limit: usize,
    pub offset: usize,
    pub sort: Sort,
    pub snippets: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: u64,
    pub score: f32,
    pub snippet: Option<Snippet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub fragment: String,
    /// Byte ranges of `fragment` that matched.
    pub highlighted: Vec<std::ops::Range<usize>>,
    /// The attachment the fragment comes from; None for the body.
    pub attachment: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// Exact number of matching messages.
    pub total: usize,
    pub hits: Vec<Hit>,
}

pub struct SearchIndex {
    dir: Option<std::path::PathBuf>,
    fields: Fields,
    open: std::sync::RwLock<Arc<Opened>>,
    writer: Mutex<Option<IndexWriter>>,
}

struct Opened {
    index: Index,
    reader: IndexReader,
}

/// What `open_or_replace` found in the index folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An index that opened.
    Intact,
    /// No index yet: a new, empty one was made.
    Missing,
    /// An index that does not open (damaged, or of another schema) was moved aside and a new,
    /// empty one made; the text says why and where the old one went.
    Replaced(String),
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it when missing; fails on a damaged one.
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Io(dir.display().to_string(), e))?;
        let (_, fields) = Fields::schema();
        let open = Self::open_dir(dir)?;
        Ok(SearchIndex {
            dir: Some(dir.to_owned()),
            fields,
            open: std::sync::RwLock::new(Arc::new(open)),
            writer: Mutex::new(None),
        })
    }

    /// Opens the index in `dir` for a process that writes it. The index is derived, so a missing,
    /// damaged or outdated one never stops the archive: it is moved aside and a new one made, and
    /// the caller queues everything for indexing.
    pub fn open_or_replace(dir: &Path) -> Result<(SearchIndex, Found)> {
        let existed = dir.join("meta.json").exists();
        match SearchIndex::open(dir) {
            Ok(index) if existed => Ok((index, Found::Intact)),
            Ok(index) => Ok((index, Found::Missing)),
            Err(e @ (IndexError::Io(..) | IndexError::Locked)) => Err(e),
            Err(e) => {
                let aside = set_aside(dir)?;
                let index = SearchIndex::open(dir)?;
                Ok((index, Found::Replaced(format!("{e}; moved to {}", aside.display()))))
            }
        }
    }

    /// An empty index in memory, for a read-only process that found the folder's index damaged:
    /// searches answer nothing until the serving process has rebuilt it.
    pub fn in_memory() -> SearchIndex {
        let (schema, fields) = Fields::schema();
        let index = Index::create_in_ram(schema);
        index.tokenizers().register(crate::analyzer::ANALYZER, crate::analyzer::analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().expect("an index in memory");
        SearchIndex {
            dir: None,
            fields,
            open: std::sync::RwLock::new(Arc::new(Opened { index, reader })),
            writer: Mutex::new(None),
        }
    }

    fn open_dir(dir: &Path) -> Result<Opened> {
        let (schema, _) = Fields::schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)?;
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(crate::analyzer::ANALYZER, crate::analyzer::analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        // Every segment's files must be there and open.
        for segment in reader.searcher().segment_readers() {
            segment.get_store_reader(0).map_err(|e| IndexError::Tantivy(e.into()))?;
        }
        Ok(Opened { index, reader })
    }

    fn current(&self) -> Arc<Opened> {
        self.open.read().unwrap().clone()
    }

    /// Checks every index file against its checksum (reads the whole index, so it runs in the
    /// background); the names of damaged files, empty when the index is whole.
    pub fn damaged_files(&self) -> Result<Vec<String>> {
        let files = self.current().index.validate_checksum()?;
        Ok(files.into_iter().map(|p| p.display().to_string()).collect())
    }

    /// Moves a damaged index aside and starts a new, empty one in its place (the caller queues
    /// everything for indexing). Returns where the old one went.
    pub fn replace(&self) -> Result<std::path::PathBuf> {
        let Some(dir) = &self.dir else { return Err(IndexError::Corrupt("an index in memory cannot be replaced")) };
        // The new, empty index is made first beside the old one: when that fails (a full disk),
        // nothing has changed.
        let fresh = dir.with_extension("new");
        let _ = std::fs::remove_dir_all(&fresh);
        std::fs::create_dir_all(&fresh).map_err(|e| IndexError::Io(fresh.display().to_string(), e))?;
        drop(Self::open_dir(&fresh)?);
        let mut writer = self.writer.lock().unwrap();
        if let Some(w) = writer.take() {
            // A damaged index may fail to finish its merges; its files go aside anyway.
            let _ = w.wait_merging_threads();
        }
        let aside = set_aside(dir)?;
        std::fs::rename(&fresh, dir).map_err(|e| IndexError::Io(dir.display().to_string(), e))?;
        *self.open.write().unwrap() = Arc::new(Self::open_dir(dir)?);
        Ok(aside)
    }

    /// Adds or replaces documents (by message id) and commits. The first call takes the index's
    /// write lock, which one process holds at a time.
    pub fn apply(&self, docs: &[IndexDocument]) -> Result<()> {
        let mut guard = self.writer.lock().unwrap();
        let writer = self.writer_in(&mut guard)?;
        // Analysis (stemming above all) runs on every core, a few documents at a time so that
        // their analysed copies stay few; the writer takes them in order.
        for chunk in docs.chunks(64) {
            let built: Vec<_> = chunk.par_iter().map(|d| (d.id, self.fields.document(d))).collect();
            for (id, document) in built {
                writer.delete_term(Term::from_field_u64(self.fields.id, id));
                writer.add_document(document)?;
            }
        }
        writer.commit()?;
        self.current().reader.reload()?;
        Ok(())
    }

    /// Removes the documents of these messages (deleted from the archive) and commits.
    pub fn remove(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer.lock().unwrap();
        let writer = self.writer_in(&mut guard)?;
        for id in ids {
            writer.delete_term(Term::from_field_u64(self.fields.id, *id));
        }
        writer.commit()?;
        self.current().reader.reload()?;
        Ok(())
    }

    /// Rewrites every segment that holds removed documents and deletes the files no longer used,
    /// so nothing of a removed document (its terms, its preview) stays in the index's files.
    pub fn purge(&self) -> Result<()> {
        let mut guard = self.writer.lock().unwrap();
        // Background merges finish first: a segment being merged cannot be merged again.
        if let Some(writer) = guard.take() {
            writer.wait_merging_threads()?;
        }
        let writer = self.writer_in(&mut guard)?;
        let with_deletes: Vec<tantivy::index::SegmentId> = self
            .current()
            .index
            .searchable_segment_metas()?
            .iter()
            .filter(|m| m.has_deletes())
            .map(|m| m.id())
            .collect();
        if !with_deletes.is_empty() {
            writer.merge(&with_deletes).wait()?;
        }
        writer.garbage_collect_files().wait()?;
        self.current().reader.reload()?;
        Ok(())
    }

    /// Deletes every document (before a rebuild).
    pub fn clear(&self) -> Result<()> {
        let mut guard = self.writer.lock().unwrap();
        let writer = self.writer_in(&mut guard)?;
        writer.delete_all_documents()?;
        writer.commit()?;
        self.current().reader.reload()?;
        Ok(())
    }

    fn writer_in<'a>(&self, slot: &'a mut Option<IndexWriter>) -> Result<&'a mut IndexWriter> {
        if slot.is_none() {
            let writer = self.current().index.writer(128 << 20).map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => IndexError::Locked,
                other => other.into(),
            })?;
            *slot = Some(writer);
        }
        Ok(slot.as_mut().unwrap())
    }

    /// Lets the background segment merges finish and releases the write lock (after a large
    /// import: fewer, larger segments are smaller and faster to search).
    pub fn finish_writing(&self) -> Result<()> {
        if let Some(writer) = self.writer.lock().unwrap().take() {
            writer.wait_merging_threads()?;
            self.current().reader.reload()?;
        }
        Ok(())
    }

    pub fn reload(&self) -> Result<()> {
        Ok(self.current().reader.reload()?)
    }

    pub fn num_docs(&self) -> u64 {
        self.current().reader.searcher().num_docs()
    }

    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults> {
        let expr = query::parse(&req.query)?;
        let user_query = crate::compile::compile(&expr, &self.fields, req.scope.visible_to.as_ref())?;
        let query = self.scoped(user_query, &req.scope);
        let searcher = self.current().reader.searcher();
        // A ranked page keeps offset + limit candidates in memory: both are bounded here, whatever
        // a client asked for, so no request sizes an allocation.
        let limit = req.limit.clamp(1, MAX_PAGE);
        if req.offset.saturating_add(limit) > MAX_RESULT_WINDOW {
            let total = searcher.search(&query, &Count)?;
            if req.offset >= total {
                return Ok(SearchResults { total, hits: Vec::new() });
            }
            return Err(IndexError::TooDeep { offset: req.offset, window: MAX_RESULT_WINDOW });
        }
        let (total, addresses): (usize, Vec<(f32, DocAddress)>) = match req.sort {
            Sort::Date | Sort::Oldest => {
                let order = if req.sort == Sort::Date { Order::Desc } else { Order::Asc };
                let top = TopDocs::with_limit(limit).and_offset(req.offset).order_by_fast_field::<i64>("date", order);
                let (total, docs) = searcher.search(&query, &(Count, top))?;
                (total, docs.into_iter().map(|(_, a)| (0.0, a)).collect())
            }
            Sort::Size => {
                let top =
                    TopDocs::with_limit(limit).and_offset(req.offset).order_by_fast_field::<u64>("size", Order::Desc);
                let (total, docs) = searcher.search(&query, &(Count, top))?;
                (total, docs.into_iter().map(|(_, a)| (0.0, a)).collect())
            }
            Sort::Relevance => searcher.search(&query, &(Count, TopDocs::with_limit(limit).and_offset(req.offset)))?,
        };
        let snippets = if req.snippets && !matches!(expr, Expr::All) {
            let generator = |field| -> Result<SnippetGenerator> {
                let mut g = SnippetGenerator::create(&searcher, &*query, field)?;
                g.set_max_num_chars(200);
                Ok(g)
            };
            Some((generator(self.fields.body)?, generator(self.fields.attachment)?))
        } else {
            None
        };
        let mut hits = Vec::with_capacity(addresses.len());
        for (score, address) in addresses {
            let id = self.id_of(&searcher, address)?;
            let snippet = match &snippets {
                Some(g) => Some(self.snippet(&searcher, address, g)?),
                None => None,
            };
            hits.push(Hit { id, score, snippet });
        }
        Ok(SearchResults { total, hits })
    }

    /// Every message a query matches, newest first (for export: no page window; memory grows
    /// with the number of matches, not with anything a client chose).
    pub fn all_ids(&self, query: &str, scope: &Scope) -> Result<Vec<u64>> {
        let expr = query::parse(query)?;
        let user_query = crate::compile::compile(&expr, &self.fields, scope.visible_to.as_ref())?;
        let query = self.scoped(user_query, scope);
        let searcher = self.current().reader.searcher();
        let docs = searcher.search(&query, &tantivy::collector::DocSetCollector)?;
        let mut found = Vec::with_capacity(docs.len());
        for address in docs {
            let segment = searcher.segment_reader(address.segment_ord);
            let date = segment.fast_fields().i64("date")?.first(address.doc_id).unwrap_or(0);
            found.push((date, self.id_of(&searcher, address)?));
        }
        found.sort_unstable_by(|a, b| b.cmp(a));
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// True when the message `id` is among what `query` finds in the scope.
    pub fn matches(&self, query: &str, scope: &Scope, id: u64) -> Result<bool> {
        let expr = query::parse(query)?;
        let user_query = crate::compile::compile(&expr, &self.fields, scope.visible_to.as_ref())?;
        let one: Box<dyn Query> =
            Box::new(TermQuery::new(Term::from_field_u64(self.fields.id, id), IndexRecordOption::Basic));
        let query: Box<dyn Query> =
            Box::new(BooleanQuery::new(vec![(Occur::Must, self.scoped(user_query, scope)), (Occur::Must, one)]));
        Ok(self.current().reader.searcher().search(&query, &Count)? > 0)
    }

    fn scoped(&self, user_query: Box<dyn Query>, scope: &Scope) -> Box<dyn Query> {
        let f = &self.fields;
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic))
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user_query)];
        if let Some(tenant) = scope.tenant {
            let tenant = TermQuery::new(Term::from_field_u64(f.tenant, tenant), IndexRecordOption::Basic);
            clauses.push((Occur::Must, Box::new(tenant)));
        }
        if let Some(v) = &scope.visible_to {
            let mut visible: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for a in &v.addresses {
                visible.push((Occur::Should, term(f.participant, &normalize_address(a))));
            }
            for m in &v.mailboxes {
                visible.push((Occur::Should, term(f.mailbox, &normalize_mailbox(m))));
            }
            // No address and no mailbox: nothing is visible.
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(visible))));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn id_of(&self, searcher: &Searcher, address: DocAddress) -> Result<u64> {
        let segment = searcher.segment_reader(address.segment_ord);
        let ids = segment.fast_fields().u64("id")?;
        ids.first(address.doc_id).ok_or(IndexError::Corrupt("a document without an id"))
    }

    /// Where the query's words show: the body's start, else an attachment's (named), else the
    /// body's start as it is.
    fn snippet(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        (body, attachment): &(SnippetGenerator, SnippetGenerator),
    ) -> Result<Snippet> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let preview = doc.get_first(self.fields.preview).and_then(|v| v.as_str()).unwrap_or_default();
        let s = body.snippet(preview);
        if !s.highlighted().is_empty() {
            return Ok(Snippet {
                fragment: s.fragment().to_owned(),
                highlighted: s.highlighted().to_vec(),
                attachment: None,
            });
        }
        for stored in doc.get_all(self.fields.attachment_preview).filter_map(|v| v.as_str()) {
            let Some((name, text)) = stored.split_once(crate::schema::NAME_END) else { continue };
            let s = attachment.snippet(text);
            if !s.highlighted().is_empty() {
                return Ok(Snippet {
                    fragment: s.fragment().to_owned(),
                    highlighted: s.highlighted().to_vec(),
                    attachment: Some(name.to_owned()),
                });
            }
        }
        let fragment: String = preview.chars().take(200).collect();
        Ok(Snippet { fragment, highlighted: Vec::new(), attachment: None })
    }
}

/// Renames an index folder to `<dir>.damaged-<unix seconds>` and returns the new name.
fn set_aside(dir: &Path) -> Result<std::path::PathBuf> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".damaged-{now}"));
    let aside = std::path::PathBuf::from(aside);
    std::fs::rename(dir, &aside).map_err(|e| IndexError::Io(dir.display().to_string(), e))?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::IndexDocument;

    fn ids(index: &SearchIndex, query: &str) -> Vec<u64> {
        let mut ids = index.all_ids(query, &Scope::default()).unwrap();
        ids.sort();
        ids
    }

    #[test]
    fn a_snippet_marks_the_words_found_in_the_body_or_else_in_an_attachment_it_names() {
        let index = SearchIndex::in_memory();
        let attachment = "The platypus clause binds both parties from the first of January.";
        index
            .apply(&[
                IndexDocument {
                    id: 1,
                    body: "Please see the attached contract.".into(),
                    attachment_text: attachment.into(),
                    attachment_previews: vec![
                        ("notes.txt".into(), "Nothing here.".into()),
                        ("contract.pdf".into(), attachment.into()),
                    ],
                    ..Default::default()
                },
                IndexDocument { id: 2, body: "A platypus in the body.".into(), ..Default::default() },
            ])
            .unwrap();
        let search = |query: &str| {
            let request = SearchRequest {
                query: query.into(),
                scope: Scope::default(),
                limit: 10,
                offset: 0,
                sort: Sort::Oldest,
                snippets: true,
            };
            index.search(&request).unwrap().hits
        };
        let hits = search("platypus");
        let of = |id: u64| hits.iter().find(|h| h.id == id).and_then(|h| h.snippet.clone()).unwrap();
        let (a, b) = (of(1), of(2));
        assert_eq!(a.attachment.as_deref(), Some("contract.pdf"));
        assert_eq!(a.highlighted.iter().map(|r| &a.fragment[r.clone()]).collect::<Vec<_>>(), ["platypus"]);
        assert_eq!(b.attachment, None);
        assert_eq!(b.highlighted.iter().map(|r| &b.fragment[r.clone()]).collect::<Vec<_>>(), ["platypus"]);
        // A word of the body only: the body's snippet, marked.
        let hits = search("contract");
        let c = hits[0].snippet.clone().unwrap();
        assert_eq!((c.attachment, c.highlighted.len()), (None, 1));
    }

    #[test]
    fn stemmed_search_finds_inflected_forms_in_english_and_german_and_exact_search_does_not() {
        let index = SearchIndex::in_memory();
        let doc = |id: u64, subject: &str, body: &str, attachment: &str| IndexDocument {
            id,
            subject: subject.into(),
            body: body.into(),
            attachment_text: attachment.into(),
            ..Default::default()
        };
        index
            .apply(&[
                doc(
                    1,
                    "Overdue payments",
                    "The invoices we sent in March were never paid, and the auditors are asking questions.",
                    "",
                ),
                doc(
                    2,
                    "Zahlungserinnerung",
                    "Die Rechnungen vom März wurden nicht bezahlt. Bitte prüfen Sie die Häuser und die Verträge.",
                    "",
                ),
                // An English message with a German attachment: each text in its own language.
                doc(
                    3,
                    "Contract",
                    "Please find the signed contract attached for your records and review it soon.",
                    "Der Vertrag wurde von beiden Parteien unterschrieben und gilt ab dem ersten Januar.",
                ),
            ])
            .unwrap();
        index.reload().unwrap();
        assert_eq!(ids(&index, "~invoice"), [1]);
        assert_eq!(ids(&index, "invoice"), Vec::<u64>::new(), "exact search finds the word as written");
        assert_eq!(ids(&index, "~payment"), [1]);
        assert_eq!(ids(&index, "~asked"), [1]);
        assert_eq!(ids(&index, "~Rechnung"), [2]);
        assert_eq!(ids(&index, "Rechnung"), Vec::<u64>::new());
        assert_eq!(ids(&index, "~Haus"), [2], "Häuser is a form of Haus");
        assert_eq!(ids(&index, "~Verträgen"), [2, 3], "the attachment's German is stemmed as German");
        assert_eq!(ids(&index, "~contracts"), [3]);
        assert_eq!(ids(&index, "~invoice subject:overdue"), [1]);
        assert!(index.all_ids("subject:~invoice", &Scope::default()).is_err(), "~ goes without a field");
    }
}
