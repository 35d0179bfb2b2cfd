use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::query::{self, Expr};
use crate::schema::{Fields, IndexDocument};
use crate::{IndexError, Result};

/// Who is searching: always one tenant; for a user role, only messages where one of their
/// addresses takes part or that sit in one of their mailboxes.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub tenant: u64,
    /// None: the whole tenant (administrators, auditors).
    pub visible_to: Option<Visibility>,
}

#[derive(Debug, Clone, Default)]
pub struct Visibility {
    pub addresses: Vec<String>,
    pub mailboxes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest first.
    #[default]
    Date,
    Relevance,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// Exact number of matching messages.
    pub total: usize,
    pub hits: Vec<Hit>,
}

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<Option<IndexWriter>>,
}

impl SearchIndex {
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Io(dir.display().to_string(), e))?;
        let (schema, fields) = Fields::schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)?;
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register(crate::analyzer::ANALYZER, crate::analyzer::analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(SearchIndex { index, reader, fields, writer: Mutex::new(None) })
    }

    /// Adds or replaces documents (by message id) and commits. The first call takes the index's
    /// write lock, which one process holds at a time.
    pub fn apply(&self, docs: &[IndexDocument]) -> Result<()> {
        let mut guard = self.writer.lock().unwrap();
        let writer = self.writer_in(&mut guard)?;
        for d in docs {
            writer.delete_term(Term::from_field_u64(self.fields.id, d.id));
            writer.add_document(self.fields.document(d))?;
        }
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Deletes every document (before a rebuild).
    pub fn clear(&self) -> Result<()> {
        let mut guard = self.writer.lock().unwrap();
        let writer = self.writer_in(&mut guard)?;
        writer.delete_all_documents()?;
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn writer_in<'a>(&self, slot: &'a mut Option<IndexWriter>) -> Result<&'a mut IndexWriter> {
        if slot.is_none() {
            let writer = self.index.writer(128 << 20).map_err(|e| match e {
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
            self.reader.reload()?;
        }
        Ok(())
    }

    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults> {
        let expr = query::parse(&req.query)?;
        let user_query = crate::compile::compile(&expr, &self.fields, req.scope.visible_to.is_some())?;
        let query = self.scoped(user_query, &req.scope);
        let searcher = self.reader.searcher();
        let limit = req.limit.max(1);
        let (total, addresses): (usize, Vec<(f32, DocAddress)>) = match req.sort {
            Sort::Date => {
                let top =
                    TopDocs::with_limit(limit).and_offset(req.offset).order_by_fast_field::<i64>("date", Order::Desc);
                let (total, docs) = searcher.search(&query, &(Count, top))?;
                (total, docs.into_iter().map(|(_, a)| (0.0, a)).collect())
            }
            Sort::Relevance => searcher.search(&query, &(Count, TopDocs::with_limit(limit).and_offset(req.offset)))?,
        };
        let snippets = if req.snippets && !matches!(expr, Expr::All) {
            let mut g = SnippetGenerator::create(&searcher, &*query, self.fields.body)?;
            g.set_max_num_chars(200);
            Some(g)
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

    fn scoped(&self, user_query: Box<dyn Query>, scope: &Scope) -> Box<dyn Query> {
        let f = &self.fields;
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic))
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(Term::from_field_u64(f.tenant, scope.tenant), IndexRecordOption::Basic)),
            ),
            (Occur::Must, user_query),
        ];
        if let Some(v) = &scope.visible_to {
            let mut visible: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for a in &v.addresses {
                let a = a.trim().to_lowercase();
                for field in [f.from, f.to, f.cc, f.bcc, f.envelope] {
                    visible.push((Occur::Should, term(field, &a)));
                }
            }
            for m in &v.mailboxes {
                visible.push((Occur::Should, term(f.mailbox, &m.trim().to_lowercase())));
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

    fn snippet(&self, searcher: &Searcher, address: DocAddress, g: &SnippetGenerator) -> Result<Snippet> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let preview = doc.get_first(self.fields.preview).and_then(|v| v.as_str()).unwrap_or_default();
        let s = g.snippet(preview);
        if s.fragment().is_empty() {
            let fragment: String = preview.chars().take(200).collect();
            return Ok(Snippet { fragment, highlighted: Vec::new() });
        }
        Ok(Snippet { fragment: s.fragment().to_owned(), highlighted: s.highlighted().to_vec() })
    }
}
