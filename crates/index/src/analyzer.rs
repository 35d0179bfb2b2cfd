//! Text analysis for every language: words are runs of letters and digits (any script); runs of
//! CJK characters, which have no spaces, become overlapping bigrams so that a word inside a
//! sentence is found (as Lucene's CJK analyzer does). Then lowercasing and ASCII folding, so
//! `Müller`, `MÜLLER` and `muller` meet.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name text fields are registered under.
pub const ANALYZER: &str = "coffer";

pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The analyzed tokens of a piece of text (what a query word or phrase turns into).
pub fn tokens(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

#[derive(Clone, Default)]
pub struct WordTokenizer;

pub struct WordTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordTokenStream {
        let mut tokens = Vec::new();
        let mut run: Vec<(usize, char)> = Vec::new();
        let mut run_kind = Kind::Separator;
        for (offset, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
            let kind = kind_of(c);
            if kind != run_kind || kind == Kind::Separator {
                emit(&mut tokens, text, &run, run_kind);
                run.clear();
            }
            run_kind = kind;
            if kind != Kind::Separator {
                run.push((offset, c));
            }
        }
        WordTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for WordTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Separator,
    Word,
    Cjk,
}

fn kind_of(c: char) -> Kind {
    if is_cjk(c) {
        Kind::Cjk
    } else if c.is_alphanumeric() || ('\u{0300}'..='\u{036F}').contains(&c) {
        Kind::Word
    } else {
        Kind::Separator
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}' // Hiragana, Katakana
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}' // Hangul syllables
        | '\u{1100}'..='\u{11FF}'
        | '\u{3130}'..='\u{318F}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FF66}'..='\u{FF9F}' // half-width Katakana
        | '\u{20000}'..='\u{2A6DF}')
}

fn emit(tokens: &mut Vec<Token>, text: &str, run: &[(usize, char)], kind: Kind) {
    let end_of = |i: usize| run.get(i + 1).map_or_else(|| run[i].0 + run[i].1.len_utf8(), |n| n.0);
    let mut push = |from: usize, to: usize| {
        tokens.push(Token {
            offset_from: from,
            offset_to: to,
            position: tokens.len(),
            text: text[from..to].to_owned(),
            position_length: 1,
        })
    };
    match kind {
        Kind::Separator => {}
        _ if run.is_empty() => {}
        Kind::Word => push(run[0].0, end_of(run.len() - 1)),
        Kind::Cjk if run.len() == 1 => push(run[0].0, end_of(0)),
        Kind::Cjk => {
            for i in 0..run.len() - 1 {
                push(run[i].0, end_of(i + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tokens;

    #[test]
    fn words_of_any_script_are_lowercased_and_folded() {
        assert_eq!(tokens("Größe MÜLLER e-mail Ελλάδα 2024"), ["grosse", "muller", "e", "mail", "ελλάδα", "2024"]);
    }

    #[test]
    fn cjk_runs_become_bigrams() {
        assert_eq!(tokens("東京会議"), ["東京", "京会", "会議"]);
        assert_eq!(tokens("会 議"), ["会", "議"]);
        assert_eq!(tokens("予算report"), ["予算", "report"]);
    }
}
