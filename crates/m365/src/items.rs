//! Calendar events and contacts as archivable items: each becomes a small MIME message whose body
//! is the iCalendar event or the vCard, with the organiser and attendees (or the contact's
//! addresses) in its header, so search finds it like mail. A changed event or contact arrives
//! again through delta and is kept as a new version; nothing is overwritten.

use serde_json::Value;

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Escapes a value for iCalendar and vCard (RFC 5545 §3.3.11, RFC 6350 §3.4).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace(';', "\\;").replace(',', "\\,").replace("\r\n", "\\n").replace('\n', "\\n")
}

fn header_text(s: &str) -> String {
    // Header values stay on one line; non-ASCII is sent as UTF-8 (the parser reads it).
    s.replace(['\r', '\n'], " ")
}

fn ical_time(v: &Value) -> String {
    // Graph: {"dateTime": "2024-07-01T09:00:00.0000000", "timeZone": "UTC"}.
    let dt = v["dateTime"].as_str().unwrap_or_default();
    let compact: String = dt.chars().take(19).filter(|c| c.is_ascii_digit() || *c == 'T').collect();
    if v["timeZone"].as_str().unwrap_or("UTC").eq_ignore_ascii_case("UTC") { format!("{compact}Z") } else { compact }
}

fn rfc2822_from_graph(v: &Value) -> String {
    let dt = v["dateTime"].as_str().unwrap_or_default();
    let parsed = time::PrimitiveDateTime::parse(
        &dt.chars().take(19).collect::<String>(),
        &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    );
    match parsed {
        Ok(p) => p.assume_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn address(v: &Value) -> Option<String> {
    let a = v["emailAddress"]["address"].as_str().or_else(|| v["address"].as_str())?;
    let name = v["emailAddress"]["name"].as_str().or_else(|| v["name"].as_str()).unwrap_or("");
    Some(if name.is_empty() { a.to_owned() } else { format!("\"{}\" <{a}>", name.replace('"', "")) })
}

/// A Graph event → a message holding its iCalendar (method PUBLISH).
pub fn event_item(mailbox: &str, e: &Value) -> Vec<u8> {
    let id = text(&e["id"]);
    let subject = text(&e["subject"]);
    let organizer = address(&e["organizer"]).unwrap_or_else(|| mailbox.to_owned());
    let attendees: Vec<String> = e["attendees"].as_array().into_iter().flatten().filter_map(address).collect();
    let body = e["body"]["content"].as_str().unwrap_or_default();
    let plain = if e["body"]["contentType"].as_str() == Some("html") { strip_tags(body) } else { body.to_owned() };
    let mut ics = String::from(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Coffer//Microsoft 365 archive//EN\r\nMETHOD:PUBLISH\r\nBEGIN:VEVENT\r\n",
    );
    ics += &format!("UID:{}\r\n", esc(e["iCalUId"].as_str().unwrap_or(&id)));
    ics += &format!("DTSTART:{}\r\nDTEND:{}\r\n", ical_time(&e["start"]), ical_time(&e["end"]));
    if let Some(stamp) = e["lastModifiedDateTime"].as_str() {
        let compact: String = stamp.chars().take(19).filter(|c| c.is_ascii_digit() || *c == 'T').collect();
        ics += &format!("DTSTAMP:{compact}Z\r\n");
    }
    ics += &format!("SUMMARY:{}\r\n", esc(&subject));
    if let Some(loc) = e["location"]["displayName"].as_str().filter(|l| !l.is_empty()) {
        ics += &format!("LOCATION:{}\r\n", esc(loc));
    }
    ics += &format!("ORGANIZER:mailto:{}\r\n", e["organizer"]["emailAddress"]["address"].as_str().unwrap_or(mailbox));
    for a in e["attendees"].as_array().into_iter().flatten() {
        if let Some(addr) = a["emailAddress"]["address"].as_str() {
            ics += &format!("ATTENDEE:mailto:{addr}\r\n");
        }
    }
    if !plain.trim().is_empty() {
        ics += &format!("DESCRIPTION:{}\r\n", esc(plain.trim()));
    }
    ics += "END:VEVENT\r\nEND:VCALENDAR\r\n";
    let mut out = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <event-{}@graph.coffer>\r\nX-Coffer-Item: calendar\r\n\
MIME-Version: 1.0\r\nContent-Type: text/calendar; charset=utf-8; method=PUBLISH\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        header_text(&organizer),
        header_text(&if attendees.is_empty() { mailbox.to_owned() } else { attendees.join(", ") }),
        header_text(&subject),
        rfc2822_from_graph(&e["start"]),
        short_id(&id, e["lastModifiedDateTime"].as_str().unwrap_or("")),
    );
    out += &ics;
    out.into_bytes()
}

/// A Graph contact → a message holding its vCard 4.0.
pub fn contact_item(mailbox: &str, c: &Value) -> Vec<u8> {
    let id = text(&c["id"]);
    let name = text(&c["displayName"]);
    let emails: Vec<String> = c["emailAddresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["address"].as_str().map(str::to_owned))
        .collect();
    let mut vcf = String::from("BEGIN:VCARD\r\nVERSION:4.0\r\n");
    vcf += &format!("FN:{}\r\n", esc(&name));
    vcf += &format!("N:{};{};;;\r\n", esc(&text(&c["surname"])), esc(&text(&c["givenName"])));
    for e in &emails {
        vcf += &format!("EMAIL:{}\r\n", esc(e));
    }
    for p in
        c["businessPhones"].as_array().into_iter().flatten().filter_map(Value::as_str).chain(c["mobilePhone"].as_str())
    {
        vcf += &format!("TEL:{}\r\n", esc(p));
    }
    if let Some(org) = c["companyName"].as_str().filter(|o| !o.is_empty()) {
        vcf += &format!("ORG:{}\r\n", esc(org));
    }
    if let Some(title) = c["jobTitle"].as_str().filter(|t| !t.is_empty()) {
        vcf += &format!("TITLE:{}\r\n", esc(title));
    }
    vcf += &format!("UID:{}\r\nEND:VCARD\r\n", esc(&id));
    let mut out = format!(
        "From: {}\r\nTo: {}\r\nSubject: Contact: {}\r\nMessage-ID: <contact-{}@graph.coffer>\r\nX-Coffer-Item: contact\r\n\
MIME-Version: 1.0\r\nContent-Type: text/vcard; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        header_text(mailbox),
        header_text(&emails.join(", ")),
        header_text(&name),
        short_id(&id, c["lastModifiedDateTime"].as_str().unwrap_or("")),
    );
    out += &vcf;
    out.into_bytes()
}

/// A Message-ID part: the item and its version (a changed item is a new version).
fn short_id(id: &str, version: &str) -> String {
    use sha2::Digest;
    hex_of(&sha2::Sha256::digest(format!("{id}|{version}").as_bytes())[..12])
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_becomes_a_searchable_icalendar_item() {
        let e = serde_json::json!({
            "id": "AAMkEv1", "subject": "Budget review; Q3", "lastModifiedDateTime": "2024-06-01T10:00:00Z",
            "start": {"dateTime": "2024-07-01T09:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2024-07-01T10:00:00.0000000", "timeZone": "UTC"},
            "organizer": {"emailAddress": {"name": "Alice", "address": "alice@contoso.com"}},
            "attendees": [{"emailAddress": {"name": "Bob", "address": "bob@contoso.com"}, "type": "required"}],
            "location": {"displayName": "Room 4"}, "body": {"contentType": "html", "content": "<p>Numbers</p>"},
        });
        let raw = String::from_utf8(event_item("alice@contoso.com", &e)).unwrap();
        assert!(raw.contains("SUMMARY:Budget review\\; Q3\r\n"));
        assert!(raw.contains("DTSTART:20240701T090000Z\r\n"));
        assert!(raw.contains("ATTENDEE:mailto:bob@contoso.com"));
        assert!(raw.contains("DESCRIPTION:Numbers"));
        let doc = coffer_archive::parse(raw.as_bytes());
        assert_eq!(doc.subject.as_deref(), Some("Budget review; Q3"));
        assert_eq!(doc.to[0].address, "bob@contoso.com");
    }
}
