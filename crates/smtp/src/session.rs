//! The SMTP session as a pure state machine: bytes in, replies and actions out, no I/O. The server
//! feeds it what the client sent and carries out what it asks for (write, upgrade to TLS, deliver,
//! close), which keeps every protocol rule testable on bytes alone.

use smtp_proto::request::receiver::{BdatReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// No STARTTLS (only for tests and trusted networks).
    Off,
    /// STARTTLS offered; plain text accepted.
    #[default]
    Offer,
    /// `530 5.7.0` to MAIL/RCPT/DATA until the client has done STARTTLS.
    Require,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub tls: TlsPolicy,
    /// Protocol errors after which the session is closed (421).
    pub max_errors: usize,
}

/// Answers whether an address is one the archive accepts mail for, and for which tenant.
pub trait Recipients {
    fn resolve(&self, address: &str, client: std::net::IpAddr) -> Resolved;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Tenant(i64),
    /// Not a journal address of this archive.
    Unknown,
    /// A journal address, but the client's address is not on the tenant's allow-list.
    HostNotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub helo: String,
    pub mail_from: String,
    /// (address, tenant) of every accepted recipient.
    pub recipients: Vec<(String, i64)>,
    pub data: Vec<u8>,
    pub tls: bool,
    /// The client's address and the TLS version of the session: part of the arrival's evidence.
    pub client: std::net::IpAddr,
    pub tls_version: Option<String>,
}

/// What the server must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the replies gathered so far and read more.
    NeedMore,
    /// Write the replies, then archive this message and call [`Session::delivered`].
    Deliver(Transaction),
    /// Write the replies, then start the TLS handshake and call [`Session::tls_started`].
    StartTls,
    /// Write the replies and close the connection.
    Close,
}

/// How the archive answered a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Stored {
        ids: Vec<i64>,
    },
    /// Store or catalog trouble: the client retries later.
    TemporaryFailure(String),
    /// The archive is saturated.
    Busy,
    /// The disk is nearly full.
    InsufficientStorage,
    TooLarge,
}

enum Receiving {
    Commands,
    Data(DataReceiver),
    /// A BDAT chunk; with a refusal, the chunk is read and thrown away and that is the one reply.
    Bdat(BdatReceiver, Option<&'static str>),
}

/// DATA's body as RFC 5321 §4.1.1.4 and §4.5.2 define it: it ends only at `<CRLF>.<CRLF>`, and a
/// leading dot of a line is removed. A lone CR or LF is kept as it came (the original is archived
/// byte-exact) but never ends a line, so `<CRLF>.<CR><CR><LF>` or `<LF>.<LF>` cannot end the
/// message early (SMTP smuggling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// After `<CRLF>` (or at the start of the body).
    LineStart,
    Middle,
    /// After a CR not yet known to be part of `<CRLF>`.
    Cr,
    /// A dot at the start of a line.
    Dot,
    /// `.` `<CR>` at the start of a line.
    DotCr,
}

struct DataReceiver {
    state: DataState,
}

impl DataReceiver {
    fn new() -> DataReceiver {
        DataReceiver { state: DataState::LineStart }
    }

    /// Moves body bytes from `input` to `out`; true at the end of the body (the rest of `input`
    /// is pipelined commands).
    fn ingest(&mut self, input: &mut std::slice::Iter<'_, u8>, out: &mut Vec<u8>) -> bool {
        use DataState::*;
        for &b in input.by_ref() {
            let mut b = Some(b);
            while let Some(c) = b.take() {
                self.state = match (self.state, c) {
                    (LineStart, b'.') => Dot,
                    (Dot, b'\r') => DotCr,
                    (DotCr, b'\n') => return true,
                    // `.` then anything else: the dot was stuffing; what follows is read as usual.
                    (Dot, _) => {
                        b = Some(c);
                        Middle
                    }
                    (DotCr, _) => {
                        b = Some(c);
                        Cr
                    }
                    (Cr, b'\n') => {
                        out.extend_from_slice(b"\r\n");
                        LineStart
                    }
                    (Cr, b'\r') => {
                        out.push(b'\r');
                        Cr
                    }
                    (Cr, _) => {
                        out.push(b'\r');
                        b = Some(c);
                        Middle
                    }
                    (LineStart | Middle, b'\r') => Cr,
                    (LineStart | Middle, _) => {
                        out.push(c);
                        Middle
                    }
                };
            }
        }
        false
    }
}

pub struct Session {
    config: SessionConfig,
    client: std::net::IpAddr,
    tls_active: bool,
    tls_version: Option<String>,
    receiving: Receiving,
    receiver: RequestReceiver,
    input: Vec<u8>,
    helo: Option<String>,
    mail_from: Option<String>,
    recipients: Vec<(String, i64)>,
    /// Body bytes received and not yet taken by the server ([`Session::take_body`]).
    data: Vec<u8>,
    /// Body bytes received in this transaction, taken or not (for the size limit).
    data_len: usize,
    too_large: bool,
    errors: usize,
    pub replies: Vec<u8>,
    /// Why commands were refused since the server last looked (for the status figures).
    pub rejects: Vec<&'static str>,
}

impl Session {
    pub fn new(config: SessionConfig, client: std::net::IpAddr, tls_active: bool) -> Session {
        Session {
            config,
            client,
            tls_active,
            tls_version: None,
            receiving: Receiving::Commands,
            receiver: RequestReceiver::default(),
            input: Vec::new(),
            helo: None,
            mail_from: None,
            recipients: Vec::new(),
            data: Vec::new(),
            data_len: 0,
            too_large: false,
            errors: 0,
            replies: Vec::new(),
            rejects: Vec::new(),
        }
    }

    pub fn greeting(&self) -> String {
        format!("220 {} ESMTP Coffer archive\r\n", self.config.hostname)
    }

    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// True while a message body is being received (a disconnect now loses only that message).
    pub fn in_data(&self) -> bool {
        !matches!(self.receiving, Receiving::Commands)
    }

    /// The body bytes received since the last call, so the server can spool a large message to
    /// disk as it arrives; the [`Transaction`] then holds only the rest. A server that never calls
    /// this gets the whole body in the transaction.
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// True while the message being received is over the size limit (its bytes are dropped).
    pub fn body_refused(&self) -> bool {
        self.too_large
    }

    /// True from MAIL FROM until the message is delivered or the transaction reset.
    pub fn in_transaction(&self) -> bool {
        self.mail_from.is_some() || self.in_data()
    }

    /// Adds what the client sent.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Processes buffered input until more is needed or the server must act.
    pub fn step(&mut self, recipients: &dyn Recipients) -> Step {
        loop {
            if self.input.is_empty() {
                return Step::NeedMore;
            }
            let input = std::mem::take(&mut self.input);
            let mut iter = input.iter();
            let step = match &mut self.receiving {
                Receiving::Commands => match self.receiver.ingest(&mut iter) {
                    Err(ProtoError::NeedsMoreData { .. }) => Some(Step::NeedMore),
                    Ok(request) => {
                        let request = request.into_owned();
                        self.command(request, recipients)
                    }
                    Err(e) => self.protocol_error(e),
                },
                Receiving::Data(receiver) => {
                    let mut chunk = Vec::new();
                    let done = receiver.ingest(&mut iter, &mut chunk);
                    self.take_data(&chunk);
                    if done { Some(self.end_of_data()) } else { Some(Step::NeedMore) }
                }
                Receiving::Bdat(receiver, refusal) => {
                    let mut chunk = Vec::new();
                    let done = receiver.ingest(&mut iter, &mut chunk);
                    let (last, refusal) = (receiver.is_last, *refusal);
                    if !done {
                        if refusal.is_none() {
                            self.take_data(&chunk);
                        }
                        Some(Step::NeedMore)
                    } else {
                        Some(self.end_of_chunk(&chunk, last, refusal))
                    }
                }
            };
            // Keep what was not consumed (pipelined commands after this point).
            self.input = iter.as_slice().to_vec();
            match step {
                None => continue,
                Some(Step::NeedMore) if !self.input.is_empty() => continue,
                Some(Step::StartTls) => {
                    // RFC 3207: nothing sent before the handshake may be acted on after it.
                    self.input.clear();
                    return Step::StartTls;
                }
                Some(step) => return step,
            }
        }
    }

    /// A BDAT chunk has been read whole: one reply for it (RFC 3030 §2).
    fn end_of_chunk(&mut self, chunk: &[u8], last: bool, refusal: Option<&'static str>) -> Step {
        if let Some(reply) = refusal {
            self.receiving = Receiving::Commands;
            self.reply(reply);
            return Step::NeedMore;
        }
        self.take_data(chunk);
        if last {
            return self.end_of_data();
        }
        self.receiving = Receiving::Commands;
        if self.too_large {
            self.rejects.push("size");
            self.reply("552 5.3.4 Message exceeds the size limit");
        } else {
            self.reply(&format!("250 2.0.0 {} octets received", chunk.len()));
        }
        Step::NeedMore
    }

    fn take_data(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        self.data_len += chunk.len();
        if self.data_len > self.config.max_message_bytes {
            self.too_large = true;
            self.data = Vec::new();
        } else {
            self.data.extend_from_slice(chunk);
        }
    }

    fn end_of_data(&mut self) -> Step {
        self.receiving = Receiving::Commands;
        if self.too_large {
            self.rejects.push("size");
            self.reply("552 5.3.4 Message exceeds the size limit");
            self.reset_transaction();
            return Step::NeedMore;
        }
        let transaction = Transaction {
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: self.mail_from.clone().unwrap_or_default(),
            recipients: std::mem::take(&mut self.recipients),
            data: std::mem::take(&mut self.data),
            tls: self.tls_active,
            client: self.client,
            tls_version: self.tls_version.clone(),
        };
        self.reset_transaction();
        Step::Deliver(transaction)
    }

    /// The archive's answer to the last [`Step::Deliver`].
    pub fn delivered(&mut self, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Stored { ids } => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                self.reply(&format!("250 2.0.0 Archived as {}", ids.join(",")));
                Step::NeedMore
            }
            Delivery::TemporaryFailure(why) => {
                self.reply(&format!("451 4.3.0 Temporary archive failure, try again later ({})", one_line(&why)));
                Step::NeedMore
            }
            Delivery::Busy => {
                self.reply("421 4.3.2 Archive is busy, try again later");
                Step::Close
            }
            Delivery::InsufficientStorage => {
                self.reply("452 4.3.1 Insufficient archive storage, try again later");
                Step::NeedMore
            }
            Delivery::TooLarge => {
                self.rejects.push("size");
                self.reply("552 5.3.4 Message exceeds the size limit");
                Step::NeedMore
            }
        }
    }

    /// The TLS handshake succeeded: everything starts over (RFC 3207).
    /// The TLS version the handshake agreed on (`TLSv1_3`), recorded with each message.
    pub fn set_tls_version(&mut self, version: Option<String>) {
        self.tls_version = version;
    }

    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.reset_transaction();
        self.receiver = RequestReceiver::default();
        self.input.clear();
    }

    fn reply(&mut self, line: &str) {
        self.replies.extend_from_slice(line.as_bytes());
        self.replies.extend_from_slice(b"\r\n");
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
        self.data = Vec::new();
        self.data_len = 0;
        self.too_large = false;
    }

    fn protocol_error(&mut self, e: ProtoError) -> Option<Step> {
        self.rejects.push("syntax");
        match e {
            ProtoError::UnknownCommand => self.reply("500 5.5.1 Command unrecognized"),
            ProtoError::InvalidSenderAddress => self.reply("501 5.1.7 Bad sender address syntax"),
            ProtoError::InvalidRecipientAddress => self.reply("501 5.1.3 Bad recipient address syntax"),
            ProtoError::SyntaxError { syntax } => self.reply(&format!("501 5.5.4 Syntax: {syntax}")),
            ProtoError::InvalidParameter { param } => self.reply(&format!("501 5.5.4 Invalid parameter {param}")),
            ProtoError::UnsupportedParameter { param } => {
                self.reply(&format!("504 5.5.4 Unsupported parameter {}", one_line(&param)))
            }
            ProtoError::ResponseTooLong => self.reply("500 5.5.6 Line too long"),
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                self.reply("500 5.5.2 Syntax error")
            }
        }
        self.error_count()
    }

    fn error_count(&mut self) -> Option<Step> {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.reply("421 4.7.0 Too many errors, closing connection");
            return Some(Step::Close);
        }
        None
    }

    fn tls_missing(&mut self) -> bool {
        if self.config.tls == TlsPolicy::Require && !self.tls_active {
            self.rejects.push("tls-required");
            self.reply("530 5.7.0 Must issue a STARTTLS command first");
            return true;
        }
        false
    }

    fn command(&mut self, request: Request<String>, recipients: &dyn Recipients) -> Option<Step> {
        match request {
            Request::Ehlo { host } => {
                self.helo = Some(host);
                self.reset_transaction();
                let mut lines = vec![
                    format!("{} at your service", self.config.hostname),
                    "PIPELINING".into(),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    format!("SIZE {}", self.config.max_message_bytes),
                    "ENHANCEDSTATUSCODES".into(),
                    "CHUNKING".into(),
                ];
                if self.config.tls != TlsPolicy::Off && !self.tls_active {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    self.reply(&format!("250{sep}{l}"));
                }
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.helo = Some(host);
                self.reset_transaction();
                let line = format!("250 {}", self.config.hostname);
                self.reply(&line);
            }
            Request::StartTls => {
                if self.tls_active {
                    self.reply("503 5.5.1 TLS is already active");
                } else if self.config.tls == TlsPolicy::Off {
                    self.reply("454 4.7.0 TLS not available");
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    return Some(Step::StartTls);
                }
            }
            Request::Mail { from } => {
                if self.tls_missing() {
                } else if self.helo.is_none() {
                    self.reply("503 5.5.1 Send EHLO or HELO first");
                } else if self.mail_from.is_some() {
                    self.reply("503 5.5.1 Sender already given");
                } else if from.size > self.config.max_message_bytes {
                    self.rejects.push("size");
                    self.reply("552 5.3.4 Message exceeds the size limit");
                } else {
                    self.mail_from = Some(from.address);
                    self.reply("250 2.1.0 Sender OK");
                }
            }
            Request::Rcpt { to } => {
                if self.tls_missing() {
                } else if self.mail_from.is_none() {
                    self.reply("503 5.5.1 Send MAIL first");
                } else if self.recipients.len() >= self.config.max_recipients {
                    self.reply("452 4.5.3 Too many recipients");
                } else {
                    match recipients.resolve(&to.address, self.client) {
                        Resolved::Tenant(tenant) => {
                            self.recipients.push((to.address, tenant));
                            self.reply("250 2.1.5 Recipient OK");
                        }
                        Resolved::Unknown => {
                            self.rejects.push("unknown-recipient");
                            self.reply("550 5.1.1 No such journal address here; this server relays nothing");
                            return self.error_count();
                        }
                        Resolved::HostNotAllowed => {
                            self.rejects.push("host-not-allowed");
                            self.reply("550 5.7.1 Your host may not deliver journal reports for this tenant");
                            return self.error_count();
                        }
                    }
                }
            }
            Request::Data => {
                if self.tls_missing() {
                } else if self.mail_from.is_none() {
                    self.reply("503 5.5.1 Send MAIL first");
                } else if self.recipients.is_empty() {
                    self.reply("554 5.5.1 No valid recipients");
                } else {
                    self.reply("354 Start mail input; end with <CRLF>.<CRLF>");
                    self.receiving = Receiving::Data(DataReceiver::new());
                }
            }
            Request::Bdat { chunk_size, is_last } => {
                // The chunk follows on the wire either way: a refused one is read and thrown
                // away, and the refusal is its one reply.
                let refusal = if self.config.tls == TlsPolicy::Require && !self.tls_active {
                    self.rejects.push("tls-required");
                    Some("530 5.7.0 Must issue a STARTTLS command first")
                } else if self.mail_from.is_none() || self.recipients.is_empty() {
                    Some("503 5.5.1 Send MAIL and RCPT first")
                } else {
                    None
                };
                if chunk_size == 0 {
                    // Nothing to wait for (`BDAT 0 LAST` ends the message now).
                    return Some(self.end_of_chunk(&[], is_last, refusal));
                }
                self.receiving = Receiving::Bdat(BdatReceiver::new(chunk_size, is_last), refusal);
            }
            Request::Rset => {
                self.reset_transaction();
                self.reply("250 2.0.0 Reset");
            }
            Request::Noop { .. } => self.reply("250 2.0.0 OK"),
            Request::Vrfy { .. } | Request::Expn { .. } => self.reply("502 5.5.1 VRFY and EXPN are disabled"),
            Request::Quit => {
                self.reply("221 2.0.0 Bye");
                return Some(Step::Close);
            }
            Request::Help { .. } => {
                self.reply("214 2.0.0 This is a journaling archive: EHLO, MAIL, RCPT, DATA, BDAT, QUIT")
            }
            Request::Auth { .. } | Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.reply("502 5.5.1 Command not implemented");
            }
        }
        None
    }
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Journal;
    impl Recipients for Journal {
        fn resolve(&self, address: &str, _: std::net::IpAddr) -> Resolved {
            if address.eq_ignore_ascii_case("journal-abc@archive.test") {
                Resolved::Tenant(1)
            } else {
                Resolved::Unknown
            }
        }
    }

    fn session(tls: TlsPolicy) -> Session {
        Session::new(
            SessionConfig {
                hostname: "archive.test".into(),
                max_message_bytes: 1000,
                max_recipients: 3,
                tls,
                max_errors: 5,
            },
            std::net::Ipv4Addr::LOCALHOST.into(),
            false,
        )
    }

    fn run(s: &mut Session, input: &str) -> (String, Step) {
        s.push(input.as_bytes());
        let step = s.step(&Journal);
        let out = String::from_utf8(std::mem::take(&mut s.replies)).unwrap();
        (out, step)
    }

    #[test]
    fn a_pipelined_transaction_is_answered_in_order_and_delivered() {
        let mut s = session(TlsPolicy::Offer);
        let (out, step) = run(
            &mut s,
            "EHLO client\r\nMAIL FROM:<a@x.com>\r\nRCPT TO:<journal-abc@archive.test>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
        );
        assert!(out.contains("250-PIPELINING") && out.contains("250 STARTTLS") && out.contains("CHUNKING"), "{out}");
        assert!(out.contains("250 2.1.0") && out.contains("250 2.1.5") && out.contains("354 "));
        let Step::Deliver(t) = step else { panic!("{step:?}") };
        assert_eq!(t.data, b"Subject: hi\r\n\r\n.dot\r\n");
        assert_eq!(t.recipients, [("journal-abc@archive.test".into(), 1)]);
        assert_eq!(s.delivered(Delivery::Stored { ids: vec![7] }), Step::NeedMore);
        // The pipelined QUIT waited in the buffer and is answered after the delivery.
        let (out, step) = run(&mut s, "");
        assert_eq!(out, "250 2.0.0 Archived as 7\r\n221 2.0.0 Bye\r\n");
        assert_eq!(step, Step::Close);
    }

    #[test]
    fn unknown_recipient_is_refused_so_the_listener_never_relays() {
        let mut s = session(TlsPolicy::Offer);
        let (out, _) = run(&mut s, "EHLO c\r\nMAIL FROM:<a@x.com>\r\nRCPT TO:<bob@elsewhere.com>\r\nDATA\r\n");
        assert!(out.contains("550 5.1.1"), "{out}");
        assert!(out.contains("554 5.5.1 No valid recipients"), "{out}");
    }

    #[test]
    fn tls_required_refuses_mail_before_starttls_and_forgets_everything_after_it() {
        let mut s = session(TlsPolicy::Require);
        let (out, _) = run(&mut s, "EHLO c\r\nMAIL FROM:<a@x.com>\r\n");
        assert!(out.contains("530 5.7.0"), "{out}");
        let (out, step) = run(&mut s, "STARTTLS\r\nMAIL FROM:<injected@x.com>\r\n");
        assert!(out.contains("220 2.0.0"));
        assert_eq!(step, Step::StartTls);
        s.tls_started();
        let (out, _) = run(&mut s, "MAIL FROM:<a@x.com>\r\n");
        assert!(out.contains("503 5.5.1 Send EHLO"), "state is reset after TLS: {out}");
        let (out, _) = run(&mut s, "EHLO c\r\n");
        assert!(!out.contains("STARTTLS"));
    }

    fn transaction(s: &mut Session) {
        let (out, _) = run(s, "EHLO c\r\nMAIL FROM:<a@x.com>\r\nRCPT TO:<journal-abc@archive.test>\r\n");
        assert!(out.contains("250 2.1.5"), "{out}");
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data_so_a_smuggled_message_stays_inside_the_first() {
        for (body, kept) in [
            ("a\r\n.\r\r\nMAIL FROM:<x@y>\r\n", "a\r\n\r\r\nMAIL FROM:<x@y>\r\n"),
            ("a\n.\nMAIL FROM:<x@y>\r\n", "a\n.\nMAIL FROM:<x@y>\r\n"),
            ("a\r\n.\nMAIL FROM:<x@y>\r\n", "a\r\n\nMAIL FROM:<x@y>\r\n"),
            ("a\n.\r\nMAIL FROM:<x@y>\r\n", "a\n.\r\nMAIL FROM:<x@y>\r\n"),
            ("a\r\r\n..b\r\n", "a\r\r\n.b\r\n"),
        ] {
            let mut s = session(TlsPolicy::Offer);
            transaction(&mut s);
            let (out, step) = run(&mut s, &format!("DATA\r\n{body}"));
            assert!(out.contains("354 "), "{out}");
            assert_eq!(step, Step::NeedMore, "{body:?} must not end the message");
            let (_, step) = run(&mut s, ".\r\n");
            let Step::Deliver(t) = step else { panic!("{body:?}: {step:?}") };
            assert_eq!(String::from_utf8(t.data).unwrap(), kept, "{body:?}");
        }
        // Split anywhere, the end is still found.
        let mut s = session(TlsPolicy::Offer);
        transaction(&mut s);
        run(&mut s, "DATA\r\nx\r");
        run(&mut s, "\n.");
        let (_, step) = run(&mut s, "\r\nQUIT\r\n");
        let Step::Deliver(t) = step else { panic!("{step:?}") };
        assert_eq!(t.data, b"x\r\n");
    }

    #[test]
    fn bdat_zero_last_ends_the_message_at_once() {
        let mut s = session(TlsPolicy::Offer);
        transaction(&mut s);
        let (out, _) = run(&mut s, "BDAT 5\r\nhello");
        assert_eq!(out, "250 2.0.0 5 octets received\r\n");
        let (_, step) = run(&mut s, "BDAT 0 LAST\r\n");
        let Step::Deliver(t) = step else { panic!("{step:?}") };
        assert_eq!(t.data, b"hello");
    }

    #[test]
    fn bdat_without_mail_gets_one_reply_after_its_chunk() {
        let mut s = session(TlsPolicy::Offer);
        run(&mut s, "EHLO c\r\n");
        let (out, step) = run(&mut s, "BDAT 4 LAST\r\nabcdNOOP\r\n");
        assert_eq!(out, "503 5.5.1 Send MAIL and RCPT first\r\n250 2.0.0 OK\r\n");
        assert_eq!(step, Step::NeedMore);
        let (out, _) = run(&mut s, "BDAT 0 LAST\r\n");
        assert_eq!(out, "503 5.5.1 Send MAIL and RCPT first\r\n");
    }

    #[test]
    fn bdat_chunks_make_one_message() {
        let mut s = session(TlsPolicy::Off);
        let (out, step) = run(
            &mut s,
            "EHLO c\r\nMAIL FROM:<a@x.com>\r\nRCPT TO:<journal-abc@archive.test>\r\nBDAT 9\r\nSubject: BDAT 5 LAST\r\nhello",
        );
        assert!(out.contains("250 2.0.0 9 octets received"), "{out}");
        let Step::Deliver(t) = step else { panic!("{step:?}") };
        assert_eq!(t.data, b"Subject: hello");
    }

    #[test]
    fn oversized_messages_are_refused_by_size_parameter_and_by_content() {
        let mut s = session(TlsPolicy::Off);
        let (out, _) = run(&mut s, "EHLO c\r\nMAIL FROM:<a@x.com> SIZE=5000\r\n");
        assert!(out.contains("552 5.3.4"), "{out}");
        let body = "x".repeat(2000);
        let (out, step) = run(
            &mut s,
            &format!("MAIL FROM:<a@x.com>\r\nRCPT TO:<journal-abc@archive.test>\r\nDATA\r\n{body}\r\n.\r\n"),
        );
        assert!(out.contains("552 5.3.4"), "{out}");
        assert_eq!(step, Step::NeedMore);
    }

    #[test]
    fn mistakes_get_codes_and_too_many_close_the_session() {
        let mut s = session(TlsPolicy::Off);
        let (out, _) = run(&mut s, "FOO\r\n");
        assert!(out.starts_with("500 5.5.1"));
        let (out, _) = run(&mut s, "MAIL FROM:<a@x.com>\r\n");
        assert!(out.starts_with("503"));
        let (out, _) = run(&mut s, "EHLO c\r\nVRFY bob\r\nMAIL FROM:<<bad\r\n");
        assert!(out.contains("502 5.5.1") && out.contains("501"), "{out}");
        let (out, step) = run(&mut s, "FOO\r\nFOO\r\nFOO\r\n");
        assert!(out.contains("421 4.7.0"), "{out}");
        assert_eq!(step, Step::Close);
    }

    #[test]
    fn smtputf8_addresses_are_accepted() {
        let mut s = session(TlsPolicy::Off);
        let (out, _) = run(&mut s, "EHLO c\r\nMAIL FROM:<jörg@müller.de> SMTPUTF8\r\n");
        assert!(out.contains("250 2.1.0"), "{out}");
    }
}
