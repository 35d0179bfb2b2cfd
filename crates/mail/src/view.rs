//! What a reader sees of one message: its header fields, its text or HTML body and its
//! attachments, numbered in the order [`crate::parse`] lists them. The HTML is returned as the
//! sender wrote it; making it safe to show is the front end's job.

use mail_parser::{MessageParser, MimeHeaders, PartType};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageView {
    /// Header fields in their order, values decoded where the parser could.
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentInfo {
    pub index: usize,
    pub name: String,
    pub content_type: String,
    pub size: usize,
}

/// Reads a message for display. Unparseable input yields an empty view (the raw bytes remain
/// downloadable).
pub fn view(raw: &[u8]) -> MessageView {
    std::panic::catch_unwind(|| view_unguarded(raw)).unwrap_or_default()
}

fn view_unguarded(raw: &[u8]) -> MessageView {
    let Some(message) = MessageParser::default().parse(raw) else {
        return MessageView::default();
    };
    let headers = message
        .headers()
        .iter()
        .map(|h| {
            let bytes = &raw[h.offset_start as usize..h.offset_end as usize];
            let value = crate::document::decode_eight_bit(bytes, &message)
                .unwrap_or_else(|| unfold(&String::from_utf8_lossy(bytes)));
            (h.name().to_owned(), value)
        })
        .collect();
    let join = |parts: Vec<String>| Some(parts.join("\n")).filter(|s| !s.trim().is_empty());
    let text =
        join((0..message.text_body_count()).filter_map(|i| message.body_text(i).map(|t| t.into_owned())).collect());
    // Only real HTML parts: mail-parser also offers a plain text body converted to HTML.
    let html = join(
        message
            .html_body
            .iter()
            .filter_map(|&id| match &message.part(id)?.body {
                mail_parser::PartType::Html(h) => Some(h.to_string()),
                _ => None,
            })
            .collect(),
    );
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(index, part)| AttachmentInfo {
            index,
            name: attachment_name(part, index),
            content_type: content_type(part),
            size: part.contents().len(),
        })
        .collect();
    MessageView { headers, text, html, attachments }
}

/// The decoded bytes of attachment `index`, with its name and content type.
pub fn attachment(raw: &[u8], index: usize) -> Option<(AttachmentInfo, Vec<u8>)> {
    std::panic::catch_unwind(|| {
        let message = MessageParser::default().parse(raw)?;
        let part = message.attachments().nth(index)?;
        let bytes = match &part.body {
            // An attached message downloads as the .eml it is.
            PartType::Message(inner) => inner.raw_message().to_vec(),
            _ => part.contents().to_vec(),
        };
        let info = AttachmentInfo {
            index,
            name: attachment_name(part, index),
            content_type: content_type(part),
            size: bytes.len(),
        };
        Some((info, bytes))
    })
    .ok()
    .flatten()
}

fn content_type(part: &mail_parser::MessagePart) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase()
}

fn attachment_name(part: &mail_parser::MessagePart, index: usize) -> String {
    match (part.attachment_name(), &part.body) {
        (Some(n), _) => n.to_owned(),
        (None, PartType::Message(inner)) => format!("{}.eml", inner.subject().unwrap_or("message")),
        _ => format!("attachment-{}", index + 1),
    }
}

fn unfold(value: &str) -> String {
    let decoded = value.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    // Encoded words (=?utf-8?…?=) read better decoded.
    if decoded.contains("=?") {
        // Parsed as an unstructured field: the parser decodes those.
        let probe = format!("Subject: {decoded}\r\n\r\n");
        if let Some(m) = MessageParser::default().parse(probe.as_bytes())
            && let Some(v) = m.subject()
        {
            return v.to_owned();
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] =
        b"From: Alice <alice@contoso.com>\r\nTo: bob@contoso.com\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n\
<p>Hello <b>Bob</b></p>\r\n--b\r\nContent-Type: application/pdf; name=q3.pdf\r\nContent-Disposition: attachment; \
filename=q3.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b--\r\n";

    #[test]
    fn a_view_has_decoded_headers_the_html_body_and_numbered_attachments() {
        let v = view(MIXED);
        assert!(v.headers.contains(&("Subject".into(), "Café".into())), "{:?}", v.headers);
        assert!(v.html.as_deref().unwrap().contains("<b>Bob</b>"));
        assert_eq!(v.attachments.len(), 1);
        assert_eq!(v.attachments[0].name, "q3.pdf");
        let (info, bytes) = attachment(MIXED, 0).unwrap();
        assert_eq!(info.content_type, "application/pdf");
        assert_eq!(bytes, b"%PDF-1.4");
        assert!(attachment(MIXED, 1).is_none());
    }

    #[test]
    fn a_plain_text_message_has_no_html_body() {
        let v = view(b"From: a@b.c\r\nSubject: hi\r\n\r\nJust text.\r\n");
        assert_eq!(v.html, None, "the reader is shown the text, not a frame with remote-image advice");
        assert_eq!(v.text.as_deref(), Some("Just text.\r\n"));
    }

    #[test]
    fn garbage_gives_an_empty_view() {
        assert_eq!(view(b"").attachments.len(), 0);
    }
}
