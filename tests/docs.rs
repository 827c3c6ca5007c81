//! The documentation cannot drift from the code (issue 8 item 9): the header's documented
//! answers, the README's configuration table and schema key, and the paths the shipped
//! snippets tell administrators to `.include` are each compared with what the code does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::decide::Answer;
use exim_mta_sts_tool::policy::Mode;
use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Every word `getmta DOMAIN` can answer, from the code.
fn answer_words() -> BTreeSet<String> {
    [
        Answer::Policy { mode: Mode::Enforce, mx: "" },
        Answer::Policy { mode: Mode::Testing, mx: "" },
        Answer::Policy { mode: Mode::None, mx: "" },
        Answer::NoPolicy,
        Answer::Fail,
        Answer::Dane { mx: "" },
    ]
    .iter()
    .map(|a| a.as_str().to_owned())
    .collect()
}

fn quoted_words(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn header_documents_every_getmta_answer() {
    let h = read("include/exim_mta_sts.h");
    let start = h.find("{getmta}{DOMAIN}}").unwrap();
    let end = start + h[start..].find("{getmta}{DOMAIN}{HOST}}").unwrap();
    let documented = quoted_words(&h[start..end]);
    // fetch_failure = "fail" is quoted there too: it is the same word.
    assert_eq!(documented, answer_words(), "include/exim_mta_sts.h getmta DOMAIN");
}

#[test]
fn readme_answer_table_lists_every_getmta_answer() {
    let readme = read("README.md");
    let row =
        readme.lines().find(|l| l.starts_with("| `${dlfunc{") && l.contains("{getmta}{DOMAIN}}`")).unwrap();
    let words: BTreeSet<String> =
        row.split('`').skip(1).step_by(2).filter(|w| !w.contains('$')).map(str::to_owned).collect();
    assert_eq!(words, answer_words(), "{row}");
}

/// The README's configuration table: (key, default as written).
fn readme_config_table() -> Vec<(String, String)> {
    let readme = read("README.md");
    let start = readme.find("| key | default | meaning |").unwrap();
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].trim_matches('`').to_owned())
        })
        .collect()
}

#[test]
fn readme_config_table_matches_the_code_keys_and_defaults() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let defaults = defaults.as_object().unwrap();
    let table = readme_config_table();
    let keys: BTreeSet<&str> = table.iter().map(|(k, _)| k.as_str()).collect();
    let code: BTreeSet<&str> = defaults.keys().map(String::as_str).collect();
    assert_eq!(keys, code, "README configuration table keys");
    for (key, written) in &table {
        // A TOML value ("none", 60, true), or a bare path.
        let value: serde_json::Value = toml::from_str::<toml::Table>(&format!("v = {written}"))
            .ok()
            .and_then(|t| serde_json::to_value(&t["v"]).ok())
            .unwrap_or_else(|| serde_json::Value::String(written.clone()));
        assert_eq!(&value, &defaults[key], "README default of {key}");
    }
}

#[test]
fn readme_schema_key_is_the_code_schema() {
    let readme = read("README.md");
    let schema = std::str::from_utf8(exim_mta_sts_tool::cache::SCHEMA).unwrap();
    assert!(
        readme.contains(&format!("`!schema` = `{schema}`")),
        "README must give the schema key {schema:?}"
    );
}

#[test]
fn include_paths_in_the_snippets_are_installed_by_the_readme() {
    // The snippets say `.include /usr/share/exim-mta-sts/FILE`: the README's install steps
    // must put every such FILE there.
    let readme = read("README.md");
    let installs = readme.contains("install -m 0644 exim-config/*.conf /usr/share/exim-mta-sts/");
    for name in ["main.conf", "acl.conf", "routers.conf", "transports.conf", "README.md"] {
        let text = read(&format!("exim-config/{name}"));
        for line in text.lines().filter(|l| l.contains("/usr/share/exim-mta-sts/")) {
            let file = line.split("/usr/share/exim-mta-sts/").nth(1).unwrap();
            let file: String = file.chars().take_while(|c| !c.is_whitespace() && *c != '`').collect();
            assert!(file.ends_with(".conf") && installs, "{name}: {line}");
            assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("exim-config").join(&file).exists(), "{file}");
        }
    }
}

#[test]
fn the_packages_conf_d_files_include_snippets_the_package_installs() {
    // debian/conf.d/*/* each `.include_if_exists /usr/share/exim-mta-sts/FILE`: FILE must be
    // one of exim-config/, and an asset of the package (Cargo.toml [package.metadata.deb]).
    let cargo = read("Cargo.toml");
    let mut seen = 0;
    for part in ["main", "router", "transport"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/conf.d").join(part);
        for f in std::fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let includes: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(includes.len(), 1, "{path:?}: one include line");
            let file = includes[0].strip_prefix(".include_if_exists /usr/share/exim-mta-sts/").unwrap();
            assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("exim-config").join(file).exists(), "{file}");
            assert!(
                cargo.contains(&format!("[\"exim-config/{file}\", \"usr/share/exim-mta-sts/\", \"644\"]")),
                "{file}"
            );
            let place = format!("etc/exim4/conf.d/{part}/");
            assert!(cargo.contains(&format!(
                "[\"debian/conf.d/{part}/{}\", \"{place}\"",
                path.file_name().unwrap().to_string_lossy()
            )));
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
}
