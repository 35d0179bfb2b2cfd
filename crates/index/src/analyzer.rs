//! Text analysis for every language: words are runs of letters and digits (any script); runs of
//! CJK characters, which have no spaces, become overlapping bigrams so that a word inside a
//! sentence is found (as Lucene's CJK analyzer does). Then lowercasing and ASCII folding, so
//! `Müller`, `MÜLLER` and `muller` meet.

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
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

/// Text is stemmed only in the languages Snowball has a stemmer for, each term marked with its
/// language (`en:invoic`, `de:rechnung`), so that stems of different languages never meet.
const STEMMED: [(whatlang::Lang, Language, &str); 16] = [
    (whatlang::Lang::Eng, Language::English, "en"),
    (whatlang::Lang::Deu, Language::German, "de"),
    (whatlang::Lang::Fra, Language::French, "fr"),
    (whatlang::Lang::Spa, Language::Spanish, "es"),
    (whatlang::Lang::Ita, Language::Italian, "it"),
    (whatlang::Lang::Por, Language::Portuguese, "pt"),
    (whatlang::Lang::Nld, Language::Dutch, "nl"),
    (whatlang::Lang::Swe, Language::Swedish, "sv"),
    (whatlang::Lang::Dan, Language::Danish, "da"),
    (whatlang::Lang::Nob, Language::Norwegian, "no"),
    (whatlang::Lang::Fin, Language::Finnish, "fi"),
    (whatlang::Lang::Hun, Language::Hungarian, "hu"),
    (whatlang::Lang::Ron, Language::Romanian, "ro"),
    (whatlang::Lang::Rus, Language::Russian, "ru"),
    (whatlang::Lang::Tur, Language::Turkish, "tr"),
    (whatlang::Lang::Ell, Language::Greek, "el"),
];

/// Language detection reads this much of a text: some 150 words, enough for whatlang's trigrams.
const DETECT_BYTES: usize = 1024;

/// Tells the languages with a stemmer apart; the others are not scored (scoring every language
/// whatlang knows made detection the indexer's largest single cost). A text in another language
/// of the same script is stemmed as its nearest neighbour: only `~word` searches see that.
fn detector() -> &'static whatlang::Detector {
    static DETECTOR: std::sync::OnceLock<whatlang::Detector> = std::sync::OnceLock::new();
    DETECTOR.get_or_init(|| whatlang::Detector::with_allowlist(STEMMED.iter().map(|(lang, _, _)| *lang).collect()))
}

fn stemming(language: Language) -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(Stemmer::new(language))
        .filter(AsciiFoldingFilter)
        .build()
}

/// The stemmed terms of `text`, in the language it is written in, each once, separated by spaces
/// (the stemmed field splits on those); nothing when its language has no stemmer or is unclear.
/// Each stem is listed once: `~word` finds whether a form occurs, not how often (the exact fields
/// rank by frequency), and this keeps the second copy of the text cheap to index.
pub fn stemmed_terms(text: &str) -> String {
    let mut end = text.len().min(DETECT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let Some(lang) = detector().detect_lang(&text[..end]) else { return String::new() };
    let Some(slot) = STEMMED.iter().position(|(l, _, _)| *l == lang) else { return String::new() };
    STEMS.with_borrow_mut(|caches| {
        // The words of all languages together are bounded, whatever words a sender makes up.
        if caches.iter().map(|c| c.words.len()).sum::<usize>() >= STEM_CACHE_WORDS {
            for cache in caches.iter_mut() {
                cache.clear();
            }
        }
        let cache = &mut caches[slot];
        cache.generation += 1;
        let mut lower =
            TextAnalyzer::builder(WordTokenizer).filter(RemoveLongFilter::limit(64)).filter(LowerCaser).build();
        let mut stream = lower.token_stream(text);
        let mut out = String::new();
        while stream.advance() {
            let id = cache.stem_of(slot, &stream.token().text);
            if cache.listed[id] != cache.generation {
                cache.listed[id] = cache.generation;
                out.push_str(&cache.stems[id]);
                out.push(' ');
            }
        }
        out
    })
}

/// Words repeat across messages far more than they vary: each indexing thread keeps, per
/// language, the stem of every lowercased word it has met (up to [`STEM_CACHE_WORDS`] words, of
/// at most 64 bytes each, in all languages together; then it starts over).
#[derive(Default)]
struct StemCache {
    /// A lowercased word to the index of its stem.
    words: std::collections::HashMap<String, usize>,
    /// A stem to its index.
    ids: std::collections::HashMap<String, usize>,
    /// The stems, marked with their language (`en:invoic`).
    stems: Vec<String>,
    /// The text (its `generation`) that last listed each stem.
    listed: Vec<u64>,
    generation: u64,
}

const STEM_CACHE_WORDS: usize = 50_000;

thread_local! {
    static STEMS: std::cell::RefCell<Vec<StemCache>> =
        std::cell::RefCell::new(STEMMED.iter().map(|_| StemCache::default()).collect());
}

impl StemCache {
    /// Forgets every word; the generation goes on, so no stem counts as listed in this text.
    fn clear(&mut self) {
        let generation = self.generation;
        *self = StemCache { generation, ..StemCache::default() };
    }

    fn stem_of(&mut self, slot: usize, word: &str) -> usize {
        if let Some(&id) = self.words.get(word) {
            return id;
        }
        if self.words.len() >= STEM_CACHE_WORDS {
            self.clear();
        }
        let (_, language, code) = STEMMED[slot];
        let mut analyzer = stemming(language);
        let mut stream = analyzer.token_stream(word);
        let stem = if stream.advance() { format!("{code}:{}", stream.token().text) } else { format!("{code}:{word}") };
        let id = match self.ids.get(&stem) {
            Some(&id) => id,
            None => {
                self.stems.push(stem.clone());
                self.listed.push(0);
                self.ids.insert(stem, self.stems.len() - 1);
                self.stems.len() - 1
            }
        };
        self.words.insert(word.to_owned(), id);
        id
    }
}

/// What `~word` looks for: the word's stem in each language with a stemmer.
pub fn stemmed_query_terms(word: &str) -> Vec<String> {
    let mut out: Vec<String> = STEMMED
        .iter()
        .flat_map(|&(_, language, code)| {
            let mut analyzer = stemming(language);
            let mut stream = analyzer.token_stream(word);
            let mut terms = Vec::new();
            while stream.advance() {
                terms.push(format!("{code}:{}", stream.token().text));
            }
            terms
        })
        .collect();
    out.sort();
    out.dedup();
    out
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

/// Streams tokens without allocating per token: one `Token` is refilled each time.
pub struct WordTokenStream<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    token: Token,
    /// Inside a CJK run: the previous character, and whether a bigram ended on it.
    cjk: Option<(usize, char, bool)>,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordTokenStream<'a> {
        WordTokenStream { text, chars: text.char_indices().peekable(), token: Token::default(), cjk: None }
    }
}

impl WordTokenStream<'_> {
    fn emit(&mut self, from: usize, to: usize) -> bool {
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.token.position.wrapping_add(1);
        self.token.position_length = 1;
        true
    }
}

impl TokenStream for WordTokenStream<'_> {
    fn advance(&mut self) -> bool {
        loop {
            if let Some((prev, prev_char, emitted)) = self.cjk {
                match self.chars.peek().copied() {
                    Some((at, c)) if kind_of(c) == Kind::Cjk => {
                        self.chars.next();
                        self.cjk = Some((at, c, true));
                        return self.emit(prev, at + c.len_utf8());
                    }
                    _ => {
                        self.cjk = None;
                        // A lone CJK character is a token of its own.
                        if !emitted {
                            return self.emit(prev, prev + prev_char.len_utf8());
                        }
                    }
                }
            }
            let Some((at, c)) = self.chars.next() else { return false };
            match kind_of(c) {
                Kind::Separator => {}
                Kind::Cjk => self.cjk = Some((at, c, false)),
                Kind::Word => {
                    let mut end = at + c.len_utf8();
                    while let Some(&(next_at, next)) = self.chars.peek() {
                        if kind_of(next) != Kind::Word {
                            break;
                        }
                        end = next_at + next.len_utf8();
                        self.chars.next();
                    }
                    return self.emit(at, end);
                }
            }
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_any_script_are_lowercased_and_folded() {
        assert_eq!(tokens("Größe MÜLLER e-mail Ελλάδα 2024"), ["grosse", "muller", "e", "mail", "ελλάδα", "2024"]);
    }

    #[test]
    fn positions_and_offsets_follow_the_text() {
        let mut a = super::analyzer();
        let mut stream = a.token_stream("ab 東京都 c");
        let mut got = Vec::new();
        while stream.advance() {
            let t = stream.token();
            got.push((t.text.clone(), t.position, t.offset_from, t.offset_to));
        }
        assert_eq!(
            got,
            [("ab".into(), 0, 0, 2), ("東京".into(), 1, 3, 9), ("京都".into(), 2, 6, 12), ("c".into(), 3, 13, 14)]
        );
    }

    #[test]
    fn cjk_runs_become_bigrams() {
        assert_eq!(tokens("東京会議"), ["東京", "京会", "会議"]);
        assert_eq!(tokens("会 議"), ["会", "議"]);
        assert_eq!(tokens("予算report"), ["予算", "report"]);
    }

    #[test]
    fn text_in_a_script_without_a_stemmer_adds_no_stems() {
        assert_eq!(stemmed_terms("季度报告和财务数据已经发送给审计师，请在周五之前确认。"), "");
        assert_eq!(stemmed_terms("تم إرسال التقرير الفصلي والبيانات المالية إلى المدققين"), "");
        assert!(stemmed_terms("Die Rechnungen wurden gestern an die Prüfer geschickt.").contains("de:rechnung "));
    }

    #[test]
    fn each_stem_is_listed_once_per_text_and_again_in_the_next_text() {
        let text = "The auditors asked about the invoices. The invoice was paid, and the invoices were filed.";
        let terms = stemmed_terms(text);
        assert_eq!(terms.matches("en:invoic ").count(), 1, "{terms}");
        assert!(terms.contains("en:auditor ") && terms.contains("en:file "), "{terms}");
        assert_eq!(stemmed_terms(text), terms, "the next text lists it again");
    }

    #[test]
    fn a_text_whose_detection_sample_ends_inside_a_character_is_stemmed_without_panicking() {
        let text = format!("{}ï and the invoices that were paid", "a".repeat(DETECT_BYTES - 1));
        assert!(!text.is_char_boundary(DETECT_BYTES));
        stemmed_terms(&text);
        let english = format!("{} The invoices were paid.", "The auditors asked about the payments. ".repeat(120));
        assert!(stemmed_terms(&english).contains("en:invoic "));
    }
}
