//! Ordered path rules: which paths are public, which need a token, and which belong
//! to the user named by one of their segments.

use std::fmt;

use serde::Deserialize;

use crate::path::Segment;

/// What a path requires of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// No token at all.
    Public,
    /// Any valid token.
    Token,
    /// A valid token whose user equals the path's `{…}` segment.
    User,
}

/// The access a concrete path needs, as decided by the first matching rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'p> {
    Public,
    Token,
    /// The decoded path segment the token's user must equal.
    User(&'p [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    /// `{name}`: any one segment, captured.
    Capture,
    /// `*`: any one segment.
    Any,
    /// `**`, last only: zero or more segments.
    Rest,
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    parts: Vec<Part>,
    require: Require,
}

/// Why a rule's template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Rule {
    /// Compiles `template` such as `/api/{user_id}/**`.
    ///
    /// A `user` rule has exactly one `{name}`; other rules have none. `**` may only be
    /// the last segment. Literals may not hold characters that paths are refused for.
    pub fn new(template: &str, require: Require) -> Result<Rule, RuleError> {
        let Some(body) = template.strip_prefix('/') else {
            return Err(RuleError("must start with '/'".into()));
        };
        let body = body.strip_suffix('/').unwrap_or(body);
        let raw: Vec<&str> = if body.is_empty() {
            vec![]
        } else {
            body.split('/').collect()
        };

        let mut parts = Vec::with_capacity(raw.len());
        for (i, seg) in raw.iter().enumerate() {
            parts.push(match *seg {
                "**" if i + 1 == raw.len() => Part::Rest,
                "**" => return Err(RuleError("'**' may only be the last segment".into())),
                "*" => Part::Any,
                s if s.starts_with('{') && s.ends_with('}') => {
                    let name = &s[1..s.len() - 1];
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(RuleError(format!("bad capture name in '{s}'")));
                    }
                    Part::Capture
                }
                "" => return Err(RuleError("empty segment".into())),
                s if s
                    .bytes()
                    .any(|b| b"{}*%;\\#?".contains(&b) || b <= b' ' || b == 0x7f) =>
                {
                    return Err(RuleError(format!(
                        "segment '{s}' holds a reserved character"
                    )))
                }
                "." | ".." => return Err(RuleError("dot segment".into())),
                s => Part::Literal(s.as_bytes().to_vec()),
            });
        }

        let captures = parts.iter().filter(|p| **p == Part::Capture).count();
        match (require, captures) {
            (Require::User, 1) | (Require::Public | Require::Token, 0) => {}
            (Require::User, _) => {
                return Err(RuleError(
                    "a user rule needs exactly one {name} segment".into(),
                ))
            }
            _ => {
                return Err(RuleError(
                    "only user rules may capture a {name} segment".into(),
                ))
            }
        }
        Ok(Rule { parts, require })
    }

    /// The captured segment if this rule matches `segments`.
    ///
    /// `public` rules match literals exactly; `token` and `user` rules ignore ASCII
    /// letter case, so a case-insensitive upstream cannot be reached around them.
    fn matches<'p>(&self, segments: &'p [Segment<'_>]) -> Option<Option<&'p [u8]>> {
        let exact = self.require == Require::Public;
        let mut captured = None;
        let mut rest = segments.iter();
        for part in &self.parts {
            if *part == Part::Rest {
                return Some(captured);
            }
            let seg = rest.next()?;
            match part {
                Part::Literal(lit) if exact && lit[..] != seg[..] => return None,
                Part::Literal(lit) if !lit.eq_ignore_ascii_case(seg) => return None,
                Part::Capture => captured = Some(&seg[..]),
                _ => {}
            }
        }
        rest.next().is_none().then_some(captured)
    }
}

/// The ordered rules of one filter instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Rules evaluated in order; the first match decides.
    pub fn new(rules: Vec<Rule>) -> Rules {
        Rules(rules)
    }

    /// The rules used when none are configured: `/api/{user_id}/**` is user-bound and
    /// everything else needs a token.
    pub fn default_rules() -> Rules {
        let user = Rule {
            parts: vec![Part::Literal(b"api".to_vec()), Part::Capture, Part::Rest],
            require: Require::User,
        };
        Rules(vec![user])
    }

    /// The access `segments` need. A path no rule matches needs a token.
    pub fn access<'p>(&self, segments: &'p [Segment<'_>]) -> Access<'p> {
        for rule in &self.0 {
            if let Some(captured) = rule.matches(segments) {
                return match (rule.require, captured) {
                    (Require::Public, _) => Access::Public,
                    (Require::User, Some(user)) => Access::User(user),
                    _ => Access::Token,
                };
            }
        }
        Access::Token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::segments;

    fn rules(list: &[(&str, Require)]) -> Rules {
        Rules::new(
            list.iter()
                .map(|(t, r)| Rule::new(t, *r).unwrap())
                .collect(),
        )
    }

    fn access(rules: &Rules, path: &str) -> String {
        let segs = segments(path.as_bytes()).unwrap();
        match rules.access(&segs) {
            Access::Public => "public".into(),
            Access::Token => "token".into(),
            Access::User(u) => format!("user:{}", String::from_utf8_lossy(u)),
        }
    }

    #[test]
    fn default_rules_bind_api_user_segment() {
        let r = Rules::default_rules();
        assert_eq!(access(&r, "/api/alice/docs/1"), "user:alice");
        assert_eq!(access(&r, "/api/alice"), "user:alice");
        assert_eq!(access(&r, "/api/alice/"), "user:alice");
        assert_eq!(access(&r, "/api"), "token");
        assert_eq!(access(&r, "/health"), "token");
        assert_eq!(access(&r, "/"), "token");
    }

    #[test]
    fn default_rules_equal_their_template() {
        let compiled = Rule::new("/api/{user_id}/**", Require::User).unwrap();
        assert_eq!(Rules::default_rules(), Rules::new(vec![compiled]));
    }

    #[test]
    fn user_rule_literal_ignores_letter_case() {
        let r = Rules::default_rules();
        assert_eq!(access(&r, "/API/bob/x"), "user:bob");
        assert_eq!(access(&r, "/Api/bob"), "user:bob");
        assert_eq!(access(&r, "/%41PI/bob"), "user:bob");
    }

    #[test]
    fn captured_user_keeps_its_case() {
        assert_eq!(access(&Rules::default_rules(), "/api/Bob"), "user:Bob");
    }

    #[test]
    fn public_rule_matches_exact_case_only() {
        let r = rules(&[
            ("/public/**", Require::Public),
            ("/api/{u}/**", Require::User),
        ]);
        assert_eq!(access(&r, "/public/logo.png"), "public");
        assert_eq!(access(&r, "/PUBLIC/logo.png"), "token");
    }

    #[test]
    fn first_match_wins() {
        let r = rules(&[
            ("/api/docs/**", Require::Public),
            ("/api/{user_id}/**", Require::User),
            ("/**", Require::Token),
        ]);
        assert_eq!(access(&r, "/api/docs/x"), "public");
        assert_eq!(access(&r, "/api/DOCS/x"), "user:DOCS");
        assert_eq!(access(&r, "/other"), "token");
    }

    #[test]
    fn star_matches_one_segment() {
        let r = rules(&[("/v1/*/users/{id}", Require::User)]);
        assert_eq!(access(&r, "/v1/x/users/bob"), "user:bob");
        assert_eq!(access(&r, "/v1/x/users/bob/more"), "token");
        assert_eq!(access(&r, "/v1/users/bob"), "token");
    }

    #[test]
    fn exact_root_rule() {
        let r = rules(&[("/", Require::Public)]);
        assert_eq!(access(&r, "/"), "public");
        assert_eq!(access(&r, "/x"), "token");
    }

    #[test]
    fn bad_templates_are_refused() {
        for (template, require) in [
            ("api/{u}", Require::User),
            ("/api/**/x", Require::User),
            ("/api/x", Require::User),
            ("/api/{a}/{b}", Require::User),
            ("/api/{u}", Require::Token),
            ("/api/{}", Require::User),
            ("/api//{u}", Require::User),
            ("/api;x/{u}", Require::User),
            ("/a%2Fb/{u}", Require::User),
            ("/../{u}", Require::User),
        ] {
            assert!(Rule::new(template, require).is_err(), "{template}");
        }
    }
}
