//! A realistic mail generator with known ground truth: every message comes with the facts a search
//! must find it by, so a test can compute the exact expected hit set for a query.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

pub struct Person {
    pub name: &'static str,
    pub address: &'static str,
}

pub const PEOPLE: &[Person] = &[
    Person { name: "Alice Martin", address: "alice.martin@contoso.com" },
    Person { name: "Bob Stone", address: "bob@contoso.com" },
    Person { name: "Carol Nguyen", address: "carol@contoso.com" },
    Person { name: "Dave O'Brien", address: "dave.obrien@contoso.com" },
    Person { name: "Jörg Müller", address: "joerg.mueller@fabrikam.de" },
    Person { name: "Élodie Lefèvre", address: "elodie@fabrikam.fr" },
    Person { name: "田中 太郎", address: "tanaka@example.jp" },
    Person { name: "Wang Fang", address: "wang.fang@example.cn" },
    Person { name: "Erin Walsh", address: "erin@northwind.example" },
    Person { name: "Frank Osei", address: "frank.osei@northwind.example" },
];

pub const ENGLISH: &[&str] = &[
    "budget",
    "report",
    "quarterly",
    "numbers",
    "meeting",
    "contract",
    "invoice",
    "shipment",
    "forecast",
    "review",
    "approval",
    "deadline",
    "customer",
    "supplier",
    "audit",
    "compliance",
    "merger",
    "payroll",
    "pricing",
    "roadmap",
    "security",
    "incident",
    "release",
    "schedule",
    "travel",
    "expense",
    "policy",
    "litigation",
    "settlement",
    "offer",
    "project",
    "proposal",
    "summary",
    "agenda",
    "minutes",
    "draft",
    "final",
    "signature",
    "warehouse",
    "inventory",
];
pub const GERMAN: &[&str] = &["Größe", "Prüfung", "Übersicht", "Bestätigung", "Lösung", "Änderung", "Straße", "Gebühr"];
pub const JAPANESE: &[&str] = &["会議", "予算", "報告書", "契約", "東京", "請求書", "承認", "締め切り"];
pub const CHINESE: &[&str] = &["会议", "预算", "合同", "北京", "发票", "审计"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    German,
    Japanese,
    Chinese,
}

/// What a message is known to contain.
#[derive(Debug, Clone)]
pub struct Truth {
    pub index: usize,
    pub message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub date: i64,
    pub language: Language,
    /// The words of subject and body (for CJK: the text, searched by substring).
    pub subject_words: Vec<String>,
    pub body_words: Vec<String>,
    pub body_text: String,
    pub attachment_names: Vec<String>,
    pub attachment_words: Vec<String>,
    pub in_reply_to: Option<String>,
    pub size: usize,
}

impl Truth {
    pub fn participants(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.from).chain(&self.to).chain(&self.cc).chain(&self.bcc)
    }
}

pub struct Generated {
    pub raw: Vec<u8>,
    pub truth: Truth,
}

pub struct Generator {
    rng: StdRng,
    sent: Vec<String>,
}

/// 2023-01-01T00:00:00Z; generated dates spread over the two years after it.
pub const EPOCH: i64 = 1_672_531_200;

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator { rng: StdRng::seed_from_u64(seed), sent: Vec::new() }
    }

    pub fn message(&mut self, index: usize) -> Generated {
        let rng = &mut self.rng;
        let from = PEOPLE.choose(rng).unwrap();
        let mut others: Vec<&Person> = PEOPLE.iter().filter(|p| p.address != from.address).collect();
        others.shuffle(rng);
        let n_to = rng.gen_range(1..=3);
        let n_cc = rng.gen_range(0..=2);
        let n_bcc = if rng.gen_bool(0.15) { 1 } else { 0 };
        let to: Vec<&Person> = others[..n_to].to_vec();
        let cc: Vec<&Person> = others[n_to..n_to + n_cc].to_vec();
        let bcc: Vec<&Person> = others[n_to + n_cc..n_to + n_cc + n_bcc].to_vec();
        let language = match rng.gen_range(0..20) {
            0..=14 => Language::English,
            15..=16 => Language::German,
            17..=18 => Language::Japanese,
            _ => Language::Chinese,
        };
        let vocab = match language {
            Language::English => ENGLISH,
            Language::German => GERMAN,
            Language::Japanese => JAPANESE,
            Language::Chinese => CHINESE,
        };
        let cjk = matches!(language, Language::Japanese | Language::Chinese);
        let pick = |rng: &mut StdRng, n: usize| -> Vec<String> {
            (0..n).map(|_| vocab.choose(rng).unwrap().to_string()).collect()
        };
        let n = rng.gen_range(2..=4);
        let subject_words = pick(rng, n);
        let n = rng.gen_range(10..=60);
        let body_words = pick(rng, n);
        let join = |w: &[String]| if cjk { w.concat() } else { w.join(" ") };
        let reply = !self.sent.is_empty() && rng.gen_bool(0.2);
        let in_reply_to = reply.then(|| self.sent.choose(rng).unwrap().clone());
        let subject = format!("{}{}", if reply { "Re: " } else { "" }, join(&subject_words));
        let body_text = join(&body_words);
        let date = EPOCH + rng.gen_range(0..2 * 365 * 86_400);
        let message_id = format!("gen-{index}-{:x}@{}", rng.r#gen::<u32>(), from.address.split('@').nth(1).unwrap());
        let with_attachment = rng.gen_bool(0.3);
        let attachment_names = if with_attachment {
            vec![format!("{}-{index}.txt", ["report", "invoice", "minutes", "Übersicht"].choose(rng).unwrap())]
        } else {
            Vec::new()
        };
        let attachment_words = if with_attachment { pick(rng, 8) } else { Vec::new() };
        let html = rng.gen_bool(0.4);

        let mut raw = String::new();
        raw.push_str(&format!(
            "Received: from mail.{0} (mail.{0} [192.0.2.{1}]) by mx.contoso.com with ESMTPS; {2}\r\n",
            from.address.split('@').nth(1).unwrap(),
            rng.gen_range(1..250),
            rfc2822(date)
        ));
        raw.push_str(&format!("From: {}\r\n", mailbox(from)));
        raw.push_str(&format!("To: {}\r\n", to.iter().map(|p| mailbox(p)).collect::<Vec<_>>().join(", ")));
        if !cc.is_empty() {
            raw.push_str(&format!("Cc: {}\r\n", cc.iter().map(|p| mailbox(p)).collect::<Vec<_>>().join(", ")));
        }
        if !bcc.is_empty() {
            raw.push_str(&format!("Bcc: {}\r\n", bcc.iter().map(|p| mailbox(p)).collect::<Vec<_>>().join(", ")));
        }
        raw.push_str(&format!("Subject: {}\r\n", encode_word(&subject)));
        raw.push_str(&format!("Date: {}\r\nMessage-ID: <{message_id}>\r\n", rfc2822(date)));
        if let Some(parent) = &in_reply_to {
            raw.push_str(&format!("In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n"));
        }
        raw.push_str("MIME-Version: 1.0\r\n");
        let text_part = format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body_text}\r\n"
        );
        let alternative = |b: &str| {
            format!(
                "Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n--{b}\r\n{text_part}--{b}\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
                 <html><body><p>{body_text}</p></body></html>\r\n--{b}--\r\n"
            )
        };
        let body = if html { alternative(&format!("alt-{index}")) } else { text_part.clone() };
        if with_attachment {
            let b = format!("mix-{index}");
            raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n{body}--{b}\r\n"));
            raw.push_str(&format!(
                "Content-Type: text/plain; charset=utf-8; name=\"{0}\"\r\nContent-Disposition: attachment; filename=\"{0}\"\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\n{1}\r\n--{b}--\r\n",
                encode_word(&attachment_names[0]),
                attachment_words.join(" ")
            ));
        } else {
            raw.push_str(&body);
        }
        self.sent.push(message_id.clone());
        let size = raw.len();
        Generated {
            raw: raw.into_bytes(),
            truth: Truth {
                index,
                message_id,
                from: from.address.into(),
                to: to.iter().map(|p| p.address.to_string()).collect(),
                cc: cc.iter().map(|p| p.address.to_string()).collect(),
                bcc: bcc.iter().map(|p| p.address.to_string()).collect(),
                subject,
                date,
                language,
                subject_words,
                body_words,
                body_text,
                attachment_names,
                attachment_words,
                in_reply_to,
                size,
            },
        }
    }
}

fn mailbox(p: &Person) -> String {
    format!("{} <{}>", encode_word(p.name), p.address)
}

/// RFC 2047 for non-ASCII header text; ASCII is written as is.
fn encode_word(s: &str) -> String {
    if s.is_ascii() {
        return if s.contains(['\'', ',']) { format!("\"{s}\"") } else { s.to_owned() };
    }
    let hex: String = s
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("={b:02X}") })
        .collect();
    format!("=?UTF-8?Q?{hex}?=")
}

/// A Unix time as an RFC 5322 date (UTC).
pub fn rfc2822(t: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_like_rfc_5322() {
        assert_eq!(rfc2822(EPOCH), "Sun, 01 Jan 2023 00:00:00 +0000");
        assert_eq!(rfc2822(1_709_632_800), "Tue, 05 Mar 2024 10:00:00 +0000");
    }

    #[test]
    fn the_same_seed_generates_the_same_corpus() {
        let a: Vec<_> = (0..20).map(|i| Generator::new(7).message(i).raw).collect();
        let b: Vec<_> = (0..20).map(|i| Generator::new(7).message(i).raw).collect();
        assert_eq!(a, b);
    }
}
