//! The configuration file (SPEC §6), as bytes on disk.
#![no_main]
use exim_mta_sts_tool::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = Config::parse(text) else { return };
    // Written back as TOML (JSON strings, numbers and booleans are TOML values), the
    // configuration parses to itself.
    let json = serde_json::to_value(&cfg).expect("serialisable");
    let mut again = String::new();
    for (key, value) in json.as_object().expect("a table") {
        again.push_str(&format!("{key} = {value}\n"));
    }
    assert_eq!(Config::parse(&again), Ok(cfg), "{again}");
});
