//! The `_smtp._tls` TXT RRset (RFC 8460 §3): records separated by NUL in the input.
#![no_main]
use exim_mta_sts_tool::policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records: Vec<String> = data.split(|&b| b == 0).map(|r| String::from_utf8_lossy(r).into_owned()).collect();
    let Some(t) = policy::parse_tlsrpt(&records) else { return };
    for uri in &t.rua {
        let lower = uri.to_ascii_lowercase();
        assert!(lower.starts_with("mailto:") || lower.starts_with("https:"), "{uri}");
        // §3: ',', '!' and ';' must be encoded; no white space inside a URI.
        assert!(!uri.contains([',', '!', ';', ' ', '\t']), "{uri}");
    }
    // The shared database's `:report` value splits back into one entry per URI.
    let value = t.report_value();
    assert_eq!(if value.is_empty() { 0 } else { value.split(',').count() }, t.rua.len(), "{value}");
});
