//! RTF as text: the HTML an RTF body encapsulates taken back out ([MS-OXRTFEX]: `\fromhtml1`;
//! `\*\htmltag` groups are HTML, `\htmlrtf` … `\htmlrtf0` is RTF-only), or, for plain RTF, its
//! text in the document's code page (`\ansicpg`, `\'hh`, `\uN`). Linear in the input; groups
//! nest at most [`MAX_DEPTH`] deep.

/// Groups nest at most this deep; deeper is not RTF a program wrote.
const MAX_DEPTH: usize = 256;

/// Compressed RTF ([MS-OXRTFCP], Outlook's `PidTagRtfCompressed`, in PST, .msg and TNEF) may
/// decompress to at most this much, and to at most this many times its size (LZFu expands by
/// well under that): a header claiming more is refused, not allocated.
const MAX_RTF: u32 = 64 << 20;
const MAX_EXPANSION: u32 = 32;

/// The RTF a compressed RTF property holds; None when it is not readable.
pub fn decompress(compressed: &[u8]) -> Option<String> {
    let header = compressed.get(..16)?;
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
    let (size, raw, kind) = (word(0), word(4), word(8));
    let stored = (compressed.len() - 16) as u32;
    let sane = raw <= MAX_RTF
        && size as usize + 4 == compressed.len()
        && match kind {
            0x75465A4C => raw <= stored.saturating_mul(MAX_EXPANSION).max(4096),
            0x414C454D => raw <= stored,
            _ => false,
        };
    if !sane {
        return None;
    }
    compressed_rtf::decompress_rtf(compressed).ok()
}

/// The body a compressed RTF property holds: the HTML it encapsulates, or its text.
pub fn compressed_body(compressed: &[u8]) -> Option<RtfBody> {
    decompress(compressed).map(|rtf| convert(&rtf))
}

#[derive(Debug, PartialEq, Eq)]
pub enum RtfBody {
    Html(String),
    Text(String),
}

/// An RTF document's HTML (when it encapsulates some) or text.
pub fn convert(rtf: &str) -> RtfBody {
    let html = rtf.get(..200).unwrap_or(rtf).contains("\\fromhtml");
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    let mut code_page = 1252;
    // Per group: skipped (a destination that is not text), inside an \htmltag group.
    let mut stack: Vec<(bool, bool)> = vec![(false, false)];
    let mut suppressed = false; // \htmlrtf … \htmlrtf0
    let mut skip_chars = 0usize; // after \uN, the \ucN fallback characters
    let mut uc = 1usize;
    let chars: Vec<char> = rtf.chars().collect();
    let mut i = 0;
    let flush = |bytes: &mut Vec<u8>, out: &mut String, code_page: u32| {
        if !bytes.is_empty() {
            out.push_str(&decode(bytes, code_page));
            bytes.clear();
        }
    };
    while i < chars.len() {
        let (skipped, in_tag) = *stack.last().unwrap_or(&(false, false));
        let emit = !skipped && (!html || in_tag || !suppressed);
        match chars[i] {
            '{' => {
                flush(&mut bytes, &mut out, code_page);
                if stack.len() < MAX_DEPTH {
                    stack.push((skipped, in_tag));
                }
                i += 1;
            }
            '}' => {
                flush(&mut bytes, &mut out, code_page);
                if stack.len() > 1 {
                    stack.pop();
                }
                i += 1;
            }
            '\\' => {
                i += 1;
                let Some(&c) = chars.get(i) else { break };
                if c == '\'' {
                    // A byte in the document's code page.
                    let hex: String = chars.get(i + 1..i + 3).map(|h| h.iter().collect()).unwrap_or_default();
                    i += 3;
                    if skip_chars > 0 {
                        skip_chars -= 1;
                    } else if emit && let Ok(b) = u8::from_str_radix(&hex, 16) {
                        bytes.push(b);
                    }
                    continue;
                }
                if !c.is_ascii_alphabetic() {
                    // A control symbol: \\ \{ \} are text; \* marks a destination to skip unless known.
                    i += 1;
                    match c {
                        '*' => {
                            if let Some(top) = stack.last_mut() {
                                top.0 = !starts_with(&chars, i, "\\htmltag");
                            }
                        }
                        '\\' | '{' | '}' if emit => {
                            flush(&mut bytes, &mut out, code_page);
                            out.push(c);
                        }
                        '~' if emit => out.push('\u{a0}'),
                        _ => {}
                    }
                    continue;
                }
                let start = i;
                while i < chars.len() && chars[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let num_start = i;
                if i < chars.len() && (chars[i] == '-' || chars[i].is_ascii_digit()) {
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let number: Option<i64> = chars[num_start..i].iter().collect::<String>().parse().ok();
                if i < chars.len() && chars[i] == ' ' {
                    i += 1;
                }
                flush(&mut bytes, &mut out, code_page);
                match word.as_str() {
                    "fonttbl" | "colortbl" | "stylesheet" | "info" | "pict" | "object" | "header" | "footer"
                    | "listtable" | "listoverridetable" | "rsidtbl" | "generator" => {
                        if let Some(top) = stack.last_mut() {
                            top.0 = true;
                        }
                    }
                    "htmltag" => {
                        if let Some(top) = stack.last_mut() {
                            *top = (false, true);
                        }
                    }
                    "htmlrtf" => suppressed = number != Some(0),
                    "ansicpg" => code_page = number.unwrap_or(1252).clamp(0, 65535) as u32,
                    "uc" => uc = number.unwrap_or(1).clamp(0, 8) as usize,
                    "u" if emit => {
                        let n = number.unwrap_or(0);
                        let n = if n < 0 { n + 65536 } else { n };
                        out.extend(char::from_u32(n as u32));
                        skip_chars = uc;
                    }
                    "par" | "line" if emit && !in_tag => out.push_str(if html { "\r\n" } else { "\n" }),
                    "tab" if emit => out.push('\t'),
                    _ => {}
                }
            }
            '\r' | '\n' => i += 1,
            c => {
                i += 1;
                if skip_chars > 0 {
                    skip_chars -= 1;
                } else if emit {
                    if c.is_ascii() {
                        bytes.push(c as u8);
                    } else {
                        flush(&mut bytes, &mut out, code_page);
                        out.push(c);
                    }
                }
            }
        }
    }
    flush(&mut bytes, &mut out, code_page);
    if html { RtfBody::Html(out) } else { RtfBody::Text(out.trim().to_owned()) }
}

fn starts_with(chars: &[char], at: usize, word: &str) -> bool {
    let mut at = at;
    while chars.get(at) == Some(&' ') {
        at += 1;
    }
    word.chars().enumerate().all(|(k, c)| chars.get(at + k) == Some(&c))
}

fn decode(bytes: &[u8], code_page: u32) -> String {
    let encoding = crate::code_page(code_page.into()).unwrap_or(encoding_rs::WINDOWS_1252);
    encoding.decode(bytes).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_rtf_header_claiming_more_than_the_data_can_hold_is_refused_not_allocated() {
        let mut data = vec![0u8; 32];
        data[0..4].copy_from_slice(&28u32.to_le_bytes());
        data[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        data[8..12].copy_from_slice(&0x75465A4Cu32.to_le_bytes());
        assert_eq!(compressed_body(&data), None);
        assert_eq!(compressed_body(&data[..8]), None);
        data[8..12].copy_from_slice(&0x414C454Du32.to_le_bytes());
        data[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(compressed_body(&data), None, "uncompressed, but longer than what follows");
    }

    #[test]
    fn html_encapsulated_in_rtf_comes_back_out() {
        let rtf = r"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}{\*\htmltag19 <html>}{\*\htmltag34 <body>}\htmlrtf {\htmlrtf0 Caf\'e9 \{ok\}{\*\htmltag84 <br>}\htmlrtf \par\htmlrtf0 }{\*\htmltag27 </body></html>}}";
        assert_eq!(convert(rtf), RtfBody::Html("<html><body>Café {ok}<br></body></html>".into()));
    }

    #[test]
    fn plain_rtf_gives_its_text() {
        let rtf = r"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}{\*\generator Riched20;}\f0 Quarterly \b numbers\b0\par Gr\u252?\'fc\par}";
        assert_eq!(convert(rtf), RtfBody::Text("Quarterly numbers\nGrüü".into()));
    }
}
