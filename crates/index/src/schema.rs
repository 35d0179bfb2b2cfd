//! The index schema and the document the archive hands in for each message.

use tantivy::TantivyDocument;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

use crate::analyzer::{self, ANALYZER};

/// Everything the index knows about one message. Built by the archive from the catalog (ids,
/// recipients, placements) and the parsed original (text); the index is derived from those two.
#[derive(Debug, Clone, Default)]
pub struct IndexDocument {
    pub id: u64,
    pub tenant: u64,
    /// Unix seconds.
    pub date: i64,
    pub size: u64,
    pub from: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub envelope: Vec<Address>,
    pub subject: String,
    pub body: String,
    pub attachment_text: String,
    /// The start of each attachment's text, with its name, for snippets (at most
    /// [`ATTACHMENT_PREVIEWS`] of [`PREVIEW_CHARS`] each are kept).
    pub attachment_previews: Vec<(String, String)>,
    pub filenames: Vec<String>,
    pub message_id: Option<String>,
    /// Where the message is filed: (mailbox, folder path).
    pub placements: Vec<(String, String)>,
    /// The addresses that take part in the message (the archive's one participant rule); a
    /// user's search is confined to these and their mailboxes, as every single-message read is.
    pub participants: Vec<String>,
    pub tags: Vec<String>,
    /// The detected types of its attachments (`pdf`, `docx`, …), for `filetype:`.
    pub filetypes: Vec<String>,
    pub has_attachment: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub address: String,
    pub name: Option<String>,
}

/// Characters of body text, and of each attachment's, kept in the index for snippets.
pub const PREVIEW_CHARS: usize = 300;
/// Attachments whose text start is kept for snippets.
pub const ATTACHMENT_PREVIEWS: usize = 3;
/// Between an attachment's name and its text in a stored preview (names hold no controls).
pub const NAME_END: char = '\u{1f}';

#[derive(Clone)]
pub struct Fields {
    pub id: Field,
    pub tenant: Field,
    pub date: Field,
    pub size: Field,
    pub has_attachment: Field,
    pub from: Field,
    pub to: Field,
    pub cc: Field,
    pub bcc: Field,
    pub envelope: Field,
    pub subject: Field,
    pub body: Field,
    pub attachment: Field,
    pub filename: Field,
    pub message_id: Field,
    pub mailbox: Field,
    pub folder: Field,
    /// `mailbox:folder` for every ancestor folder: a user's `folder:` looks only into their mailboxes.
    pub placed: Field,
    pub participant: Field,
    pub tag: Field,
    pub filetype: Field,
    /// Subject, body and attachment text stemmed in their language (`~word`), terms marked with
    /// it: `en:invoic`.
    pub stemmed: Field,
    pub preview: Field,
    /// `name` [`NAME_END`] `text start`, one value per attachment with text.
    pub attachment_preview: Field,
}

impl Fields {
    pub fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let number = || NumericOptions::default().set_indexed().set_fast();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            id: b.add_u64_field("id", number().set_stored()),
            tenant: b.add_u64_field("tenant", number()),
            date: b.add_i64_field("date", number()),
            size: b.add_u64_field("size", number()),
            has_attachment: b.add_u64_field("has_attachment", number()),
            from: b.add_text_field("from", STRING),
            to: b.add_text_field("to", STRING),
            cc: b.add_text_field("cc", STRING),
            bcc: b.add_text_field("bcc", STRING),
            envelope: b.add_text_field("envelope", STRING),
            subject: b.add_text_field("subject", text.clone()),
            body: b.add_text_field("body", text.clone()),
            attachment: b.add_text_field("attachment", text.clone()),
            filename: b.add_text_field("filename", text),
            message_id: b.add_text_field("message_id", STRING),
            mailbox: b.add_text_field("mailbox", STRING),
            folder: b.add_text_field("folder", STRING),
            placed: b.add_text_field("placed", STRING),
            participant: b.add_text_field("participant", STRING),
            tag: b.add_text_field("tag", STRING),
            filetype: b.add_text_field("filetype", STRING),
            stemmed: b.add_text_field(
                "stemmed",
                TextOptions::default().set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer("whitespace")
                        .set_index_option(IndexRecordOption::WithFreqs),
                ),
            ),
            preview: b.add_text_field("preview", STORED),
            attachment_preview: b.add_text_field("attachment_preview", STORED),
        };
        (b.build(), fields)
    }

    pub fn document(&self, d: &IndexDocument) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.id, d.id);
        doc.add_u64(self.tenant, d.tenant);
        doc.add_i64(self.date, d.date);
        doc.add_u64(self.size, d.size);
        doc.add_u64(self.has_attachment, d.has_attachment as u64);
        for (field, list) in
            [(self.from, &d.from), (self.to, &d.to), (self.cc, &d.cc), (self.bcc, &d.bcc), (self.envelope, &d.envelope)]
        {
            let mut terms: Vec<String> =
                list.iter().flat_map(|a| address_terms(&a.address, a.name.as_deref())).collect();
            terms.sort();
            terms.dedup();
            for t in terms {
                doc.add_text(field, t);
            }
        }
        doc.add_text(self.subject, &d.subject);
        doc.add_text(self.body, &d.body);
        doc.add_text(self.attachment, &d.attachment_text);
        // The message's text and its attachments' may be in different languages.
        let mut stemmed = analyzer::stemmed_terms(&format!("{}\n{}", d.subject, d.body));
        stemmed.push_str(&analyzer::stemmed_terms(&d.attachment_text));
        doc.add_text(self.stemmed, stemmed);
        for name in &d.filenames {
            doc.add_text(self.filename, name);
        }
        if let Some(id) = &d.message_id {
            doc.add_text(self.message_id, normalize_message_id(id));
        }
        let mut mailboxes: Vec<String> = d.placements.iter().map(|(m, _)| normalize_mailbox(m)).collect();
        let mut folders: Vec<String> = d.placements.iter().flat_map(|(_, f)| folder_terms(f)).collect();
        let mut placed: Vec<String> =
            d.placements.iter().flat_map(|(m, f)| folder_terms(f).into_iter().map(|f| placed_term(m, &f))).collect();
        let mut participants: Vec<String> = d.participants.iter().map(|a| normalize_address(a)).collect();
        for (field, terms) in [
            (self.mailbox, &mut mailboxes),
            (self.folder, &mut folders),
            (self.placed, &mut placed),
            (self.participant, &mut participants),
        ] {
            terms.sort();
            terms.dedup();
            for t in terms.drain(..) {
                doc.add_text(field, t);
            }
        }
        for t in &d.tags {
            doc.add_text(self.tag, t.trim().to_lowercase());
        }
        for t in &d.filetypes {
            doc.add_text(self.filetype, t);
        }
        doc.add_text(self.preview, preview(&d.body));
        for (name, text) in d.attachment_previews.iter().filter(|(_, t)| !t.trim().is_empty()).take(ATTACHMENT_PREVIEWS)
        {
            let name: String = name.chars().filter(|c| !c.is_control()).collect();
            doc.add_text(self.attachment_preview, format!("{name}{NAME_END}{}", preview(text)));
        }
        doc
    }
}

/// The first [`PREVIEW_CHARS`] characters of `text`, its runs of white space made one space.
fn preview(text: &str) -> String {
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() >= PREVIEW_CHARS * 4 {
            break;
        }
    }
    out.chars().take(PREVIEW_CHARS).collect()
}

/// The terms an address is found by: the whole address, its local part and the pieces of it, its
/// domain and parent domains, and the words of the display name (as written and folded).
pub fn address_terms(address: &str, name: Option<&str>) -> Vec<String> {
    let address = address.trim().trim_matches(['<', '>']).to_lowercase();
    let mut terms = Vec::new();
    if let Some((local, domain)) = address.rsplit_once('@') {
        terms.push(local.to_owned());
        terms.extend(local.split(['.', '_', '-', '+']).filter(|p| !p.is_empty()).map(str::to_owned));
        let labels: Vec<&str> = domain.split('.').collect();
        for i in 0..labels.len().saturating_sub(1).max(1) {
            terms.push(labels[i..].join("."));
        }
    }
    if let Some(name) = name {
        terms.extend(name.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()));
        terms.extend(analyzer::tokens(name));
    }
    terms.push(address);
    terms.retain(|t| !t.is_empty());
    terms
}

/// `Inbox/Projects/X` is found by `folder:inbox`, `folder:inbox/projects` and the full path.
pub fn folder_terms(folder: &str) -> Vec<String> {
    let path = normalize_folder(folder);
    let mut out = Vec::new();
    let mut acc = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        out.push(acc.clone());
    }
    out
}

/// The `placed` term of a folder (or one of its ancestors) in a mailbox.
pub fn placed_term(mailbox: &str, folder: &str) -> String {
    format!("{}:{}", normalize_mailbox(mailbox), normalize_folder(folder))
}

pub fn normalize_mailbox(mailbox: &str) -> String {
    mailbox.trim().to_lowercase()
}

pub fn normalize_address(address: &str) -> String {
    address.trim().trim_matches(['<', '>']).to_lowercase()
}

pub fn normalize_folder(folder: &str) -> String {
    folder.replace('\\', "/").trim_matches('/').to_lowercase()
}

pub fn normalize_message_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_found_by_whole_local_part_domain_and_name() {
        let t = address_terms("Joerg.Mueller@mail.Fabrikam.de", Some("Jörg Müller"));
        for want in [
            "joerg.mueller@mail.fabrikam.de",
            "joerg.mueller",
            "joerg",
            "mueller",
            "mail.fabrikam.de",
            "fabrikam.de",
            "jörg",
            "jorg",
            "muller",
        ] {
            assert!(t.contains(&want.to_string()), "{want} missing from {t:?}");
        }
        assert!(!t.contains(&"de".to_string()), "a top-level domain alone is not a useful term");
    }

    #[test]
    fn folders_are_found_by_every_ancestor() {
        assert_eq!(folder_terms("Inbox\\Projects/X/"), ["inbox", "inbox/projects", "inbox/projects/x"]);
    }
}
