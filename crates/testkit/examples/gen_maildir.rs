//! Writes a generated corpus as a Maildir: `gen_maildir OUT COUNT [SEED] [--journal]`.
//! Used by the benchmarks; one message per file in OUT/cur; with `--journal`, each message wrapped
//! in an Exchange journal report (a journal mailbox).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: gen_maildir OUT COUNT [SEED]");
        std::process::exit(2);
    };
    let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let journal = args.iter().any(|a| a == "--journal");
    let root = std::path::Path::new(out);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("create the Maildir");
    }
    let mut generator = coffer_testkit::corpus::Generator::new(seed);
    for i in 0..count {
        let g = generator.message(i);
        let bytes = if journal {
            let env = coffer_testkit::journal::Envelope::new(
                &g.truth.from,
                &g.truth.subject,
                &format!("<{}>", g.truth.message_id),
            )
            .line("To", &g.truth.to[0]);
            coffer_testkit::journal::report(
                &g.raw,
                &env,
                coffer_testkit::journal::Style::ExchangeOnline,
                "journal@archive.test",
            )
        } else {
            g.raw
        };
        std::fs::write(root.join("cur").join(format!("{i:07}.gen:2,S")), &bytes).expect("write a message");
    }
}
