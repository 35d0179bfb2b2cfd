//! Query syntax tree → tantivy query, for one index schema.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, EmptyQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery,
    RegexQuery, TermQuery,
};
use tantivy::schema::{Field as TField, IndexRecordOption};

use crate::analyzer;
use crate::query::{Expr, Field, QueryError, Value};
use crate::schema::{Fields, normalize_folder, normalize_mailbox, normalize_message_id, placed_term};
use crate::search::Visibility;

type Q = Box<dyn Query>;

/// `scoped` is the visibility of a user who sees only their own mail. For them, Bcc and envelope
/// recipients are left out of every address match (a user who may not see them must not find
/// messages by them either), and `mailbox:` and `folder:` look only into their own mailboxes (that
/// a message sits in another's mailbox names a blind recipient).
pub fn compile(expr: &Expr, f: &Fields, scoped: Option<&Visibility>) -> Result<Q, QueryError> {
    Ok(match expr {
        Expr::All => Box::new(AllQuery),
        Expr::Term { field, value } => term(*field, value, f, scoped)?,
        Expr::Not(inner) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, compile(inner, f, scoped)?),
        ])),
        Expr::And(items) => {
            let mut clauses = Vec::new();
            for item in items {
                match item {
                    Expr::Not(inner) => clauses.push((Occur::MustNot, compile(inner, f, scoped)?)),
                    other => clauses.push((Occur::Must, compile(other, f, scoped)?)),
                }
            }
            if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Expr::Or(items) => {
            let clauses = items
                .iter()
                .map(|i| Ok((Occur::Should, compile(i, f, scoped)?)))
                .collect::<Result<Vec<_>, QueryError>>()?;
            Box::new(BooleanQuery::new(clauses))
        }
    })
}

fn term(field: Option<Field>, value: &Value, f: &Fields, scoped: Option<&Visibility>) -> Result<Q, QueryError> {
    let hide_blind = scoped.is_some();
    let addresses = |list: &[TField]| {
        let visible: Vec<TField> =
            list.iter().copied().filter(|x| !hide_blind || (*x != f.bcc && *x != f.envelope)).collect();
        if visible.is_empty() { Box::new(EmptyQuery) as Q } else { address_query(&visible, value) }
    };
    if let Value::Stemmed(word) = value {
        return match field {
            None => Ok(any_of(analyzer::stemmed_query_terms(word).iter().map(|t| {
                Box::new(TermQuery::new(Term::from_field_text(f.stemmed, t), IndexRecordOption::WithFreqs)) as Q
            }))),
            Some(_) => {
                Err(bad("~", word, "~ searches subject, body and attachments together: write ~word without a field"))
            }
        };
    }
    Ok(match field {
        None => {
            let mut clauses: Vec<(Occur, Q)> = vec![
                (Occur::Should, Box::new(BoostQuery::new(text_query(f.subject, value), 2.0))),
                (Occur::Should, text_query(f.body, value)),
                (Occur::Should, text_query(f.attachment, value)),
                (Occur::Should, text_query(f.filename, value)),
            ];
            if !matches!(value, Value::Phrase(p) if p.contains(char::is_whitespace)) {
                clauses.push((Occur::Should, addresses(&[f.from, f.to, f.cc, f.bcc, f.envelope])));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Some(Field::From) => addresses(&[f.from]),
        Some(Field::To) => addresses(&[f.to]),
        Some(Field::Cc) => addresses(&[f.cc]),
        Some(Field::Bcc) => addresses(&[f.bcc]),
        Some(Field::Envelope) => addresses(&[f.envelope]),
        Some(Field::Recipient) => addresses(&[f.to, f.cc, f.bcc, f.envelope]),
        Some(Field::Participant) => addresses(&[f.from, f.to, f.cc, f.bcc, f.envelope]),
        Some(Field::Subject) => text_query(f.subject, value),
        Some(Field::Body) => text_query(f.body, value),
        Some(Field::Attachment) => text_query(f.attachment, value),
        Some(Field::Filename) => text_query(f.filename, value),
        Some(Field::MessageId) => raw_query(f.message_id, value, normalize_message_id),
        Some(Field::Mailbox) => match scoped {
            None => raw_query(f.mailbox, value, normalize_mailbox),
            Some(v) => {
                let own = v.mailboxes.iter().map(|m| normalize_mailbox(m)).collect::<Vec<_>>();
                let wanted = normalize_mailbox(value.text());
                let matches = |m: &String| match value {
                    Value::Prefix(_) => m.starts_with(&wanted),
                    _ => *m == wanted,
                };
                any_of(
                    own.iter()
                        .filter(|m| matches(m))
                        .map(|m| raw_query(f.mailbox, &Value::Word(m.clone()), normalize_mailbox)),
                )
            }
        },
        Some(Field::Folder) => match scoped {
            None => raw_query(f.folder, value, normalize_folder),
            Some(v) => any_of(v.mailboxes.iter().map(|m| {
                let placed = placed_term(m, value.text());
                match value {
                    Value::Prefix(_) => prefix(f.placed, &placed),
                    _ => Box::new(TermQuery::new(Term::from_field_text(f.placed, &placed), IndexRecordOption::Basic))
                        as Q,
                }
            })),
        },
        Some(Field::Tag) => raw_query(f.tag, value, |v| v.trim().to_lowercase()),
        Some(Field::Filetype) => raw_query(f.filetype, value, |v| v.trim().trim_start_matches('.').to_lowercase()),
        Some(Field::Has) => match value.text().to_ascii_lowercase().as_str() {
            "attachment" | "attachments" => {
                Box::new(TermQuery::new(Term::from_field_u64(f.has_attachment, 1), IndexRecordOption::Basic))
            }
            other => return Err(bad("has", other, "the only one is has:attachment")),
        },
        Some(Field::Size) => size_query(f.size, value.text())?,
        Some(Field::After) => {
            let (start, _) = period("after", value.text())?;
            date_range(f.date, Bound::Included(start), Bound::Unbounded)
        }
        Some(Field::Before) => {
            let (start, _) = period("before", value.text())?;
            date_range(f.date, Bound::Unbounded, Bound::Excluded(start))
        }
        Some(Field::Date) => {
            let text = value.text();
            match text.split_once("..") {
                Some((a, b)) => {
                    let (start, _) = period("date", a)?;
                    let (_, end) = period("date", b)?;
                    date_range(f.date, Bound::Included(start), Bound::Excluded(end))
                }
                None => {
                    let (start, end) = period("date", text)?;
                    date_range(f.date, Bound::Included(start), Bound::Excluded(end))
                }
            }
        }
    })
}

/// Words go through the analyzer; several tokens (a phrase, `e-mail`, CJK text) form a phrase.
fn text_query(field: TField, value: &Value) -> Q {
    let tokens = analyzer::tokens(value.text());
    let terms: Vec<Term> = tokens.iter().map(|t| Term::from_field_text(field, t)).collect();
    match (value, terms.len()) {
        (_, 0) => Box::new(EmptyQuery),
        (Value::Prefix(_), 1) => prefix(field, &tokens[0]),
        (Value::Prefix(_), _) => Box::new(PhrasePrefixQuery::new(terms)),
        (_, 1) => Box::new(TermQuery::new(terms.into_iter().next().unwrap(), IndexRecordOption::WithFreqs)),
        _ => Box::new(PhraseQuery::new(terms)),
    }
}

/// Addresses are whole terms: `alice@contoso.com`, `contoso.com`, `alice`, `martin`. A phrase of
/// several words needs each of them.
fn address_query(fields: &[TField], value: &Value) -> Q {
    let any_field = |word: &str, is_prefix: bool| -> Q {
        let clauses = fields
            .iter()
            .map(|&field| {
                let q: Q = if is_prefix {
                    prefix(field, word)
                } else {
                    Box::new(TermQuery::new(Term::from_field_text(field, word), IndexRecordOption::Basic))
                };
                (Occur::Should, q)
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    };
    let text = value.text().trim().trim_matches(['<', '>']).to_lowercase();
    match value {
        Value::Prefix(_) => any_field(&text, true),
        _ => {
            let words: Vec<&str> = text.split_whitespace().collect();
            match words.len() {
                0 => Box::new(EmptyQuery),
                1 => any_field(words[0], false),
                _ => Box::new(BooleanQuery::new(words.iter().map(|w| (Occur::Must, any_field(w, false))).collect())),
            }
        }
    }
}

/// Matches what any of `queries` matches; nothing when there are none.
fn any_of(queries: impl Iterator<Item = Q>) -> Q {
    let clauses: Vec<(Occur, Q)> = queries.map(|q| (Occur::Should, q)).collect();
    if clauses.is_empty() { Box::new(EmptyQuery) } else { Box::new(BooleanQuery::new(clauses)) }
}

fn raw_query(field: TField, value: &Value, normalize: fn(&str) -> String) -> Q {
    let text = normalize(value.text());
    match value {
        Value::Prefix(_) => prefix(field, &text),
        _ => Box::new(TermQuery::new(Term::from_field_text(field, &text), IndexRecordOption::Basic)),
    }
}

fn prefix(field: TField, text: &str) -> Q {
    let pattern = format!("{}.*", regex_escape(text));
    match RegexQuery::from_pattern(&pattern, field) {
        Ok(q) => Box::new(q),
        Err(_) => Box::new(EmptyQuery),
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"'<>@/:=!,%".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn date_range(field: TField, lower: Bound<i64>, upper: Bound<i64>) -> Q {
    let t = |v: i64| Term::from_field_i64(field, v);
    Box::new(RangeQuery::new(lower.map(t), upper.map(t)))
}

fn size_query(field: TField, text: &str) -> Result<Q, QueryError> {
    let t = |v: u64| Term::from_field_u64(field, v);
    let (lower, upper) = if let Some((a, b)) = text.split_once("..") {
        (Bound::Included(bytes(a)?), Bound::Included(bytes(b)?))
    } else if let Some(v) = text.strip_prefix(">=") {
        (Bound::Included(bytes(v)?), Bound::Unbounded)
    } else if let Some(v) = text.strip_prefix("<=") {
        (Bound::Unbounded, Bound::Included(bytes(v)?))
    } else if let Some(v) = text.strip_prefix('>') {
        (Bound::Excluded(bytes(v)?), Bound::Unbounded)
    } else if let Some(v) = text.strip_prefix('<') {
        (Bound::Unbounded, Bound::Excluded(bytes(v)?))
    } else {
        (Bound::Included(bytes(text)?), Bound::Unbounded)
    };
    Ok(Box::new(RangeQuery::new(lower.map(t), upper.map(t))))
}

/// `1500`, `10K`, `1.5M`, `2G` (binary units; a trailing `B` is allowed).
fn bytes(text: &str) -> Result<u64, QueryError> {
    let upper = text.trim().to_ascii_uppercase();
    let s = upper.strip_suffix('B').unwrap_or(&upper);
    let (number, unit) = match s.char_indices().last() {
        Some((i, 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'M')) => (&s[..i], 1 << 20),
        Some((i, 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| (n * unit as f64) as u64)
        .ok_or_else(|| bad("size", text, "write a size like >1M, <500K, 10K..2M"))
}

/// `2024`, `2024-03` or `2024-03-05` → [start, end) in Unix seconds, UTC.
fn period(field: &str, text: &str) -> Result<(i64, i64), QueryError> {
    use time::{Date, Month};
    let err = || bad(field, text, "write a date as YYYY, YYYY-MM or YYYY-MM-DD");
    let parts: Vec<&str> = text.trim().split('-').collect();
    let num = |s: &str| s.parse::<i32>().map_err(|_| err());
    let year = num(parts.first().ok_or_else(err)?)?;
    let start_of = |y: i32, m: u8, d: u8| -> Result<i64, QueryError> {
        let month = Month::try_from(m).map_err(|_| err())?;
        Ok(Date::from_calendar_date(y, month, d).map_err(|_| err())?.midnight().assume_utc().unix_timestamp())
    };
    match parts.len() {
        1 => Ok((start_of(year, 1, 1)?, start_of(year + 1, 1, 1)?)),
        2 => {
            let m = num(parts[1])? as u8;
            let (ny, nm) = if m == 12 { (year + 1, 1) } else { (year, m + 1) };
            Ok((start_of(year, m, 1)?, start_of(ny, nm, 1)?))
        }
        3 => {
            let start = start_of(year, num(parts[1])? as u8, num(parts[2])? as u8)?;
            Ok((start, start + 86_400))
        }
        _ => Err(err()),
    }
}

fn bad(field: &str, value: &str, hint: &str) -> QueryError {
    QueryError::BadValue { field: field.into(), value: value.into(), hint: hint.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_periods_parse() {
        assert_eq!(bytes("1M").unwrap(), 1 << 20);
        assert_eq!(bytes("1.5kb").unwrap(), 1536);
        assert!(bytes("lots").is_err());
        assert_eq!(period("date", "2024-03").unwrap(), (1_709_251_200, 1_711_929_600));
        assert_eq!(period("date", "2024-12").unwrap().1, 1_735_689_600);
        assert!(period("date", "2024-13-01").is_err());
        assert!(period("after", "yesterday").is_err());
    }
}
