//! Builds Exchange journal reports around original messages, in the shapes Exchange Online,
//! Exchange 2007+ and Exchange 2003 send (no real report is public; the format is in ARCHITECTURE.md).

/// The envelope a journal report lists. Lines are written exactly as given, e.g.
/// `("To", "member@contoso.com, Expanded: sales@contoso.com")`.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub sender: String,
    pub subject: String,
    pub message_id: String,
    pub lines: Vec<(String, String)>,
}

impl Envelope {
    pub fn new(sender: &str, subject: &str, message_id: &str) -> Self {
        Envelope { sender: sender.into(), subject: subject.into(), message_id: message_id.into(), lines: Vec::new() }
    }
    pub fn line(mut self, field: &str, value: &str) -> Self {
        self.lines.push((field.into(), value.into()));
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Exchange Online / 2007+: `X-MS-Journal-Report`, original attached with CTE binary.
    ExchangeOnline,
    /// Exchange 2003: `Content-Identifier: exjournalreport`, 7bit original.
    Exchange2003,
}

pub fn report(original: &[u8], env: &Envelope, style: Style, journal_address: &str) -> Vec<u8> {
    let boundary = format!("journal-{:016x}", rand::random::<u64>());
    let mut out = Vec::new();
    let marker = match style {
        Style::ExchangeOnline => "X-MS-Journal-Report: \r\n",
        Style::Exchange2003 => "Content-Identifier: exjournalreport\r\n",
    };
    out.extend_from_slice(
        format!(
            "Received: from mail.contoso.com (10.0.0.5) by journal.contoso.com; Tue, 5 Mar 2024 10:00:01 +0000\r\n\
             From: Microsoft Exchange <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>\r\n\
             To: {journal_address}\r\nSubject: {}\r\nDate: Tue, 5 Mar 2024 10:00:01 +0000\r\n\
             Message-ID: <journal-{:x}@contoso.com>\r\n{marker}MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n",
            env.subject,
            rand::random::<u64>()
        )
        .as_bytes(),
    );
    out.extend_from_slice(format!("--{boundary}\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n").as_bytes());
    out.extend_from_slice(
        format!("Sender: {}\r\nSubject: {}\r\nMessage-Id: {}\r\n", env.sender, env.subject, env.message_id).as_bytes(),
    );
    for (field, value) in &env.lines {
        out.extend_from_slice(format!("{field}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n").as_bytes());
    if style == Style::ExchangeOnline {
        out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(original);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The bounce Exchange sends to the "undeliverable journal reports" mailbox, carrying the report.
pub fn bounce(report: &[u8]) -> Vec<u8> {
    let boundary = format!("ndr-{:016x}", rand::random::<u64>());
    let mut out = format!(
        "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>\r\n\
         To: undeliverable-journal@contoso.com\r\nSubject: Undeliverable: journal report\r\n\
         Date: Tue, 5 Mar 2024 10:05:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain\r\n\r\nDelivery has failed to these recipients or groups.\r\n\r\n\
         --{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;mail.contoso.com\r\n\r\n\
         Final-Recipient: rfc822;journal-x@archive.test\r\nAction: failed\r\nStatus: 5.4.1\r\n\r\n\
         --{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(report);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}
