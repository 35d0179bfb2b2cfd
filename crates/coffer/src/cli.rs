//! The command line: every command and its arguments (clap). `main.rs` dispatches them to the
//! command groups' files.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "coffer", version, about = "Coffer: an email archive and e-discovery server")]
pub struct Cli {
    /// Data folder (volumes, catalog, index, master key). Default ./coffer-data.
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Configuration file. Default ./coffer.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the archive server.
    Serve {
        /// SMTP listener address (overrides smtp.listen).
        #[arg(long, value_name = "ADDR:PORT")]
        smtp: Option<String>,
        /// HTTP listener address (overrides http.listen).
        #[arg(long, value_name = "ADDR:PORT")]
        http: Option<String>,
    },
    /// Import EML files, folders of them, mbox files and Maildirs.
    Import {
        #[arg(long)]
        tenant: Option<String>,
        /// The mailbox these messages belong to, e.g. alice@contoso.com.
        #[arg(long, value_name = "ADDR")]
        mailbox: Option<String>,
        /// Put the messages under this folder (discovered folders go beneath it).
        #[arg(long, value_name = "PATH")]
        folder: Option<String>,
        /// Archive Exchange journal reports as they are instead of unwrapping their originals.
        #[arg(long)]
        no_journal: bool,
        /// Take every file whole, as one message: files that are not mail by their content
        /// (Outlook OST/.msg, zip, PDF) are archived as they are, flagged unparseable, instead of
        /// refusing the import, and a PST is kept as it is instead of read item by item.
        #[arg(long)]
        as_eml: bool,
        /// Print one line per message: stored or duplicate, its id, SHA-256 and origin.
        #[arg(long, short)]
        verbose: bool,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Search with the query language (see README).
    Search {
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print only the exact number of matching messages.
        #[arg(long)]
        count: bool,
        #[arg(long, value_enum, default_value_t = SortArg::Date)]
        sort: SortArg,
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Show one message; --raw writes its original bytes to stdout.
    Show {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        raw: bool,
        id: i64,
    },
    /// Export the messages a query matches.
    Export {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum)]
        format: FormatArg,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Leave out messages whose original cannot be read, list them (stderr, and SKIPPED.csv in
        /// a zip) and exit with status 2, instead of failing the export.
        #[arg(long)]
        skip_damaged: bool,
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Check every record, hash chain and catalog entry; exit status 0 only when all is intact.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Delete the search index and rebuild it from the store and the catalog.
    Reindex,
    /// Timestamp every open volume's chain head now at the configured TSA (RFC 3161); `serve`
    /// does it by itself when a segment is sealed and at least every `timestamp.every_seconds`.
    Timestamp,
    /// Back the archive up into DIR while it runs: a catalog snapshot, the keys, the volumes up to
    /// their acknowledged records, and a SHA-256 manifest. An earlier backup in DIR is brought up
    /// to date, copying only what changed.
    Backup {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Restore a backup into the data folder (which must be empty), checking every file's SHA-256;
    /// then run `coffer verify`.
    Restore { from: PathBuf },
    /// The catalog: rebuild it from the volumes when it is lost and no backup of it is left.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Volumes: list them, or close the open one.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Tenants: add one, or list them with their journal addresses.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Certificates for the listeners: generate, import, list, export.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// IMAP mailboxes (`[[imap]]` in coffer.toml): poll them once now.
    Imap {
        #[command(subcommand)]
        command: ImapCommand,
    },
    /// Connection secrets sealed with the master key: `secret set imap.journal.password` reads the
    /// value from stdin, so it never sits in coffer.toml or the shell history.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Microsoft 365 (`[[m365]]` in coffer.toml): the app's certificate and manifest, a test, the
    /// historical import through Microsoft Graph.
    M365 {
        #[command(subcommand)]
        command: M365Command,
    },
    /// Console and API accounts: add one (password from stdin), list them, make an API key.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Legal holds: place one (by query, custodians or both), list them, release one.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Retention rules: add, list, remove, and run them (`--dry-run` only counts).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// The audit log: check its hash chain, or show the newest entries.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Traffic of the last 24 hours, listener figures, index lag, volumes.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum M365Command {
    /// Add Coffer's certificate (an RSA-2048 one, made when the alias does not exist) to the app
    /// manifest downloaded from the Azure portal; upload OUT there.
    Manifest {
        #[arg(long)]
        alias: String,
        #[arg(long, default_value = "Coffer archive")]
        cn: String,
        #[command(flatten)]
        subject: SubjectArgs,
        input: PathBuf,
        output: PathBuf,
    },
    /// Get a token, list a user, read a mailbox's folders; failures come with advice.
    Test { name: Option<String> },
    /// Import every mailbox in scope (or one), resuming where the last run stopped.
    Import {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a local account; the password is the first line of stdin.
    Add {
        login: String,
        /// administrator, auditor or user.
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// An address whose mail a user sees (repeatable).
        #[arg(long = "address")]
        addresses: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Make an API key for a user (printed once), with at most the user's role.
    Key {
        login: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit status 0 only when every entry is as written.
    Verify,
    /// The newest entries.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a secret read from the first line of stdin (imap.<name>.password, imap.<name>.client_secret).
    Set { key: String },
    /// The secrets stored (names only).
    List,
}

#[derive(Subcommand)]
pub enum ImapCommand {
    /// One pass over the configured connections (or the one named), then exit.
    Poll {
        #[arg(long)]
        name: Option<String>,
    },
    /// Connect, verify TLS, log in and list the folders with their message counts; archives nothing.
    Test { name: String },
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Make a self-signed certificate (ECDSA P-256, two years).
    Generate {
        #[arg(long)]
        alias: String,
        /// Common name: the host name clients connect to.
        #[arg(long)]
        cn: String,
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Import a PEM file holding the certificate chain and its private key, or a PKCS#12 file
    /// (.p12/.pfx; its password from COFFER_CERT_PASSWORD, or the first line of stdin with --password-stdin).
    Import {
        #[arg(long)]
        alias: String,
        #[arg(long)]
        password_stdin: bool,
        file: PathBuf,
    },
    /// List certificates with fingerprints and expiry.
    List,
    /// Print a certificate (public part, PEM), e.g. for a client's CA file.
    Export {
        #[arg(long)]
        alias: String,
    },
}

/// The rest of a certificate's subject (the common name is asked for separately).
#[derive(clap::Args)]
pub struct SubjectArgs {
    #[arg(long)]
    pub org: Option<String>,
    #[arg(long)]
    pub unit: Option<String>,
    #[arg(long)]
    pub city: Option<String>,
    #[arg(long)]
    pub state: Option<String>,
    /// Two letters.
    #[arg(long)]
    pub country: Option<String>,
}

impl SubjectArgs {
    pub fn with_cn(self, common_name: String) -> coffer_archive::certs::Subject {
        let SubjectArgs { org, unit, city, state, country } = self;
        coffer_archive::certs::Subject { common_name, organization: org, unit, city, state, country }
    }
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Recreates messages, recipients, placements, tenants (with their journal addresses) and
    /// source items from the volumes' evidence records into an empty catalog, then the index.
    /// Users, API keys and sign-in settings come only from a backup of the catalog.
    Rebuild,
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    List,
    Close { id: String },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    Add {
        name: String,
        /// A mail domain of this tenant (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    List,
    /// Accept this tenant's journal reports only from these sending networks (CIDR, repeatable).
    Allow {
        name: String,
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SortArg {
    /// Newest first.
    Date,
    Oldest,
    Relevance,
    /// Largest first.
    Size,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Mbox,
    EmlZip,
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold: nothing it covers is deleted, by a rule or by hand, until it is released.
    Add {
        /// The matter, e.g. "Smith v. Contoso".
        name: String,
        /// The messages held, in the search language (`*` for all).
        #[arg(long)]
        query: Option<String>,
        /// A custodian's address: their mail, and their mailbox's, is held (repeatable).
        #[arg(long = "custodian")]
        custodians: Vec<String>,
        /// Only messages dated from this day (YYYY-MM-DD) ...
        #[arg(long)]
        from: Option<String>,
        /// ... up to this day, included.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Release a hold; the reason is recorded.
    Release {
        name: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Add (or replace) a rule: what it matches is kept for DURATION (90d, 12w, 6m, 7y, forever),
    /// counted from the message's date, then deleted. Rules are tried by priority, lowest first.
    Add {
        name: String,
        #[arg(long)]
        query: String,
        #[arg(long)]
        keep: String,
        #[arg(long)]
        priority: Option<i64>,
        /// Nothing this rule matches may be deleted, by anyone, before this age.
        #[arg(long)]
        min: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    Remove {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Run the rules now (every tenant's, or one's); beside `serve` the serving process runs it.
    Run {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The deletion certificates: what was deleted, when and why.
    Deleted {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}
