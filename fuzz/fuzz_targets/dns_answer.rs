//! A DNS response from the wire for one question: truncation, compression loops, wrong
//! ids, other questions, CNAME chains. The first byte picks the asked type.
#![no_main]
use exim_mta_sts_tool::dns;
use hickory_proto::rr::{Name, RData, RecordType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let rtype = [RecordType::TXT, RecordType::MX, RecordType::TLSA, RecordType::A][usize::from(pick % 4)];
    let qname = Name::from_ascii("_mta-sts.example.com.").expect("a valid name");
    // The id of the question is the response's own (the fuzzer cannot guess a random one).
    let id = bytes.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0);
    let Ok(m) = dns::decode_response(bytes, id, &qname, rtype) else { return };
    let (used, _aliased) = dns::chain_records(&m, &qname, rtype);
    assert!(used.iter().all(|r| r.record_type() == rtype));
    let a = dns::answer_of(&m, &qname, rtype, true, |d: &RData| Some(d.clone()));
    assert_eq!(a.items.len(), used.len());
    assert_eq!(a.ttl, used.iter().map(|r| r.ttl).min().unwrap_or(0));
    // Every record used is owned by the question's name or a name a CNAME chain from it
    // reaches within the hop limit.
    let mut reach = vec![qname.clone()];
    for _ in 0..dns::MAX_CNAME_HOPS {
        let last = reach.last().expect("not empty").clone();
        match m.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(t) if r.name.eq_ignore_root(&last) => Some(t.0.clone()),
            _ => None,
        }) {
            Some(t) => reach.push(t),
            None => break,
        }
    }
    assert!(used.iter().all(|r| reach.iter().any(|n| n.eq_ignore_root(&r.name))));
});
