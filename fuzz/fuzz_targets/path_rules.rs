//! Any bytes as `:path`: canonicalisation and rule matching never panic, canonical
//! segments are never empty, dot segments or carriers of separators, and a `user`
//! rule only ever binds to the segment in its template position.
#![no_main]

use jwt_guard::path;
use jwt_guard::rules::{Access, Require, Rule, Rules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(segments) = path::segments(data) else {
        return;
    };
    for segment in &segments {
        assert!(!segment.is_empty());
        assert!(&segment[..] != b"." && &segment[..] != b"..");
        assert!(!segment
            .iter()
            .any(|b| matches!(b, b'/' | b'\\' | b';' | b'%' | 0)));
    }
    let Ok(user) = Rule::new("/api/{user_id}/**", Require::User) else {
        return;
    };
    let Ok(public) = Rule::new("/public/**", Require::Public) else {
        return;
    };
    let rules = Rules::new(vec![public, user]);
    match rules.access(&segments) {
        Access::User(owner) => {
            assert!(segments.len() >= 2 && segments[0].eq_ignore_ascii_case(b"api"));
            assert_eq!(owner, &segments[1][..]);
        }
        Access::Public => assert_eq!(segments.first().map(|s| &s[..]), Some(&b"public"[..])),
        Access::Token => {}
    }
});
