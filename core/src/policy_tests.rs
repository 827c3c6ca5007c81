//! Table-driven tests for the corners of the RFC 8461 / RFC 8460 grammars.

use super::*;

fn recs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn id_of(records: &[&str]) -> Option<String> {
    match discover(&recs(records)) {
        Discovery::Record(r) => Some(r.id),
        _ => None,
    }
}

#[test]
fn sts_record_table() {
    // (records, id if the domain has a usable record, section)
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (&["v=STSv1; id=20160831085700Z;"], Some("20160831085700Z"), "§3.1 example"),
        (&["v=STSv1;id=abc"], Some("abc"), "§3.1 trailing ';' optional, no WSP needed"),
        (&["v=STSv1 ; id=abc ;"], Some("abc"), "§3.1 WSP around ';' (A-07)"),
        (&["v=STSv1;\tid=abc"], Some("abc"), "§3.1 WSP is SP or HTAB"),
        (&["v=STSv1; id=abc; ext=x.y-z;"], Some("abc"), "§3.2 unknown fields ignored"),
        (&["v=STSv1; ext=1; id=abc"], Some("abc"), "§3.1 order of other fields free"),
        (&["v=STSv1; id=first; id=second"], Some("first"), "§3.2 first duplicate wins (A-10)"),
        (&["v=STSv1; id=abc; id=a-b"], Some("abc"), "§3.2 later duplicate ignored"),
        (
            &[&format!("v=STSv1; id={}", "a".repeat(32))],
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            "§3.1 id up to 32",
        ),
        (&[&format!("v=STSv1; id={}", "a".repeat(33))], None, "§3.1 id at most 32"),
        (&["v=STSv1; id=a-b"], None, "§3.1 id is ALPHA/DIGIT only"),
        (&["v=STSv1; id=a.b; id=abc"], None, "A-11 malformed first id"),
        (&["v=STSv1; id="], None, "§3.1 id needs 1 char"),
        (&["v=STSv1; id = abc"], None, "§3.1 no WSP around '='"),
        (&["v=STSv1;"], None, "§3.1 id is required"),
        (&["v=STSv1; foo=bar"], None, "§3.1 id is required"),
        (&["v=STSv1"], None, "§3.1 not an STS record without ';'"),
        (&["v=STSv1; id=abc;; x=y"], None, "§3.1 empty field"),
        (&["v=STSv1; id=abc; bad=a=b"], None, "§3.1 ext-value excludes '='"),
        (&["v=STSv1; id=abc; _x=1"], None, "§3.1 ext-name starts alnum"),
        (&["v=STSv1; id=abc; é=1"], None, "§3.1 US-ASCII only"),
        (&["v=stsv1; id=abc"], None, "§3.1 %s\"v=STSv1\" is case-sensitive"),
        (&["V=STSv1; id=abc"], None, "§3.1 case-sensitive"),
        (&[" v=STSv1; id=abc"], None, "§3.1 MUST begin with the version"),
        (&["v=STSv10; id=abc"], None, "not STSv1"),
        (&["id=abc; v=STSv1"], None, "§3.1 version must come first"),
        (
            &["v=STSv1;        id=20160831085700Z   "],
            None,
            "§3.1 WSP only around ';': none after the last field",
        ),
        (&["v=STSv1; id=abc\t"], None, "§3.1 no trailing HTAB without ';'"),
        (&["v=STSv1; id=abc;  "], Some("abc"), "§3.1 trailing field-delim may end in WSP"),
        (&["v=STSv1; id=abc ; ext=1 "], None, "§3.1 no WSP after the last field"),
        (&["v=STSv1; id=abc", "v=STSv1; id=def"], None, "§3.1 not exactly one record"),
        (&["v=STSv1; id=abc", "v=spf1 -all", "hello"], Some("abc"), "§3.1 others discarded"),
        (&["v=spf1 -all"], None, "no STS record"),
        (&[], None, "empty RRset"),
    ];
    for (records, want, why) in cases {
        assert_eq!(id_of(records).as_deref(), *want, "{why}: {records:?}");
    }
}

#[test]
fn discovery_kinds() {
    assert_eq!(discover(&recs(&["v=spf1"])), Discovery::NoRecord);
    assert_eq!(discover(&recs(&["v=STSv1; id=a", "v=STSv1;id=b"])), Discovery::Several(2));
    assert!(matches!(discover(&recs(&["v=STSv1; id=a_b"])), Discovery::Invalid(_)));
}

const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";

fn policy(text: &str) -> Result<Policy, ParseError> {
    parse_policy(text)
}

#[test]
fn policy_accepts_rfc_example_and_variants() {
    let p = policy(GOOD).unwrap();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.max_age, 86400);
    assert_eq!(p.mx, vec!["mail.example.com", "*.example.net"]);
    assert!(!p.max_age_clamped);

    // (text, mode, mx, max_age, section)
    let ok: &[(&str, Mode, &[&str], u64, &str)] = &[
        (
            &GOOD.replace('\n', "\r\n"),
            Mode::Enforce,
            &["mail.example.com", "*.example.net"],
            86400,
            "§3.2 CRLF (A-06)",
        ),
        (
            "version: STSv1\r\nmode: testing\nmx: a.example\r\nmax_age: 1",
            Mode::Testing,
            &["a.example"],
            1,
            "A-06 mixed LF/CRLF, no final newline",
        ),
        (
            "max_age: 60\nmx: a.example\nmode: enforce\nversion: STSv1\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "A-13 any order",
        ),
        (
            "version:STSv1\nmode:\tenforce\nmx:a.example  \nmax_age: 60 \t\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "§3.2 optional WSP after ':' and at line end",
        ),
        ("version: STSv1\nmode: none\nmax_age: 60\n", Mode::None, &[], 60, "§3.2 mx optional when mode none"),
        (
            "\u{feff}version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "A-08 leading BOM",
        ),
        (
            "version: STSv1\n\nmode: enforce\n  \nmx: a.example\nmax_age: 60\n\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "A-08 blank lines tolerated",
        ),
        (
            "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 60\nmax_age: 5\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "§3.2 first duplicate wins",
        ),
        (
            "version: STSv1\nmode: enforce\nmode: Bogus\nmx: a.example\nmax_age: 60\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "§3.2 later duplicates ignored",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: A.Example.\nmx: a.example\nmax_age: 60\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "A-16 case and trailing dot normalised",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0000000060\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "§3.2 leading zeros, 10 digits",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0\n",
            Mode::Enforce,
            &["a.example"],
            0,
            "A-05 max_age 0",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\nfoo: bar baz\nx-y.z_1: \u{e9}t\u{e9}\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "§3.2 unknown fields ignored",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\nfoo:\n",
            Mode::Enforce,
            &["a.example"],
            60,
            "A-09 unknown value unchecked",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmax_age: 60\n",
            Mode::Enforce,
            &["xn--bcher-kva.example"],
            60,
            "§3.2 A-labels",
        ),
    ];
    for (text, mode, mx, max_age, why) in ok {
        let p = policy(text).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(
            (p.mode, p.mx.iter().map(String::as_str).collect::<Vec<_>>(), p.max_age),
            (*mode, mx.to_vec(), *max_age),
            "{why}"
        );
    }
}

#[test]
fn policy_max_age_is_clamped() {
    // RFC.md A-03: above 31557600 is clamped, not rejected.
    let p = policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n").unwrap();
    assert_eq!(p.max_age, MAX_AGE_LIMIT);
    assert!(p.max_age_clamped);
    let p = policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600\n").unwrap();
    assert!(!p.max_age_clamped);
}

#[test]
fn policy_rejections() {
    let base = |line: &str| format!("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\n{line}\n");
    // (text, section)
    let bad: Vec<(String, &str)> = vec![
        ("mode: enforce\nmx: a.example\nmax_age: 60\n".into(), "§3.2 version required"),
        ("version: STSv1\nmx: a.example\nmax_age: 60\n".into(), "§3.2 mode required"),
        ("version: STSv1\nmode: enforce\nmx: a.example\n".into(), "§3.2 max_age required"),
        ("version: STSv1\nmode: enforce\nmax_age: 60\n".into(), "§3.2 mx required unless none"),
        ("version: STSv1\nmode: testing\nmax_age: 60\n".into(), "§3.2 mx required unless none"),
        (
            "version: STSv2\nversion: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\n".into(),
            "A-11 malformed first version",
        ),
        ("version: stsv1\nmode: enforce\nmx: a.example\nmax_age: 60\n".into(), "§3.2 case-sensitive version"),
        ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 60\n".into(), "A-12 case-sensitive mode"),
        ("version: STSv1\nmode: enforced\nmx: a.example\nmax_age: 60\n".into(), "A-12 unknown mode"),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n".into(),
            "§3.2 max_age 1*10DIGIT",
        ),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n".into(), "§3.2 max_age digits"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n".into(), "§3.2 max_age digits"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n".into(), "§3.2 max_age empty"),
        (base("mx: a.*.example"), "A-12 wildcard only leftmost"),
        (base("mx: *example.com"), "A-12 partial wildcard"),
        (base("mx: *"), "A-12 bare wildcard"),
        (base("mx:"), "A-12 empty mx"),
        (base("mx: mail.example.com:25"), "A-12 no port"),
        (base("mx: mail_1.example.com"), "A-12 RFC 5321 Domain"),
        (base("mx: [192.0.2.1]"), "A-12 no literal"),
        (base("mx: bücher.example"), "§3.2 MUST be A-label"),
        (base(" mx: b.example"), "A-08 leading WSP"),
        (base("mx : b.example"), "A-08 WSP before ':'"),
        (base("mx b.example"), "§3.2 no ':'"),
        (base("#comment: x"), "A-09 bad ext-name"),
        (base("_x: y"), "A-09 bad ext-name"),
        (base(&format!("{}: y", "a".repeat(33))), "A-09 ext-name at most 32"),
        (base("mx: a.example\rmx: b.example"), "§3.2 bare CR is no line end"),
        ("<html><body>hello</body></html>".into(), "not a policy"),
        ("".into(), "empty"),
    ];
    for (text, why) in &bad {
        assert!(policy(text).is_err(), "{why}: accepted {text:?}");
    }
}

#[test]
fn policy_error_names_the_line() {
    let e = policy("version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 60\n").unwrap_err();
    assert_eq!(e.to_string(), "policy line 3: bad mx pattern \"a..example\"");
}

#[test]
fn tlsrpt_table() {
    // (records, report value, section)
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (&["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"], Some("tlsrpt@example.com"), "RFC 8460 §3 example"),
        (
            &["v=TLSRPTv1;rua=https://reports.example.com/tlsrpt"],
            Some("https://reports.example.com/tlsrpt"),
            "§3 https kept",
        ),
        (
            &["v=TLSRPTv1; rua=mailto:a@example.com, https://r.example/x ;"],
            Some("a@example.com,https://r.example/x"),
            "§3 comma list with WSP",
        ),
        (
            &["v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"],
            Some("a@example.com,b@example.com"),
            "A-18 union of rua fields",
        ),
        (
            &["v=TLSRPTv1; rua=ftp://x.example/, mailto:a@example.com"],
            Some("a@example.com"),
            "§3 only mailto and https",
        ),
        (
            &["v=TLSRPTv1; rua=MAILTO:a@example.com"],
            Some("a@example.com"),
            "URI schemes are case-insensitive",
        ),
        (
            &["v=TLSRPTv1; rua=mailto:a@example.com; ext=1"],
            Some("a@example.com"),
            "§3 unknown fields ignored",
        ),
        (&["v=TLSRPTv1; ext=1"], None, "§3 rua required"),
        (&["v=TLSRPTv1; rua=mailto:a@example.com!10m"], None, "§3 '!' MUST be encoded"),
        (
            &["v=TLSRPTv1; rua=mailto:a@example.com%2110m"],
            Some("a@example.com%2110m"),
            "§3 encoded '!' is fine",
        ),
        (&["v=TLSRPTv1; rua=mailto:a@example.com  "], None, "§3 no WSP after the last field"),
        (&["v=TLSRPTv1; rua=mailto:a@example.com ;  "], Some("a@example.com"), "§3 WSP around the final ';'"),
        (
            &["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"],
            None,
            "§3 not exactly one",
        ),
        (&["v=TLSRPTv1; rua=mailto:a@example.com", "v=spf1"], Some("a@example.com"), "§3 others discarded"),
        (&["v=tlsrptv1; rua=mailto:a@example.com"], None, "§3 case-sensitive version"),
        (&[], None, "no record"),
    ];
    for (records, want, why) in cases {
        let got = parse_tlsrpt(&recs(records)).map(|t| t.report_value());
        assert_eq!(got.as_deref(), *want, "{why}: {records:?}");
    }
}

/// A small deterministic generator (xorshift64*), so the randomized tests repeat exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates `seed` a few times: byte flips, insertions of grammar-significant characters,
/// deletions, duplicated slices.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    const SPICE: &[&str] = &[
        ":",
        ";",
        "=",
        " ",
        "\t",
        "\r",
        "\n",
        "\r\n",
        "*.",
        ".",
        "-",
        "_",
        "\u{feff}",
        "é",
        "\0",
        "9999999999",
        "mx:",
        "id=",
        "v=STSv1",
    ];
    let mut s: Vec<u8> = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 if !s.is_empty() => {
                let i = at.min(s.len() - 1);
                s[i] = (rng.next() & 0xff) as u8;
            }
            1 => {
                let spice = SPICE[rng.below(SPICE.len())].as_bytes();
                s.splice(at..at, spice.iter().copied());
            }
            2 if at < s.len() => {
                let end = (at + 1 + rng.below(8)).min(s.len());
                s.drain(at..end);
            }
            _ => {
                let end = (at + rng.below(16)).min(s.len());
                let copy = s[at..end].to_vec();
                s.splice(at..at, copy);
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

#[test]
fn parsers_never_panic_and_accepted_policies_keep_their_invariants() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = [
        GOOD,
        "version: STSv1\r\nmode: none\r\nmax_age: 0\r\n",
        "v=STSv1; id=20240101T000000;",
        "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example/x",
    ];
    for _ in 0..60_000 {
        let seed = seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        if let Ok(p) = parse_policy(&input) {
            // RFC 8461 §3.2 (and RFC.md A-03): what is accepted is well-formed.
            assert!(p.max_age <= MAX_AGE_LIMIT, "{input:?}");
            assert!(p.mode == Mode::None || !p.mx.is_empty(), "{input:?}");
            for m in &p.mx {
                let name = m.strip_prefix("*.").unwrap_or(m);
                assert_eq!(crate::domain::normalize(name).as_deref(), Ok(name), "{input:?}");
            }
        }
        if let Discovery::Record(r) = discover(std::slice::from_ref(&input)) {
            assert!(
                (1..=32).contains(&r.id.len()) && r.id.bytes().all(|c| c.is_ascii_alphanumeric()),
                "{input:?}"
            );
        }
        if let Some(t) = parse_tlsrpt(std::slice::from_ref(&input)) {
            assert!(
                t.rua.iter().all(|u| !u.contains(',') && !u.contains(';') && !u.contains(' ')),
                "{input:?}"
            );
        }
    }
}
