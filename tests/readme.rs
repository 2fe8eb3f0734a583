//! Keeps the README's reference tables true to the code.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use jwt_guard::config;
use jwt_guard::denial::ALL;

const README: &str = include_str!("../README.md");

/// The first column of every table row that starts with a backticked name.
fn table_names(section_start: &str, section_end: &str) -> Vec<String> {
    let start = README.find(section_start).expect("section start in README");
    let end = start
        + README[start..]
            .find(section_end)
            .expect("section end in README");
    README[start..end]
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn readme_config_table_lists_exactly_the_accepted_fields() {
    let err = config::parse(br#"{"no_such_field": 1}"#, &no_env).unwrap_err();
    let (_, expected) = err
        .reason
        .split_once("expected one of")
        .expect("serde lists fields");
    let mut accepted: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    let mut documented = table_names("| field | type | default | meaning |", "`remote_jwks` and");
    accepted.sort();
    documented.sort();
    assert_eq!(documented, accepted);
}

#[test]
fn readme_fetch_table_fields_are_accepted() {
    let documented = table_names("| field | in | default | meaning |", "A **rule**");
    assert!(documented.len() >= 8, "{documented:?}");
    for field in documented {
        let (remote, better_auth) = match field.as_str() {
            "cluster" | "path" | "base_url" => continue, // required, used below anyway
            "authority" => (r#""authority":"idp.example""#, None),
            "jwks_path" => ("", Some(r#""jwks_path":"/jwks""#)),
            "timeout_ms" => (r#""timeout_ms":1000"#, Some(r#""timeout_ms":1000"#)),
            "refresh_seconds" => (r#""refresh_seconds":60"#, Some(r#""refresh_seconds":60"#)),
            "min_refetch_seconds" => (
                r#""min_refetch_seconds":5"#,
                Some(r#""min_refetch_seconds":5"#),
            ),
            other => panic!("README documents a fetch field the test does not know: {other}"),
        };
        if !remote.is_empty() {
            let json = format!(r#"{{"remote_jwks":{{"cluster":"c","path":"/j",{remote}}}}}"#);
            assert!(config::parse(json.as_bytes(), &no_env).is_ok(), "{json}");
        }
        if let Some(extra) = better_auth {
            let json = format!(
                r#"{{"better_auth":{{"base_url":"http://a.example","cluster":"c",{extra}}}}}"#
            );
            assert!(config::parse(json.as_bytes(), &no_env).is_ok(), "{json}");
        }
    }
}

#[test]
fn readme_denial_table_matches_codes_and_statuses() {
    let start = README
        .find("| code | status | when |")
        .expect("denial table");
    let rows: Vec<(String, u32)> = README[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].parse().expect("status"),
            )
        })
        .collect();
    let actual: Vec<(String, u32)> = ALL
        .iter()
        .map(|d| (d.code().to_owned(), d.status()))
        .collect();
    assert_eq!(rows, actual);
}
