//! Pure mail parsing for Coffer.
//!
//! Everything here works on bytes in memory and does no I/O, so it can be unit-tested and fuzzed on
//! its own. Three jobs:
//!
//! - [`parse`] turns the original bytes of a message into an [`ArchivedDocument`]: the fields the
//!   catalog and the index need (addresses, subject, date, decoded text, attachment names and text).
//!   It never fails: a message that no parser understands still yields a document, flagged
//!   [`Flags::UNPARSEABLE`], because parsing never decides whether a message is kept.
//! - [`journal::unwrap`] recognises an Exchange journal report (also one attached to a bounce) and
//!   returns the original message's exact bytes with the envelope recipients the report lists.
//! - [`mbox::Mbox`] splits an mbox file (mboxo, mboxrd, Content-Length style) into messages.
//!
//! ```
//! let raw = b"From: Alice <alice@contoso.com>\r\nTo: bob@contoso.com\r\nSubject: Q3\r\n\r\nNumbers.\r\n";
//! let doc = coffer_mail::parse(raw);
//! assert_eq!(doc.subject.as_deref(), Some("Q3"));
//! assert_eq!(doc.from[0].address, "alice@contoso.com");
//! assert!(doc.body.contains("Numbers."));
//! ```

mod document;
pub mod journal;
pub mod mbox;
pub mod redact;
pub mod view;

pub use document::{ArchivedDocument, Attachment, Flags, MAX_TEXT, Mailbox, parse};
