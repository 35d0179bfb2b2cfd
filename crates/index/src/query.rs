//! The e-discovery query language, parsed into a small syntax tree. The same language serves the
//! console, the API and the CLI:
//!
//! ```text
//! budget report               words anywhere (AND by default)
//! "quarterly numbers"         phrase
//! from:alice@contoso.com to:contoso.com cc:bob bcc:… recipient:… participant:… envelope:…
//! subject:invoice body:… attachment:… filename:report.pdf message-id:<…> mailbox:… folder:Inbox/Projects tag:…
//! has:attachment size:>1M after:2024-01-01 before:2024-07-01 date:2024-03
//! a OR b   -word   NOT from:x   ( … )   prefix*
//! ~invoice                    inflected forms too (invoices, invoiced), in the text's language
//! ```

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    From,
    To,
    Cc,
    Bcc,
    Envelope,
    Recipient,
    Participant,
    Subject,
    Body,
    Attachment,
    Filename,
    MessageId,
    Mailbox,
    Folder,
    Tag,
    Filetype,
    Has,
    Size,
    After,
    Before,
    Date,
}

impl Field {
    pub fn parse(name: &str) -> Option<Field> {
        Some(match name.to_ascii_lowercase().as_str() {
            "from" => Field::From,
            "to" => Field::To,
            "cc" => Field::Cc,
            "bcc" => Field::Bcc,
            "envelope" => Field::Envelope,
            "recipient" | "rcpt" => Field::Recipient,
            "participant" | "address" => Field::Participant,
            "subject" => Field::Subject,
            "body" | "text" => Field::Body,
            "attachment" => Field::Attachment,
            "filename" => Field::Filename,
            "message-id" | "messageid" | "msgid" => Field::MessageId,
            "mailbox" => Field::Mailbox,
            "folder" => Field::Folder,
            "tag" | "tags" => Field::Tag,
            "filetype" => Field::Filetype,
            "has" => Field::Has,
            "size" => Field::Size,
            "after" => Field::After,
            "before" => Field::Before,
            "date" => Field::Date,
            _ => return None,
        })
    }
}

pub const FIELD_NAMES: &str = "from to cc bcc envelope recipient participant subject body attachment filename \
                               message-id mailbox folder tag filetype has size after before date";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Word(String),
    Phrase(String),
    /// `budg*`: the text before the star.
    Prefix(String),
    /// `~invoice`: the word's stem in the stemmed text (subject, body and attachments).
    Stemmed(String),
}

impl Value {
    pub fn text(&self) -> &str {
        match self {
            Value::Word(s) | Value::Phrase(s) | Value::Prefix(s) | Value::Stemmed(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Term {
        field: Option<Field>,
        value: Value,
    },
    /// The empty query: every message in scope.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown field \"{0}:\" (fields: {FIELD_NAMES}); put the text in quotes to search for it literally")]
    UnknownField(String),
    #[error("unclosed quote: add a closing \"")]
    UnclosedQuote,
    #[error("unbalanced parenthesis: check that every ( has a )")]
    Unbalanced,
    #[error("\"{0}\" expects something after it")]
    Dangling(String),
    #[error("{field}: cannot use \"{value}\": {hint}")]
    BadValue { field: String, value: String, hint: String },
    #[error(
        "the query is too large (at most {MAX_QUERY_CHARS} characters, {MAX_TERMS} terms and {MAX_DEPTH} levels of parentheses or NOT); split it into several searches"
    )]
    TooLarge,
}

/// What a query may hold: the parser and the compiler recurse, and each term becomes a clause.
pub const MAX_QUERY_CHARS: usize = 8192;
pub const MAX_TERMS: usize = 256;
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Or,
    And,
    Not,
    /// A term, with a leading `-` already taken off into `negated`.
    Term {
        negated: bool,
        field: Option<String>,
        value: Value,
    },
    /// `field:(`: the group that follows searches that field (`subject:(a OR b)`).
    FieldGroup {
        negated: bool,
        field: String,
    },
}

pub fn parse(input: &str) -> Result<Expr, QueryError> {
    if input.chars().count() > MAX_QUERY_CHARS {
        return Err(QueryError::TooLarge);
    }
    let tokens = lex(input)?;
    if tokens.iter().filter(|t| matches!(t, Token::Term { .. })).count() > MAX_TERMS {
        return Err(QueryError::TooLarge);
    }
    let mut parser = Parser { tokens, pos: 0, depth: 0, fields: Vec::new() };
    if parser.tokens.is_empty() {
        return Ok(Expr::All);
    }
    let expr = parser.or()?;
    if parser.pos != parser.tokens.len() {
        return Err(QueryError::Unbalanced);
    }
    Ok(expr)
}

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' {
            tokens.push(Token::Open);
            i += 1;
            continue;
        }
        if c == ')' {
            tokens.push(Token::Close);
            i += 1;
            continue;
        }
        let negated = c == '-' && i + 1 < chars.len() && !chars[i + 1].is_whitespace();
        if negated {
            i += 1;
            if chars[i] == '(' {
                tokens.push(Token::Not);
                continue;
            }
        }
        // field:value, field:"phrase", "phrase", word, prefix*
        let start = i;
        let mut field = None;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '(' && chars[i] != ')' && chars[i] != '"' {
            if chars[i] == ':' && field.is_none() && i > start {
                let name: String = chars[start..i].iter().collect();
                if name.chars().all(|c| c.is_ascii_alphabetic() || c == '-') {
                    field = Some(name);
                    i += 1;
                    break;
                }
            }
            i += 1;
        }
        let value_start = if field.is_some() { i } else { start };
        if let Some(name) = &field
            && chars.get(i) == Some(&'(')
        {
            tokens.push(Token::FieldGroup { negated, field: name.clone() });
            continue;
        }
        let value = if i < chars.len() && chars[i] == '"' && (i == value_start) {
            let close = chars[i + 1..].iter().position(|&c| c == '"').ok_or(QueryError::UnclosedQuote)?;
            let phrase: String = chars[i + 1..i + 1 + close].iter().collect();
            i += close + 2;
            Value::Phrase(phrase)
        } else {
            if field.is_some() {
                while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ')' {
                    if chars[i] == '(' && chars[value_start..i].is_empty() {
                        break;
                    }
                    i += 1;
                }
            }
            let text: String = chars[value_start..i].iter().collect();
            if text.is_empty() {
                if let Some(f) = field {
                    return Err(QueryError::Dangling(format!("{f}:")));
                }
                // A lone quote character inside a word: skip it.
                i += 1;
                continue;
            }
            match (text.strip_suffix('*'), text.strip_prefix('~')) {
                (Some(prefix), _) if !prefix.is_empty() => Value::Prefix(prefix.to_owned()),
                (_, Some(word)) if !word.is_empty() => Value::Stemmed(word.to_owned()),
                _ => Value::Word(text),
            }
        };
        if field.is_none()
            && !negated
            && let Value::Word(w) = &value
        {
            match w.as_str() {
                "OR" | "||" => {
                    tokens.push(Token::Or);
                    continue;
                }
                "AND" | "&&" => {
                    tokens.push(Token::And);
                    continue;
                }
                "NOT" => {
                    tokens.push(Token::Not);
                    continue;
                }
                _ => {}
            }
        }
        tokens.push(Token::Term { negated, field, value });
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Nesting of parentheses and NOT so far (bounded: the parser recurses).
    depth: usize,
    /// The fields of the `field:( … )` groups around the current position, innermost last.
    fields: Vec<Field>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            if self.peek().is_none() || self.peek() == Some(&Token::Close) {
                return Err(QueryError::Dangling("OR".into()));
            }
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap() } else { Expr::Or(items) })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None | Some(Token::Close) | Some(Token::Or) => break,
                Some(Token::And) => {
                    self.pos += 1;
                    if matches!(self.peek(), None | Some(Token::Close) | Some(Token::Or)) {
                        return Err(QueryError::Dangling("AND".into()));
                    }
                }
                _ => items.push(self.unary()?),
            }
        }
        match items.len() {
            0 => Err(QueryError::Unbalanced),
            1 => Ok(items.pop().unwrap()),
            _ => Ok(Expr::And(items)),
        }
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::TooLarge);
        }
        let expr = self.unary_inner();
        self.depth -= 1;
        expr
    }

    fn unary_inner(&mut self) -> Result<Expr, QueryError> {
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Not) => {
                self.pos += 1;
                if matches!(self.peek(), None | Some(Token::Close) | Some(Token::Or) | Some(Token::And)) {
                    return Err(QueryError::Dangling("NOT".into()));
                }
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(QueryError::Unbalanced);
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::FieldGroup { negated, field }) => {
                self.pos += 1;
                let field = Field::parse(&field).ok_or(QueryError::UnknownField(field))?;
                self.fields.push(field);
                let group = self.unary();
                self.fields.pop();
                let group = group?;
                Ok(if negated { Expr::Not(Box::new(group)) } else { group })
            }
            Some(Token::Term { negated, field, value }) => {
                self.pos += 1;
                let field = match field {
                    Some(name) => Some(Field::parse(&name).ok_or(QueryError::UnknownField(name))?),
                    None => self.fields.last().copied(),
                };
                let term = Expr::Term { field, value };
                Ok(if negated { Expr::Not(Box::new(term)) } else { term })
            }
            Some(Token::Close) | None => Err(QueryError::Unbalanced),
            Some(Token::Or) | Some(Token::And) => Err(QueryError::Dangling("OR".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(field: Option<Field>, v: &str) -> Expr {
        Expr::Term { field, value: Value::Word(v.into()) }
    }

    #[test]
    fn a_deeply_nested_or_huge_query_is_refused_not_recursed_into() {
        for q in [
            "(".repeat(100_000),
            "NOT ".repeat(50_000) + "x",
            "a ".repeat(MAX_TERMS + 1),
            "x".repeat(MAX_QUERY_CHARS + 1),
        ] {
            assert_eq!(parse(&q), Err(QueryError::TooLarge));
        }
        assert!(parse(&format!("{}a{}", "(".repeat(20), ")".repeat(20))).is_ok());
    }

    #[test]
    fn words_are_anded_and_or_binds_looser() {
        assert_eq!(
            parse("budget report OR invoice").unwrap(),
            Expr::Or(vec![Expr::And(vec![term(None, "budget"), term(None, "report")]), term(None, "invoice")])
        );
    }

    #[test]
    fn fields_phrases_negation_prefix_and_groups() {
        let e = parse(r#"from:alice@contoso.com subject:"quarterly numbers" -spam NOT to:x (a OR b*)"#).unwrap();
        assert_eq!(
            e,
            Expr::And(vec![
                term(Some(Field::From), "alice@contoso.com"),
                Expr::Term { field: Some(Field::Subject), value: Value::Phrase("quarterly numbers".into()) },
                Expr::Not(Box::new(term(None, "spam"))),
                Expr::Not(Box::new(term(Some(Field::To), "x"))),
                Expr::Or(vec![term(None, "a"), Expr::Term { field: None, value: Value::Prefix("b".into()) }]),
            ])
        );
    }

    #[test]
    fn values_keep_their_punctuation() {
        assert_eq!(parse("message-id:<a.b@c>").unwrap(), term(Some(Field::MessageId), "<a.b@c>"));
        assert_eq!(parse("size:>1M").unwrap(), term(Some(Field::Size), ">1M"));
        assert_eq!(parse("folder:Inbox/Projects").unwrap(), term(Some(Field::Folder), "Inbox/Projects"));
        assert_eq!(parse("(from:bob)").unwrap(), term(Some(Field::From), "bob"));
    }

    #[test]
    fn mistakes_get_errors_that_say_how_to_fix_them() {
        assert!(matches!(parse("tp:alice"), Err(QueryError::UnknownField(f)) if f == "tp"));
        assert_eq!(parse("\"open"), Err(QueryError::UnclosedQuote));
        assert_eq!(parse("(a OR b"), Err(QueryError::Unbalanced));
        assert_eq!(parse("a)"), Err(QueryError::Unbalanced));
        assert!(matches!(parse("a OR"), Err(QueryError::Dangling(_))));
        assert!(matches!(parse("from:"), Err(QueryError::Dangling(_))));
        assert_eq!(parse("   ").unwrap(), Expr::All);
    }

    #[test]
    fn a_minus_before_a_group_negates_the_group() {
        assert_eq!(
            parse("a -(b OR c)").unwrap(),
            Expr::And(vec![term(None, "a"), Expr::Not(Box::new(Expr::Or(vec![term(None, "b"), term(None, "c")])))])
        );
    }

    #[test]
    fn a_field_before_a_group_applies_to_every_word_in_it() {
        assert_eq!(
            parse("subject:(invoice OR receipt) from:bob").unwrap(),
            Expr::And(vec![
                Expr::Or(vec![term(Some(Field::Subject), "invoice"), term(Some(Field::Subject), "receipt")]),
                term(Some(Field::From), "bob"),
            ])
        );
        // A field named inside wins; the group's field ends with the group.
        assert_eq!(
            parse("-subject:(a to:x) b").unwrap(),
            Expr::And(vec![
                Expr::Not(Box::new(Expr::And(vec![term(Some(Field::Subject), "a"), term(Some(Field::To), "x")]))),
                term(None, "b"),
            ])
        );
        assert!(matches!(parse("nope:(a)"), Err(QueryError::UnknownField(f)) if f == "nope"));
        assert_eq!(parse("subject:(a"), Err(QueryError::Unbalanced));
    }

    #[test]
    fn urls_and_times_are_words_not_fields() {
        assert_eq!(parse("10:30").unwrap(), term(None, "10:30"));
    }
}
