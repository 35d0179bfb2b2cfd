//! What a reader sees of one message: its header fields, its text or HTML body and its
//! attachments, numbered in the order [`crate::parse`] lists them. The HTML is returned as the
//! sender wrote it; making it safe to show is the front end's job.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageView {
    /// Header fields in their order, values decoded where the parser could.
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Attachments, without the inline images.
    pub attachments: Vec<AttachmentInfo>,
    /// Raster images the HTML shows by `cid:`: shown in place, not listed.
    pub inline: Vec<InlineImage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineImage {
    /// The Content-ID, without its angle brackets.
    pub cid: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Image types shown in place; others (SVG can carry script) stay attachments.
const RASTER: [&str; 6] = ["image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp", "image/bmp"];
/// Most bytes of inline images one message shows in place; past that they stay attachments.
const MAX_INLINE_BYTES: usize = 16 << 20;

impl MessageView {
    /// The HTML body with each `cid:` reference to an inline image replaced by a `data:` URL of
    /// it (the only `data:` URLs the console keeps).
    pub fn html_with_inline_images(&self) -> Option<String> {
        use base64::Engine;
        let html = self.html.as_deref()?;
        let mut out = String::with_capacity(html.len());
        let mut at = 0;
        for (start, end, id) in cid_references(html) {
            if let Some(image) = self.inline.iter().find(|i| i.cid.eq_ignore_ascii_case(id)) {
                out.push_str(&html[at..start]);
                out.push_str(&format!(
                    "data:{};base64,{}",
                    image.content_type,
                    base64::engine::general_purpose::STANDARD.encode(&image.data)
                ));
                at = end;
            }
        }
        out.push_str(&html[at..]);
        Some(out)
    }
}

/// Every `cid:` reference in an HTML text as (start, end, id), found in one pass; an id ends at
/// a quote, a bracket, a parenthesis or white space.
pub fn cid_references(html: &str) -> Vec<(usize, usize, &str)> {
    let bytes = html.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if bytes[i..i + 4].eq_ignore_ascii_case(b"cid:") {
            let start = i;
            let id_start = i + 4;
            let mut end = id_start;
            while end < bytes.len()
                && !matches!(bytes[end], b'"' | b'\'' | b'<' | b'>' | b'(' | b')' | b' ' | b'\t' | b'\r' | b'\n')
            {
                end += 1;
            }
            if end > id_start {
                found.push((start, end, &html[id_start..end]));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// The numbers (in `attachments()` order) of the raster images the HTML body shows by `cid:`,
/// within [`MAX_INLINE_BYTES`].
pub(crate) fn inline_images(message: &mail_parser::Message) -> std::collections::HashSet<usize> {
    let mut referenced = std::collections::HashSet::new();
    for &id in &message.html_body {
        if let Some(PartType::Html(h)) = message.part(id).map(|p| &p.body) {
            referenced.extend(cid_references(h).into_iter().map(|(_, _, id)| id.to_ascii_lowercase()));
        }
    }
    let mut inline = std::collections::HashSet::new();
    if referenced.is_empty() {
        return inline;
    }
    let mut bytes = 0;
    for (index, part) in message.attachments().enumerate() {
        let Some(cid) = part.content_id() else { continue };
        let cid = cid.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
        let size = part.contents().len();
        if referenced.contains(&cid)
            && RASTER.contains(&content_type(part).as_str())
            && bytes + size <= MAX_INLINE_BYTES
        {
            bytes += size;
            inline.insert(index);
        }
    }
    inline
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
    let shown_inline = inline_images(&message);
    let mut attachments = Vec::new();
    let mut inline = Vec::new();
    for (index, part) in message.attachments().enumerate() {
        if shown_inline.contains(&index) {
            let cid = part.content_id().unwrap_or_default().trim().trim_start_matches('<').trim_end_matches('>');
            inline.push(InlineImage {
                cid: cid.to_owned(),
                content_type: content_type(part),
                data: part.contents().to_vec(),
            });
        } else {
            attachments.push(AttachmentInfo {
                index,
                name: attachment_name(part, index),
                content_type: content_type(part),
                size: part.contents().len(),
            });
        }
    }
    MessageView { headers, text, html, attachments, inline }
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

/// Attached messages inside attached messages are read this deep for their documents.
pub const MAX_NESTED_MESSAGES: usize = 3;

/// Every attachment that is not an attached message, decoded, in one parse (for the indexer's
/// extraction of documents); those of attached messages too, named `<message>.eml/<name>`.
pub fn document_attachments(raw: &[u8]) -> Vec<(AttachmentInfo, Vec<u8>)> {
    fn collect(message: &Message, prefix: &str, depth: usize, out: &mut Vec<(AttachmentInfo, Vec<u8>)>) {
        for (index, part) in message.attachments().enumerate() {
            let name = format!("{prefix}{}", attachment_name(part, index));
            match &part.body {
                PartType::Message(inner) if depth < MAX_NESTED_MESSAGES => {
                    collect(inner, &format!("{name}/"), depth + 1, out)
                }
                PartType::Message(_) => {}
                _ => {
                    let bytes = part.contents().to_vec();
                    let info = AttachmentInfo { index, name, content_type: content_type(part), size: bytes.len() };
                    out.push((info, bytes));
                }
            }
        }
    }
    std::panic::catch_unwind(|| {
        let Some(message) = MessageParser::default().parse(raw) else { return Vec::new() };
        let mut out = Vec::new();
        // Parts the declared boundary misses are read as the index reads them (see `parse`).
        let stray = crate::document::stray_parts(raw, &message);
        let recovered = stray.as_ref().and_then(|s| MessageParser::default().parse(&s.wrapped[..]));
        match recovered {
            Some(recovered) if stray.as_ref().is_some_and(|s| s.replaces_structure(&recovered)) => {
                collect(&recovered, "", 0, &mut out)
            }
            recovered => {
                collect(&message, "", 0, &mut out);
                if let Some(recovered) = recovered {
                    let mut more = Vec::new();
                    collect(&recovered, "", 0, &mut more);
                    let offset = out.len();
                    out.extend(more.into_iter().map(|(mut info, bytes)| {
                        info.index += offset;
                        (info, bytes)
                    }));
                }
            }
        }
        out
    })
    .unwrap_or_default()
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

    const INLINE: &[u8] = b"From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: logo\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: multipart/related; boundary=r\r\n\r\n\
--r\r\nContent-Type: text/html\r\n\r\n<p>Hi</p><img src=\"cid:Logo@1\"><img src='CID:chart@1'><img src=\"cid:vector@1\">\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <Logo@1>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--r\r\nContent-Type: image/gif\r\nContent-ID: <chart@1>\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n\
--r\r\nContent-Type: image/svg+xml\r\nContent-ID: <vector@1>\r\n\r\n<svg onload=alert(1)/>\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <unused@1>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--r--\r\n--m\r\nContent-Type: application/pdf; name=q3.pdf\r\nContent-Disposition: attachment; filename=q3.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--m--\r\n";

    #[test]
    fn raster_images_the_html_shows_by_cid_are_inline_not_attachments() {
        let v = view(INLINE);
        let names: Vec<(usize, &str)> = v.attachments.iter().map(|a| (a.index, a.content_type.as_str())).collect();
        // The SVG (not raster), the image nothing refers to and the PDF stay attachments, with
        // the numbers downloads use.
        assert_eq!(names, [(2, "image/svg+xml"), (3, "image/png"), (4, "application/pdf")]);
        assert_eq!(attachment(INLINE, 4).unwrap().0.name, "q3.pdf");
        let html = v.html_with_inline_images().unwrap();
        assert!(html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\">"), "{html}");
        assert!(html.contains("<img src='data:image/gif;base64,R0lGODlh'>"), "{html}");
        assert!(html.contains("cid:vector@1"), "an SVG is never inlined: {html}");
        let doc = crate::parse(INLINE);
        assert_eq!(doc.attachments.len(), 3, "inline images do not count for has:attachment");
    }

    #[test]
    fn cid_references_are_found_in_one_pass_with_their_ends() {
        let html = "<img src=\"cid:a@x\"> url(cid:b@x) <img src=cid:c@x> cid: cId:D@x";
        let found: Vec<&str> = cid_references(html).into_iter().map(|(_, _, id)| id).collect();
        assert_eq!(found, ["a@x", "b@x", "c@x", "D@x"]);
    }

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
