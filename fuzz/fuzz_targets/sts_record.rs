//! The `_mta-sts` TXT RRset (RFC 8461 §3.1): records separated by NUL in the input.
#![no_main]
use exim_mta_sts_tool::policy::{self, Discovery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // DNS strings reach the parser as lossy UTF-8, as the resolver hands them over.
    let records: Vec<String> = data.split(|&b| b == 0).map(|r| String::from_utf8_lossy(r).into_owned()).collect();
    match policy::discover(&records) {
        Discovery::Record(r) => {
            // §3.1: sts-id = 1*32(ALPHA / DIGIT).
            assert!((1..=32).contains(&r.id.len()) && r.id.bytes().all(|c| c.is_ascii_alphanumeric()), "{r:?}");
            // Exactly one record began with the version, and it alone parses to this id.
            let sts: Vec<&String> = records.iter().filter(|r| r.starts_with("v=STSv1")).collect();
            assert!(sts.iter().any(|s| policy::parse_sts_record(s).is_ok_and(|p| p == r)));
        }
        Discovery::Several(n) => assert!(n > 1),
        Discovery::Invalid(_) | Discovery::NoRecord => {}
    }
});
