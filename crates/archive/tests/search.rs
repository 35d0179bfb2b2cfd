//! Search correctness against a generated corpus with known ground truth: every query's hit set
//! and count must be exactly what the truth says.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use coffer_archive::Sort;
use coffer_testkit::corpus::{Generator, Language, Truth};

const MESSAGES: usize = 400;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

fn has_word(t: &Truth, word: &str) -> bool {
    let w = word.to_lowercase();
    t.subject_words.iter().chain(&t.body_words).chain(&t.attachment_words).any(|x| x.to_lowercase() == w)
        || t.attachment_names.iter().any(|n| words(n).contains(&w))
}

fn cjk_text(t: &Truth) -> String {
    format!("{} {} {}", t.subject, t.body_text, t.attachment_words.join(" "))
}

fn local_parts(address: &str) -> Vec<String> {
    let local = address.split('@').next().unwrap();
    let mut parts: Vec<String> = local.split(['.', '_', '-', '+']).map(str::to_owned).collect();
    parts.push(local.to_owned());
    parts
}

fn folder_of(i: usize) -> &'static str {
    ["Inbox", "Inbox/Projects", "Sent"][i % 3]
}

#[tokio::test]
async fn field_queries_return_exactly_the_expected_messages() {
    let mut generator = Generator::new(42);
    let corpus: Vec<_> = (0..MESSAGES).map(|i| generator.message(i)).collect();
    for t in common::archives().await {
        let mut id_of = BTreeMap::new();
        for (i, g) in corpus.iter().enumerate() {
            let r = t.submit(&g.raw, true, Some(("archive@contoso.com", folder_of(i)))).await;
            assert!(!r.duplicate);
            id_of.insert(i, r.id);
        }
        // The same bytes again: nothing new.
        for g in &corpus[..20] {
            assert!(t.submit(&g.raw, true, Some(("archive@contoso.com", "Inbox"))).await.duplicate);
        }
        t.index().await;

        let truth: Vec<&Truth> = corpus.iter().map(|g| &g.truth).collect();
        let expect = |pred: &dyn Fn(&Truth) -> bool| -> BTreeSet<i64> {
            truth.iter().filter(|t| pred(t)).map(|t| id_of[&t.index]).collect()
        };
        let jan_2024 = 1_704_067_200;
        let cases: Vec<(&str, BTreeSet<i64>)> = vec![
            ("from:alice.martin@contoso.com", expect(&|t| t.from == "alice.martin@contoso.com")),
            ("from:ALICE.MARTIN@Contoso.com", expect(&|t| t.from == "alice.martin@contoso.com")),
            ("from:contoso.com", expect(&|t| t.from.ends_with("@contoso.com"))),
            ("to:bob", expect(&|t| t.to.iter().any(|a| local_parts(a).contains(&"bob".into())))),
            ("cc:carol@contoso.com", expect(&|t| t.cc.contains(&"carol@contoso.com".into()))),
            ("bcc:erin@northwind.example", expect(&|t| t.bcc.contains(&"erin@northwind.example".into()))),
            ("participant:tanaka@example.jp", expect(&|t| t.participants().any(|a| a == "tanaka@example.jp"))),
            (
                "recipient:fabrikam.de",
                expect(&|t| t.to.iter().chain(&t.cc).chain(&t.bcc).any(|a| a.ends_with("fabrikam.de"))),
            ),
            ("subject:budget", expect(&|t| t.subject_words.iter().any(|w| w == "budget"))),
            ("budget", expect(&|t| has_word(t, "budget"))),
            ("budget invoice", expect(&|t| has_word(t, "budget") && has_word(t, "invoice"))),
            ("budget OR invoice", expect(&|t| has_word(t, "budget") || has_word(t, "invoice"))),
            ("budget -invoice", expect(&|t| has_word(t, "budget") && !has_word(t, "invoice"))),
            ("budget NOT from:contoso.com", expect(&|t| has_word(t, "budget") && !t.from.ends_with("@contoso.com"))),
            (
                "(budget OR audit) has:attachment",
                expect(&|t| (has_word(t, "budget") || has_word(t, "audit")) && !t.attachment_names.is_empty()),
            ),
            ("sett*", expect(&|t| has_word(t, "settlement"))),
            (
                "\"quarterly numbers\"",
                expect(&|t| {
                    let phrase = |s: &str| format!(" {s} ").contains(" quarterly numbers ");
                    phrase(&t.subject) || phrase(&t.body_text) || phrase(&t.attachment_words.join(" "))
                }),
            ),
            ("body:merger", expect(&|t| t.body_words.iter().any(|w| w == "merger"))),
            ("attachment:payroll", expect(&|t| t.attachment_words.iter().any(|w| w == "payroll"))),
            ("filename:invoice", expect(&|t| t.attachment_names.iter().any(|n| words(n).contains(&"invoice".into())))),
            ("has:attachment", expect(&|t| !t.attachment_names.is_empty())),
            ("size:>3K", expect(&|t| t.size > 3 << 10)),
            ("size:<2K", expect(&|t| t.size < 2 << 10)),
            ("after:2024-01-01", expect(&|t| t.date >= jan_2024)),
            ("before:2024-01-01", expect(&|t| t.date < jan_2024)),
            ("date:2023-06", expect(&|t| (1_685_577_600..1_688_169_600).contains(&t.date))),
            // The first 20 arrived a second time, placed in Inbox: placements merge.
            ("folder:inbox", expect(&|t| folder_of(t.index).starts_with("Inbox") || t.index < 20)),
            ("folder:Inbox/Projects", expect(&|t| folder_of(t.index) == "Inbox/Projects")),
            ("mailbox:archive@contoso.com", expect(&|_| true)),
            ("Größe", expect(&|t| t.language == Language::German && cjk_text(t).contains("Größe"))),
            ("GROSSE", expect(&|t| t.language == Language::German && cjk_text(t).contains("Größe"))),
            ("prüfung", expect(&|t| cjk_text(t).contains("Prüfung"))),
            ("会議", expect(&|t| cjk_text(t).contains("会議"))),
            ("報告", expect(&|t| cjk_text(t).contains("報告"))),
            ("subject:预算", expect(&|t| t.subject.contains("预算"))),
            ("from:田中", expect(&|t| t.from == "tanaka@example.jp")),
            ("from:jörg", expect(&|t| t.from == "joerg.mueller@fabrikam.de")),
            ("from:\"Alice Martin\"", expect(&|t| t.from == "alice.martin@contoso.com")),
        ];
        for (query, expected) in &cases {
            assert!(
                !expected.is_empty() || query.starts_with("size"),
                "{query}: the corpus should exercise this query"
            );
            let got = t.ids(query).await;
            assert_eq!(&got, expected, "{}: {query}: got {} expected {}", t.label, got.len(), expected.len());
            assert_eq!(t.count(query).await, expected.len(), "{}: {query}: exact count", t.label);
        }

        let one = &corpus[17].truth;
        let by_id = t.ids(&format!("message-id:<{}>", one.message_id)).await;
        assert_eq!(by_id.into_iter().collect::<Vec<_>>(), [id_of[&17]]);
        let name = &corpus.iter().find(|g| !g.truth.attachment_names.is_empty()).unwrap().truth;
        let by_name = t.ids(&format!("filename:\"{}\"", name.attachment_names[0])).await;
        assert_eq!(by_name.into_iter().collect::<Vec<_>>(), [id_of[&name.index]]);
    }
}

#[tokio::test]
async fn paging_walks_every_result_newest_first_without_a_cap() {
    let mut generator = Generator::new(7);
    let corpus: Vec<_> = (0..150).map(|i| generator.message(i)).collect();
    for t in common::archives().await {
        for g in &corpus {
            t.submit(&g.raw, true, None).await;
        }
        t.index().await;
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let page = t.archive.search(&t.actor, "", 7, offset, Sort::Date, false).await.unwrap();
            assert_eq!(page.total, 150);
            if page.messages.is_empty() {
                break;
            }
            offset += page.messages.len();
            seen.extend(page.messages);
        }
        assert_eq!(seen.len(), 150, "{}", t.label);
        assert!(seen.windows(2).all(|w| w[0].date >= w[1].date), "{}: newest first", t.label);
        let ids: BTreeSet<i64> = seen.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 150);

        let relevant = t.archive.search(&t.actor, "budget", 5, 0, Sort::Relevance, true).await.unwrap();
        assert!(relevant.messages.iter().all(|m| m.snippet.is_some()));
    }
}

#[tokio::test]
async fn query_mistakes_are_errors_that_say_how_to_fix_them() {
    let t = common::archives().await.remove(0);
    for (query, hint) in
        [("tp:alice", "unknown field"), ("\"open", "quote"), ("size:>lots", "size"), ("after:yesterday", "YYYY")]
    {
        let err = t.archive.search(&t.actor, query, 10, 0, Sort::Date, false).await.unwrap_err().to_string();
        assert!(err.contains(hint), "{query}: {err}");
    }
}

#[tokio::test]
async fn a_deleted_index_is_rebuilt_with_the_same_answers() {
    let mut generator = Generator::new(9);
    let corpus: Vec<_> = (0..80).map(|i| generator.message(i)).collect();
    for t in common::archives().await {
        for g in &corpus {
            t.submit(&g.raw, true, Some(("archive@contoso.com", "Inbox"))).await;
        }
        t.index().await;
        let queries = ["budget", "from:contoso.com", "has:attachment", "folder:inbox", "会議"];
        let mut before = Vec::new();
        for q in queries {
            before.push(t.ids(q).await);
        }
        assert_eq!(t.archive.reindex().await.unwrap(), coffer_archive::service::Reindexed::Done(80));
        for (q, b) in queries.iter().zip(before) {
            assert_eq!(t.ids(q).await, b, "{}: {q}", t.label);
        }
    }
}
