//! Property tests where a generator states the grammar better than bytes do (issue 9):
//! policies generated from RFC 8461 §3.2's ABNF parse to what was generated, TXT records
//! from §3.1's ABNF give their id, and MX matching agrees with §4.1 on generated names (the
//! table of §4.1 cases is `mx::tests::pattern_table`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use exim_mta_sts_tool::mx::pattern_matches;
use exim_mta_sts_tool::policy::{self, Discovery, MAX_AGE_LIMIT, Mode};
use proptest::prelude::*;

/// `Let-dig [ [ Ldh-str ] Let-dig ]`, lower case (RFC 5321 sub-domain), short.
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..5).prop_map(|l| l.join("."))
}

/// sts-policy-mx-value = ["*."] Domain
fn mx_pattern() -> impl Strategy<Value = String> {
    (any::<bool>(), domain()).prop_map(|(wild, d)| if wild { format!("*.{d}") } else { d })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)]
}

/// sts-policy-ext-name / value: an unknown field, which parsers must ignore (§3.2).
fn extension() -> impl Strategy<Value = String> {
    ("[a-z][a-z0-9_.-]{0,10}", "[!-~]{1,20}").prop_filter_map("not a registered name", |(n, v)| {
        (!["version", "mode", "max_age", "mx"].contains(&n.as_str())).then(|| format!("{n}: {v}"))
    })
}

fn wsp() -> impl Strategy<Value = String> {
    "[ \t]{0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_policies_parse_to_what_was_generated(
        mode in mode(),
        max_age in prop_oneof![0u64..=MAX_AGE_LIMIT, (MAX_AGE_LIMIT + 1)..=9_999_999_999u64],
        mx in prop::collection::vec(mx_pattern(), 1..6),
        extensions in prop::collection::vec(extension(), 0..3),
        order in any::<prop::sample::Index>(),
        crlf in any::<bool>(),
        pad in wsp(),
        trailing in wsp(),
    ) {
        // sts-policy-field-delim = ":" *WSP; fields in any order; LF or CRLF (erratum 6253).
        let mut lines = vec![
            format!("version:{pad}STSv1"),
            format!("mode:{pad}{}", mode.as_str()),
            format!("max_age:{pad}{max_age}{trailing}"),
        ];
        lines.extend(mx.iter().map(|m| format!("mx:{pad}{m}")));
        lines.extend(extensions);
        let k = order.index(lines.len());
        lines.rotate_left(k);
        let term = if crlf { "\r\n" } else { "\n" };
        let text = lines.join(term) + term;
        let p = policy::parse_policy(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        prop_assert_eq!(p.mode, mode);
        prop_assert_eq!(p.max_age, max_age.min(MAX_AGE_LIMIT));
        prop_assert_eq!(p.max_age_clamped, max_age > MAX_AGE_LIMIT);
        // Published order (after the shuffle), duplicates dropped.
        let mut want: Vec<String> = Vec::new();
        for m in lines.iter().filter_map(|l| l.strip_prefix("mx:")).map(|m| m.trim_start_matches([' ', '\t'])) {
            if !want.iter().any(|w| w == m) {
                want.push(m.to_owned());
            }
        }
        prop_assert_eq!(want.len(), { let mut u = mx.clone(); u.sort(); u.dedup(); u.len() });
        prop_assert_eq!(p.mx, want);
    }

    #[test]
    fn generated_sts_records_give_their_id(
        id in "[A-Za-z0-9]{1,32}",
        before in wsp(), after in wsp(),
        ext in prop::collection::vec(("[a-z0-9][a-z0-9_.-]{0,8}", "[!-:<>-~]{1,10}"), 0..3),
        final_delim in any::<bool>(),
    ) {
        // sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
        let mut fields = vec![format!("id={id}")];
        fields.extend(ext.iter().filter(|(n, _)| n != "id").map(|(n, v)| format!("{n}={v}")));
        let delim = format!("{before};{after}");
        let mut record = format!("v=STSv1{delim}{}", fields.join(&delim));
        if final_delim {
            record.push_str(&delim);
        }
        prop_assert_eq!(policy::discover(&[record.clone()]), Discovery::Record(policy::StsRecord { id }), "{}", record);
    }

    #[test]
    fn wildcard_matches_exactly_one_extra_leftmost_label(
        parent in domain(), first in label(), second in label(),
    ) {
        // RFC 8461 §4.1: "*.example.com" matches "mail.example.com" but not "example.com"
        // or "foo.bar.example.com".
        let pattern = format!("*.{parent}");
        let one_more = format!("{first}.{parent}");
        let two_more = format!("{second}.{first}.{parent}");
        let suffixed = format!("{parent}.{first}");
        let inside = format!("{first}.{parent}.{second}");
        prop_assert!(pattern_matches(&pattern, &one_more));
        prop_assert!(!pattern_matches(&pattern, &parent));
        prop_assert!(!pattern_matches(&pattern, &two_more));
        prop_assert!(pattern_matches(&parent, &parent));
        prop_assert!(!pattern_matches(&parent, &one_more));
        // Not a suffix or substring match (the Perl original's defect).
        prop_assert!(!pattern_matches(&parent, &suffixed));
        prop_assert!(!pattern_matches(&pattern, &inside));
    }
}
