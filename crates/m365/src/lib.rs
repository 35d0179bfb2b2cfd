//! Coffer's Microsoft 365 source, MailArchiva's Office 365 integration as the model: an Entra ID
//! app registration authenticated by a certificate Coffer makes (its manifest updated with
//! `coffer_archive::manifest`), tokens by client assertion ([`graph::Graph`]), and the
//! historical import of every mailbox through Microsoft Graph ([`import::Importer`]): users →
//! mail folders (recursively, with their paths) → per-folder `messages/delta` → each message's MIME
//! into the ingest pipeline with its placement. A folder's delta link advances only after its
//! messages are durable, so an interrupted import continues where it stopped.

pub mod graph;
pub mod import;
pub mod items;
pub mod sync;

pub use coffer_archive::connections::M365Config;

#[derive(Debug, thiserror::Error)]
pub enum M365Error {
    /// What went wrong and what to do about it.
    #[error("{0}")]
    Advice(String),
    #[error("cannot reach Microsoft: {0}")]
    Unreachable(String),
    #[error("no Exchange Online mailbox (not licensed, inactive, soft-deleted or on-premises)")]
    NoMailbox,
    /// Graph's 404 where something was expected (a folder or message deleted meanwhile).
    #[error("Graph answered 404 Not Found")]
    NotFound,
    /// Graph's 410 where no restart was possible.
    #[error("Graph answered 410 Gone")]
    Gone,
    #[error(transparent)]
    Archive(#[from] coffer_archive::ArchiveError),
}

impl M365Error {
    /// True when the next run may succeed without anyone changing anything (Microsoft or the
    /// network failed, or the archive was busy); false when an administrator must act on the
    /// advice (a consent, a policy, a certificate).
    pub fn is_transient(&self) -> bool {
        match self {
            M365Error::Unreachable(_) | M365Error::NotFound | M365Error::Gone => true,
            M365Error::Archive(e) => e.is_transient(),
            M365Error::Advice(_) | M365Error::NoMailbox => false,
        }
    }
}

/// Test hook: `COFFER_CRASH_AT=<point>` aborts the process there (the crash tests kill the import
/// between a page's commit and its cursor).
pub(crate) use coffer_archive::crash_point;
