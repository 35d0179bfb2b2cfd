//! Building the MIME of an Outlook item: header fields (RFC 2047 words for what is not ASCII),
//! base64 parts, multiparts. Boundaries come from the item's node id, so the same item always
//! makes the same bytes and importing a file again adds nothing.

use base64::Engine;

/// A header value as a field carries it: ASCII as it is, anything else as UTF-8 encoded words.
pub fn word(value: &str) -> String {
    let value = value.replace(['\r', '\n'], " ");
    if value.bytes().all(|b| (0x20..0x7F).contains(&b)) && !value.contains("=?") {
        return value;
    }
    // Encoded words of at most 75 characters: 45 bytes of UTF-8 make 60 of base64.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `Name <address>`, or the address alone, or the name alone when there is no address. What the
/// file says is not trusted to be an address: line breaks, controls and angle brackets are left
/// out, so no value can end its field and start another.
pub fn mailbox(name: &str, address: &str) -> String {
    let address: String = address.chars().filter(|c| !c.is_control() && !"<>\"".contains(*c)).collect();
    let (name, address) = (name.trim(), address.trim());
    match (name.is_empty() || name == address, address.is_empty()) {
        (true, true) => String::new(),
        (true, false) => address.to_owned(),
        (false, true) if name.bytes().all(|b| (0x20..0x7F).contains(&b)) => {
            format!("\"{}\"", name.replace(['"', '\\'], ""))
        }
        (false, true) => word(name),
        (false, false) => {
            let ascii = name.bytes().all(|b| (0x20..0x7F).contains(&b));
            let shown = if ascii { format!("\"{}\"", name.replace(['"', '\\'], "")) } else { word(name) };
            format!("{shown} <{address}>")
        }
    }
}

fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// One part: its header fields, then its body.
pub struct Part {
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl Part {
    /// A leaf in base64.
    pub fn leaf(content_type: &str, extra: Vec<String>, data: &[u8]) -> Part {
        let mut headers = vec![format!("Content-Type: {content_type}"), "Content-Transfer-Encoding: base64".into()];
        headers.extend(extra);
        Part { headers, body: base64_lines(data).into_bytes() }
    }

    /// An attached message, as it is (7bit/8bit: a message/rfc822 part must not be encoded).
    pub fn message(extra: Vec<String>, raw: Vec<u8>) -> Part {
        let mut headers = vec!["Content-Type: message/rfc822".to_owned()];
        headers.extend(extra);
        Part { headers, body: raw }
    }

    /// A multipart of `subtype` holding `parts`; `boundary` must be unique in the message.
    pub fn multipart(subtype: &str, boundary: &str, parts: Vec<Part>) -> Part {
        let mut body = Vec::new();
        for p in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            p.write_to(&mut body);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Part { headers: vec![format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"")], body }
    }

    fn write_to(self, out: &mut Vec<u8>) {
        for h in self.headers {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The whole message: `head` (header fields, each ending in CRLF), MIME-Version, then this
    /// part's own fields and body.
    pub fn into_message(self, head: &[u8]) -> Vec<u8> {
        let mut out = head.to_vec();
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        self.write_to(&mut out);
        out
    }
}

/// A filename parameter: quoted ASCII, or RFC 2231 UTF-8 beside a plain fallback.
pub fn filename_params(name: &str) -> String {
    let name = name.replace(['\r', '\n', '"', '\\'], "_");
    if name.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return format!("filename=\"{name}\"");
    }
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("filename*=UTF-8''{encoded}")
}

/// The header fields of transport headers that describe the original body's structure, which
/// the rebuilt message replaces.
pub fn without_structure(headers: &str) -> Vec<u8> {
    let structural = ["content-type", "content-transfer-encoding", "mime-version", "content-disposition"];
    let mut out = Vec::new();
    let mut keep = true;
    for line in headers.lines() {
        if line.is_empty() {
            // The end of the header block.
            break;
        }
        if !line.starts_with([' ', '\t']) {
            let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            keep = !structural.contains(&name.as_str());
        }
        if keep {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_that_are_not_ascii_become_encoded_words_of_at_most_75_characters() {
        assert_eq!(word("Quarterly numbers"), "Quarterly numbers");
        let encoded = word(&"Prüfbericht ".repeat(10));
        assert!(encoded.lines().all(|l| l.trim().len() <= 75), "{encoded}");
        assert!(encoded.starts_with("=?UTF-8?B?"));
        assert_eq!(mailbox("Bob", "bob@contoso.com"), "\"Bob\" <bob@contoso.com>");
        assert_eq!(mailbox("bob@contoso.com", "bob@contoso.com"), "bob@contoso.com");
        assert_eq!(mailbox("", "x@contoso.com>\r\nBcc: <eve@evil.example"), "x@contoso.comBcc: eve@evil.example");
    }

    #[test]
    fn transport_headers_lose_only_their_structure() {
        let head =
            "From: a@b\r\nContent-Type: multipart/mixed;\r\n\tboundary=x\r\nSubject: s\r\nMIME-Version: 1.0\r\n\r\n";
        assert_eq!(without_structure(head), b"From: a@b\r\nSubject: s\r\n");
    }
}
