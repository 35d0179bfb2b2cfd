//! Coffer's SMTP journaling listener.
//!
//! Exchange Online (or any MTA) delivers journal reports to `journal-<token>@<journal domain>`.
//! [`session`] is the protocol as a pure state machine; [`server`] runs it on tokio sockets with
//! STARTTLS, limits and timeouts, and hands every accepted message to the archive's ingest
//! pipeline. The reply to the end of DATA is sent only after the archive's durable commit: `250`
//! means stored, `4xx` means try again, and a `5xx` is given only for what retrying cannot fix.

pub mod listeners;
pub mod server;
pub mod session;

pub use listeners::{ListenerSet, SmtpSettings};
pub use server::{JournalAddresses, Listener, ListenerConfig, Stats};
pub use session::{Delivery, Recipients, Resolved, Session, SessionConfig, Step, TlsPolicy, Transaction};
