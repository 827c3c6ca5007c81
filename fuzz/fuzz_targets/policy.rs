//! The policy body (RFC 8461 §3.2), as bytes from the policy host.
#![no_main]
use exim_mta_sts_tool::policy::{self, MAX_AGE_LIMIT, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(p) = policy::parse_policy(text) else { return };
    assert!(p.max_age <= MAX_AGE_LIMIT);
    assert!(p.mode == Mode::None || !p.mx.is_empty(), "mx required unless mode none");
    // The shared database's `:mx` form (colon-separated) gives the same list back.
    let shared = p.mx.join(":");
    let back: Vec<&str> = if shared.is_empty() { vec![] } else { shared.split(':').collect() };
    assert_eq!(back, p.mx.iter().map(String::as_str).collect::<Vec<_>>());
    // Re-serialised, the policy parses to itself (patterns are already normal forms).
    let mut again = format!("version: STSv1\nmode: {}\nmax_age: {}\n", p.mode.as_str(), p.max_age);
    for m in &p.mx {
        again.push_str(&format!("mx: {m}\n"));
    }
    let q = policy::parse_policy(&again).expect("a re-serialised policy parses");
    assert_eq!((q.mode, q.max_age, &q.mx), (p.mode, p.max_age, &p.mx));
});
