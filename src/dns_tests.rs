//! Unit tests of the DNS stub (`dns.rs`): response decoding and record chains.

use super::*;
use hickory_proto::rr::rdata::{CNAME, TXT};

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn txt(owner: &str, text: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::TXT(TXT::new(vec![text.to_owned()])))
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

fn texts(m: &Message, q: &str) -> (Vec<String>, bool, u32) {
    let a = answer_of(m, &name(q), RecordType::TXT, true, |d| match d {
        RData::TXT(t) => Some(t.to_string()),
        _ => None,
    });
    (a.items, a.aliased, a.ttl)
}

#[test]
fn only_records_on_the_cname_chain_from_the_question_count() {
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    m.add_answer(txt("other.example.", "v=STSv1; id=evil", 10));
    m.add_answer(cname("_mta-sts.a.example.", "_mta-sts.provider.example."));
    m.add_answer(txt("_mta-sts.provider.example.", "v=STSv1; id=good", 60));
    assert_eq!(texts(&m, "_mta-sts.a.example."), (vec!["v=STSv1; id=good".to_owned()], true, 60));
    assert_eq!(texts(&m, "_MTA-STS.A.EXAMPLE"), (vec!["v=STSv1; id=good".to_owned()], true, 60));
    assert_eq!(texts(&m, "unrelated.example."), (vec![], false, 0));
}

#[test]
fn cname_loops_and_long_chains_give_nothing() {
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    m.add_answer(cname("a.example.", "b.example."));
    m.add_answer(cname("b.example.", "a.example."));
    assert_eq!(texts(&m, "a.example."), (vec![], true, 0));
    let mut long = Message::new(1, MessageType::Response, OpCode::Query);
    for i in 0..=MAX_CNAME_HOPS {
        long.add_answer(cname(&format!("n{i}.example."), &format!("n{}.example.", i + 1)));
    }
    long.add_answer(txt(&format!("n{}.example.", MAX_CNAME_HOPS + 1), "far", 60));
    assert_eq!(texts(&long, "n0.example.").0, Vec::<String>::new());
    assert_eq!(texts(&long, "n1.example.").0, vec!["far".to_owned()]);
}

#[test]
fn responses_to_another_question_are_refused() {
    let mut m = Message::new(7, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name("a.example."), RecordType::TXT));
    let wire = m.to_vec().unwrap();
    assert!(decode_response(&wire, 7, &name("a.example"), RecordType::TXT).is_ok());
    assert!(decode_response(&wire, 8, &name("a.example"), RecordType::TXT).is_err(), "id");
    assert!(decode_response(&wire, 7, &name("b.example"), RecordType::TXT).is_err(), "name");
    assert!(decode_response(&wire, 7, &name("a.example"), RecordType::MX).is_err(), "type");
    assert!(decode_response(&wire[..wire.len() - 1], 7, &name("a.example"), RecordType::TXT).is_err());
}
