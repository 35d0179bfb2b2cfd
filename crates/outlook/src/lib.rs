//! Outlook files read for import: data files (PST, Unicode format; the folders under the
//! store's IPM subtree) and single items (`.msg`), each item read into one model ([`item::Item`])
//! and rebuilt as MIME. Where the item kept its transport headers (mail that came in over the
//! internet), they head the rebuilt message; otherwise the headers are made from its properties
//! (sender, To/Cc/Bcc from the recipient table, subject, dates, Message-ID). The body is the HTML
//! and plain text the item holds; attachments come as parts, an attached message (Outlook's
//! "item" attachment) as a `message/rfc822` part built the same way.
//!
//! A PST is read by `outlook-pst` (Microsoft's crate), which reads nodes on demand, so a large
//! file is not held in memory; a `.msg` by `cfb`. A damaged folder, item or attachment is
//! reported and skipped; the rest is read.

mod item;
mod mime;
mod msg;
mod named;
mod pst;

pub use msg::{CompoundKind, compound_kind, read_msg, read_msg_bytes};
pub use pst::{PstEvent, PstItem, read_pst};

#[derive(Debug, thiserror::Error)]
pub enum OutlookError {
    #[error("not a readable Outlook data file: {0}")]
    Unreadable(String),
    #[error(
        "an ANSI (Outlook 97–2002) data file; Coffer reads the Unicode format: convert it with `readpst -e -o DIR FILE` (Debian's pst-utils) and import DIR"
    )]
    Ansi,
}
