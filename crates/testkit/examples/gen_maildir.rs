//! Writes a generated corpus as a Maildir: `gen_maildir OUT COUNT [SEED]`.
//! Used by the benchmarks; one message per file in OUT/cur.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: gen_maildir OUT COUNT [SEED]");
        std::process::exit(2);
    };
    let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let root = std::path::Path::new(out);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).expect("create the Maildir");
    }
    let mut generator = coffer_testkit::corpus::Generator::new(seed);
    for i in 0..count {
        let g = generator.message(i);
        std::fs::write(root.join("cur").join(format!("{i:07}.gen:2,S")), &g.raw).expect("write a message");
    }
}
