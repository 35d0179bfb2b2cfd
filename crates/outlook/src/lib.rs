//! Outlook data files (PST, Unicode format) read for import: the folders under the store's
//! IPM subtree, each message rebuilt as MIME. Where the item kept its transport headers (mail
//! that came in over the internet), they head the rebuilt message; otherwise the headers are made
//! from the item's properties (sender, To/Cc/Bcc from the recipient table, subject, dates,
//! Message-ID). The body is the HTML and plain text the item holds; attachments come as parts,
//! an attached message (Outlook's "item" attachment) as a `message/rfc822` part built the same way.
//!
//! The reading is `outlook-pst`'s (Microsoft's crate): it reads nodes on demand, so a large file
//! is not held in memory. A damaged folder or item is reported and skipped; the rest is read.

mod mime;
mod pst;

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
