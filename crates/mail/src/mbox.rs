//! Splitting an mbox file into messages: mboxo and mboxrd (`>From ` unquoted by one `>`), and the
//! Content-Length style (mboxcl/mboxcl2), whose bodies may hold unquoted `From ` lines.
//!
//! Works on the whole file as one byte slice (the importer maps the file into memory), so a
//! Content-Length can be checked against what really follows before it is trusted.

use std::borrow::Cow;

/// Iterator over the messages of an mbox file.
pub struct Mbox<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Mbox<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
        // Leading blank lines before the first postmark are not a message.
        let mut pos = 0;
        while let Some(len) = line_len(data, pos).filter(|&l| is_blank(&data[pos..pos + l])) {
            pos += len;
        }
        Mbox { data, pos }
    }
}

/// True when the bytes start like an mbox file (a `From ` postmark on the first line).
pub fn looks_like_mbox(data: &[u8]) -> bool {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    is_postmark(&data[..end])
}

impl<'a> Iterator for Mbox<'a> {
    type Item = Cow<'a, [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let data = self.data;
        if self.pos >= data.len() {
            return None;
        }
        let mut start = self.pos;
        if let Some(len) = line_len(data, start)
            && is_postmark(trim_eol(&data[start..start + len]))
        {
            start += len;
        }
        if let Some(end) = content_length_end(data, start) {
            self.pos = skip_blank_line(data, end);
            return Some(Cow::Borrowed(&data[start..end]));
        }
        // Find the next postmark line; the blank line before it is the separator, not content.
        let mut line = start;
        let mut end = data.len();
        while let Some(len) = line_len(data, line) {
            if line > start && is_postmark(trim_eol(&data[line..line + len])) {
                end = line;
                break;
            }
            line += len;
        }
        self.pos = end;
        // The blank line before the next postmark (or at the end of the file) separates messages.
        let mut body_end = end;
        if data[start..end].ends_with(b"\r\n\r\n") {
            body_end -= 2;
        } else if data[start..end].ends_with(b"\n\n") {
            body_end -= 1;
        }
        Some(unquote(&data[start..body_end]))
    }
}

/// A postmark is `From <sender>[ <date>]`. A body line such as `From Russia with love` that was
/// never quoted is not one: what follows the sender must be empty or carry a digit (the date),
/// except Thunderbird's `From - ` placeholder.
fn is_postmark(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let rest = trim_ascii(rest);
    let mut parts = rest.splitn(2, |&b| b == b' ');
    let sender = parts.next().unwrap_or_default();
    let date = trim_ascii(parts.next().unwrap_or_default());
    sender == b"-" || sender.is_empty() || date.is_empty() || date.iter().any(u8::is_ascii_digit)
}

/// The end of a message whose header carries a Content-Length that lands exactly on the next
/// postmark (after one blank line) or the end of the file.
fn content_length_end(data: &[u8], start: usize) -> Option<usize> {
    let (headers_end, body_start) = header_block_end(data, start)?;
    let length = header_value(&data[start..headers_end], b"content-length")?;
    let length: usize = std::str::from_utf8(length).ok()?.trim().parse().ok()?;
    let end = body_start.checked_add(length)?;
    if end > data.len() {
        return None;
    }
    let after = skip_blank_line(data, end);
    let next_is_postmark = line_len(data, after).is_some_and(|l| is_postmark(trim_eol(&data[after..after + l])));
    (after >= data.len() || next_is_postmark).then_some(end)
}

fn header_block_end(data: &[u8], start: usize) -> Option<(usize, usize)> {
    let mut line = start;
    while let Some(len) = line_len(data, line) {
        if is_blank(&data[line..line + len]) {
            return Some((line, line + len));
        }
        line += len;
    }
    None
}

fn header_value<'a>(headers: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    headers.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon].eq_ignore_ascii_case(name).then(|| trim_ascii(&line[colon + 1..]))
    })
}

fn skip_blank_line(data: &[u8], pos: usize) -> usize {
    match line_len(data, pos) {
        Some(len) if is_blank(&data[pos..pos + len]) => pos + len,
        _ => pos,
    }
}

/// `>From `, `>>From ` … lose one `>` (mboxrd; for mboxo only the first form occurs).
fn unquote(message: &[u8]) -> Cow<'_, [u8]> {
    let quoted = |line: &[u8]| {
        let gt = line.iter().take_while(|&&b| b == b'>').count();
        gt > 0 && line[gt..].starts_with(b"From ")
    };
    if !message.split(|&b| b == b'\n').any(quoted) {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    for (i, line) in message.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(if quoted(line) { &line[1..] } else { line });
    }
    Cow::Owned(out)
}

/// Length of the line at `pos` including its newline, or None at the end of the data.
fn line_len(data: &[u8], pos: usize) -> Option<usize> {
    if pos >= data.len() {
        return None;
    }
    Some(data[pos..].iter().position(|&b| b == b'\n').map_or(data.len() - pos, |i| i + 1))
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    trim_eol(line).is_empty()
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Most labels taken from one message, and most characters of one.
const MAX_LABELS: usize = 50;
const MAX_LABEL: usize = 200;
/// Gmail's labels that say what was done with a message, not where it is filed.
const STATE_LABELS: [&str; 2] = ["Opened", "Unread"];

/// The labels of a message from a Google Takeout mbox (`X-Gmail-Labels: Inbox,Important,"Work,
/// 2019",Projects/Alpha`; encoded words decoded), in order, as folder paths; state labels
/// (Opened, Unread) left out. Empty when the message has none.
pub fn gmail_labels(raw: &[u8]) -> Vec<String> {
    let Some(headers) = mail_parser::MessageParser::default().parse_headers(raw) else { return Vec::new() };
    let Some(value) = headers.header("X-Gmail-Labels").and_then(|v| v.as_text()) else { return Vec::new() };
    let mut labels = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars().chain(std::iter::once(',')) {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                let label: String =
                    decoded(current.trim()).chars().filter(|c| !c.is_control()).take(MAX_LABEL).collect();
                let label = label.trim_matches('/').to_owned();
                if !label.is_empty() && !STATE_LABELS.contains(&label.as_str()) && !labels.contains(&label) {
                    labels.push(label);
                }
                current.clear();
                if labels.len() == MAX_LABELS {
                    break;
                }
            }
            c => current.push(c),
        }
    }
    labels
}

/// A label that is an encoded word (`=?UTF-8?Q?B=C3=BCro?=`) decoded: Gmail writes them between
/// commas, where a header parser does not look for them.
fn decoded(label: &str) -> String {
    if !(label.starts_with("=?") && label.ends_with("?=")) {
        return label.to_owned();
    }
    let probe = format!("Subject: {label}\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse_headers(probe.as_bytes())
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_else(|| label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_labels_are_folders_in_order_without_state_labels() {
        let raw = b"X-Gmail-Labels: Inbox,Opened,\"Work, 2019\",Projects/Alpha,=?UTF-8?Q?B=C3=BCro?=,Unread,Inbox\r\n\
From: a@gmail.com\r\nSubject: labels\r\n\r\nBody\r\n";
        assert_eq!(gmail_labels(raw), ["Inbox", "Work, 2019", "Projects/Alpha", "Büro"]);
        assert!(gmail_labels(b"From: a@gmail.com\r\nSubject: none\r\n\r\nBody\r\n").is_empty());
    }

    fn split(data: &str) -> Vec<String> {
        Mbox::new(data.as_bytes()).map(|m| String::from_utf8(m.into_owned()).unwrap()).collect()
    }

    #[test]
    fn messages_split_at_postmarks_and_lose_the_separator_line() {
        let got = split(
            "From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody 1\n\nFrom b@x Tue Jan  2 00:00:00 2024\nSubject: two\n\nbody 2\n",
        );
        assert_eq!(got, ["Subject: one\n\nbody 1\n", "Subject: two\n\nbody 2\n"]);
    }

    #[test]
    fn quoted_from_lines_lose_one_quote() {
        let got = split("From a@x 1\nSubject: q\n\n>From here\n>>From there\n");
        assert_eq!(got, ["Subject: q\n\nFrom here\n>From there\n"]);
    }

    #[test]
    fn unquoted_from_line_in_a_body_does_not_start_a_message() {
        let got = split("From -\nSubject: bond\n\nFrom Russia with love\n\nFrom -\nSubject: two\n\nx\n");
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("From Russia with love"));
    }

    #[test]
    fn content_length_is_trusted_when_it_lands_on_a_postmark() {
        let body = "line\nFrom 1 2 3\n";
        let data = format!("From - \nContent-Length: {}\n\n{body}\nFrom - \nSubject: 2\n\nx\n", body.len());
        let got = split(&data);
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with(body));
    }

    #[test]
    fn wrong_content_length_falls_back_to_postmarks() {
        let got = split("From - \nContent-Length: 999\n\nshort\n\nFrom - \nSubject: 2\n\nx\n");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn crlf_mbox_keeps_crlf_and_drops_the_separator() {
        let got = split("From a 1\r\nSubject: a\r\n\r\nx\r\n\r\nFrom b 2\r\nSubject: b\r\n\r\ny\r\n");
        assert_eq!(got, ["Subject: a\r\n\r\nx\r\n", "Subject: b\r\n\r\ny\r\n"]);
    }

    #[test]
    fn byte_order_mark_and_empty_input() {
        assert_eq!(split("\u{feff}From -\nSubject: a\n\nx\n").len(), 1);
        assert!(split("").is_empty());
        assert!(looks_like_mbox(b"From - \nX: y\n"));
        assert!(!looks_like_mbox(b"Subject: x\n\nFrom here"));
    }
}
