//! The store's entry decoder on arbitrary bytes (a store file other processes write).
#![no_main]
use exim_mta_sts_tool::cache::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = Entry::decode(data);
    let view = Entry::decode_for_answer(data);
    if let Some(e) = full {
        // One encoding per entry: decoding then encoding gives the same bytes.
        assert_eq!(e.encode(), data);
        // The answer-only view agrees with the full decode on everything but the
        // strings it skips (all but `mx`).
        let v = view.expect("what decodes fully decodes for answering");
        assert_eq!((v.kind, v.mode, v.expires, v.checked, v.fetched), (e.kind, e.mode, e.expires, e.checked, e.fetched));
        assert_eq!((v.retry_after, v.shared_retry, v.dane, v.dane_until, v.used, v.rechecked), (e.retry_after, e.shared_retry, e.dane, e.dane_until, e.used, e.rechecked));
        assert_eq!((v.mx, v.cause), (e.mx, e.cause));
    }
});
