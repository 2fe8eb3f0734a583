//! The plugin configuration: parsed once, when Envoy configures the plugin, into a
//! ready [`Settings`]. Every refusal names the field at fault.

use std::fmt;

use serde::Deserialize;

use crate::claims::ClaimsPolicy;
use crate::guard::Guard;
use crate::json;
use crate::keys::{parse_jwks, Key, KeySet};
use crate::remote::RemoteJwks;
use crate::rules::{Require, Rule, Rules};

/// Shortest secret that does not draw a warning (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The configuration as written, before any checking.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    secret: Option<String>,
    secret_env: Option<String>,
    jwks: Option<serde_json::Value>,
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    require_exp: Option<bool>,
    clock_skew_seconds: Option<u64>,
    user_claims: Option<Vec<String>>,
    user_header: Option<String>,
    realm: Option<String>,
    max_token_bytes: Option<usize>,
    allow_cors_preflight: Option<bool>,
    token_cache_entries: Option<usize>,
    rules: Option<Vec<RawRule>>,
    remote_jwks: Option<RawRemote>,
    better_auth: Option<RawBetterAuth>,
}

/// `remote_jwks`: a JWKS fetched through an Envoy cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    cluster: String,
    authority: Option<String>,
    path: String,
    #[serde(flatten)]
    timing: RawTiming,
}

/// `better_auth`: a Better Auth server, from which the JWKS location, the issuer and
/// the audience follow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBetterAuth {
    base_url: String,
    cluster: String,
    jwks_path: Option<String>,
    #[serde(flatten)]
    timing: RawTiming,
}

#[derive(Debug, Default, Deserialize)]
struct RawTiming {
    timeout_ms: Option<u64>,
    refresh_seconds: Option<u64>,
    min_refetch_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    require: Require,
}

/// A configuration that cannot be used, and which field is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as a path into the JSON: `rules[1].path`, `jwks.keys[0].x`.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration: `{}`: {}",
            self.field, self.reason
        )
    }
}

/// Everything a filter instance needs, ready to use.
#[derive(Debug)]
pub struct Settings {
    pub guard: Guard,
    /// Request header that carries the verified user id upstream.
    pub user_header: String,
    /// Realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// The remote JWKS, if one is configured.
    pub remote: Option<RemoteJwks>,
    /// Capacity of each worker's verified-token cache; 0 disables it.
    pub token_cache_entries: usize,
    /// Things worth a warning that do not stop the filter; they hold no secret.
    pub warnings: Vec<String>,
}

/// Default name of the environment variable holding the HS256 secret.
pub const DEFAULT_SECRET_ENV: &str = "BETTER_AUTH_SECRET";
/// Default clock skew tolerated on `exp` and `nbf`, in seconds.
pub const DEFAULT_CLOCK_SKEW: u64 = 60;
/// Default header carrying the user id upstream.
pub const DEFAULT_USER_HEADER: &str = "x-user-id";
/// Default realm of the challenge.
pub const DEFAULT_REALM: &str = "jwt-guard";
/// Default longest token accepted, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Longest token that may be configured (Envoy's default header limit is 60 KiB).
const MAX_TOKEN_BYTES_LIMIT: usize = 65_536;

/// Parses the plugin configuration. `bytes` may be empty (all defaults); `env` looks up
/// an environment variable of the VM.
pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let mut raw: Raw = if bytes.iter().all(u8::is_ascii_whitespace) {
        Raw::default()
    } else {
        serde_json::from_slice(bytes).map_err(json_error)?
    };
    let mut warnings = Vec::new();

    let (remote, implied) = remote(raw.remote_jwks.take(), raw.better_auth.take())?;
    let keys = keys(&raw, env, remote.is_some(), &mut warnings)?;
    let claims = ClaimsPolicy {
        issuers: non_empty_strings(raw.issuers.or_else(|| implied.clone()), "issuers")?,
        audiences: non_empty_strings(raw.audiences.or(implied), "audiences")?,
        require_exp: raw.require_exp.unwrap_or(true),
        clock_skew: clock_skew(raw.clock_skew_seconds)?,
        user_claims: user_claims(raw.user_claims)?,
    };
    let guard = Guard {
        rules: rules(raw.rules)?,
        keys,
        claims,
        max_token_bytes: max_token_bytes(raw.max_token_bytes)?,
        allow_cors_preflight: raw.allow_cors_preflight.unwrap_or(true),
    };

    Ok(Settings {
        guard,
        user_header: user_header(raw.user_header)?,
        realm: realm(raw.realm)?,
        remote,
        token_cache_entries: token_cache_entries(raw.token_cache_entries)?,
        warnings,
    })
}

/// Names the top-level field a serde error is about, when serde says.
fn json_error(e: serde_json::Error) -> ConfigError {
    let text = e.to_string();
    let field = text
        .split('`')
        .nth(1)
        .filter(|name| !name.is_empty())
        .filter(|_| text.starts_with("unknown field") || text.starts_with("missing field"))
        .unwrap_or("(configuration)")
        .to_owned();
    ConfigError::new(field, json::describe(&e))
}

fn keys(
    raw: &Raw,
    env: &dyn Fn(&str) -> Option<String>,
    remote: bool,
    warnings: &mut Vec<String>,
) -> Result<KeySet, ConfigError> {
    let mut keys = Vec::new();

    let secret = match (&raw.secret, &raw.secret_env) {
        (Some(secret), _) => Some(("secret", secret.clone())),
        (None, Some(name)) if name.is_empty() => None,
        (None, name) => {
            let name = name.as_deref().unwrap_or(DEFAULT_SECRET_ENV);
            env(name)
                .filter(|s| !s.is_empty())
                .map(|s| ("secret_env", s))
        }
    };
    if let Some((field, secret)) = secret {
        if secret.len() < MIN_SECRET_BYTES {
            warnings.push(format!(
                "`{field}`: the HS256 secret is shorter than {MIN_SECRET_BYTES} bytes"
            ));
        }
        keys.push(
            Key::from_secret(secret.as_bytes()).map_err(|e| ConfigError::new(field, e.reason))?,
        );
    }

    if let Some(document) = &raw.jwks {
        let parsed = parse_jwks(document)
            .map_err(|e| ConfigError::new(format!("jwks.{}", e.location), e.reason))?;
        warnings.extend(
            parsed
                .skipped
                .iter()
                .map(|note| format!("`jwks.{note}`: skipped")),
        );
        keys.extend(parsed.keys);
    }

    if keys.is_empty() && !remote {
        return Err(ConfigError::new(
            "secret",
            "no verification key: set `secret`, the environment variable named by \
             `secret_env` (default BETTER_AUTH_SECRET), `jwks`, `remote_jwks` or \
             `better_auth`",
        ));
    }
    Ok(KeySet::new(keys))
}

/// Default JWKS path of Better Auth's `jwt` plugin, under its base URL.
pub const BETTER_AUTH_JWKS_PATH: &str = "/api/auth/jwks";
/// Default time limit of a JWKS fetch.
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5000;
/// Default interval between JWKS refreshes.
pub const DEFAULT_REFRESH_SECONDS: u64 = 300;
/// Default least interval between fetches caused by unknown key ids.
pub const DEFAULT_MIN_REFETCH_SECONDS: u64 = 10;

/// The remote JWKS, and the issuer/audience list a Better Auth base URL implies.
fn remote(
    remote: Option<RawRemote>,
    better_auth: Option<RawBetterAuth>,
) -> Result<(Option<RemoteJwks>, Option<Vec<String>>), ConfigError> {
    match (remote, better_auth) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "remote_jwks",
            "set either `remote_jwks` or `better_auth`, not both",
        )),
        (None, None) => Ok((None, None)),
        (Some(r), None) => {
            let authority = r.authority.unwrap_or_else(|| r.cluster.clone());
            let remote = remote_jwks("remote_jwks", r.cluster, authority, r.path, r.timing)?;
            Ok((Some(remote), None))
        }
        (None, Some(b)) => {
            let (authority, prefix) = split_base_url(&b.base_url)
                .ok_or_else(|| ConfigError::new("better_auth.base_url", "not an http(s) URL"))?;
            let path = match b.jwks_path {
                Some(path) => path,
                None => format!("{prefix}{BETTER_AUTH_JWKS_PATH}"),
            };
            let remote = remote_jwks("better_auth", b.cluster, authority, path, b.timing)?;
            let issuer = b.base_url.trim_end_matches('/').to_owned();
            Ok((Some(remote), Some(vec![issuer])))
        }
    }
}

fn remote_jwks(
    field: &str,
    cluster: String,
    authority: String,
    path: String,
    timing: RawTiming,
) -> Result<RemoteJwks, ConfigError> {
    if cluster.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.cluster"),
            "must not be empty",
        ));
    }
    if authority.is_empty()
        || authority
            .bytes()
            .any(|b| b <= b' ' || b == b'/' || b >= 0x7f)
    {
        return Err(ConfigError::new(
            format!("{field}.authority"),
            "not a host[:port]",
        ));
    }
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        let name = if field == "better_auth" {
            "jwks_path"
        } else {
            "path"
        };
        return Err(ConfigError::new(
            format!("{field}.{name}"),
            "must be a path starting with '/'",
        ));
    }
    let timeout_ms = timing.timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS);
    if !(100..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(
            format!("{field}.timeout_ms"),
            "between 100 and 60000",
        ));
    }
    let refresh = timing.refresh_seconds.unwrap_or(DEFAULT_REFRESH_SECONDS);
    if !(1..=86_400).contains(&refresh) {
        return Err(ConfigError::new(
            format!("{field}.refresh_seconds"),
            "between 1 and 86400",
        ));
    }
    let min_refetch = timing
        .min_refetch_seconds
        .unwrap_or(DEFAULT_MIN_REFETCH_SECONDS);
    if min_refetch > 3600 {
        return Err(ConfigError::new(
            format!("{field}.min_refetch_seconds"),
            "at most 3600",
        ));
    }
    Ok(RemoteJwks {
        cluster,
        authority,
        path,
        timeout_ms,
        refresh_ms: refresh * 1000,
        min_refetch_ms: min_refetch * 1000,
    })
}

/// Splits `http(s)://host[:port][/prefix]` into the authority and the path prefix
/// (without a trailing `/`).
fn split_base_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let bad = |b: u8| b <= b' ' || b >= 0x7f || b"?#@\\".contains(&b);
    if authority.is_empty() || authority.bytes().any(bad) || path.bytes().any(bad) {
        return None;
    }
    Some((authority.to_owned(), path.trim_end_matches('/').to_owned()))
}

fn non_empty_strings(list: Option<Vec<String>>, field: &str) -> Result<Vec<String>, ConfigError> {
    let list = list.unwrap_or_default();
    if let Some(i) = list.iter().position(String::is_empty) {
        return Err(ConfigError::new(
            format!("{field}[{i}]"),
            "must not be empty",
        ));
    }
    Ok(list)
}

fn clock_skew(seconds: Option<u64>) -> Result<u64, ConfigError> {
    match seconds.unwrap_or(DEFAULT_CLOCK_SKEW) {
        s if s > 3600 => Err(ConfigError::new("clock_skew_seconds", "at most 3600")),
        s => Ok(s),
    }
}

fn user_claims(claims: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let claims = match claims {
        None => return Ok(vec!["sub".into(), "user_id".into()]),
        Some(c) => c,
    };
    if claims.is_empty() {
        return Err(ConfigError::new(
            "user_claims",
            "must name at least one claim",
        ));
    }
    non_empty_strings(Some(claims), "user_claims")
}

fn rules(rules: Option<Vec<RawRule>>) -> Result<Rules, ConfigError> {
    let Some(rules) = rules else {
        return Ok(Rules::default_rules());
    };
    let mut compiled = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        compiled.push(
            Rule::new(&rule.path, rule.require)
                .map_err(|e| ConfigError::new(format!("rules[{i}].path"), e.0))?,
        );
    }
    Ok(Rules::new(compiled))
}

fn max_token_bytes(value: Option<usize>) -> Result<usize, ConfigError> {
    match value.unwrap_or(DEFAULT_MAX_TOKEN_BYTES) {
        n if (16..=MAX_TOKEN_BYTES_LIMIT).contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            "max_token_bytes",
            "must be between 16 and 65536",
        )),
    }
}

/// Default capacity of the verified-token cache of each worker.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 1024;

fn token_cache_entries(value: Option<usize>) -> Result<usize, ConfigError> {
    match value.unwrap_or(DEFAULT_TOKEN_CACHE_ENTRIES) {
        n if n <= 1_000_000 => Ok(n),
        _ => Err(ConfigError::new("token_cache_entries", "at most 1000000")),
    }
}

fn user_header(name: Option<String>) -> Result<String, ConfigError> {
    let name = name
        .unwrap_or_else(|| DEFAULT_USER_HEADER.into())
        .to_ascii_lowercase();
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(ConfigError::new("user_header", "not a valid header name"));
    }
    if matches!(
        name.as_str(),
        "authorization" | "host" | "cookie" | "content-length"
    ) {
        return Err(ConfigError::new(
            "user_header",
            "may not replace a standard header",
        ));
    }
    Ok(name)
}

fn realm(realm: Option<String>) -> Result<String, ConfigError> {
    let realm = realm.unwrap_or_else(|| DEFAULT_REALM.into());
    if realm.is_empty()
        || !realm
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(ConfigError::new(
            "realm",
            "printable ASCII without quotes or backslashes",
        ));
    }
    Ok(realm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_str(json: &str) -> Result<Settings, ConfigError> {
        parse(json.as_bytes(), &no_env)
    }

    fn field_of(json: &str) -> String {
        parse_str(json).unwrap_err().field
    }

    #[test]
    fn inline_secret_gives_defaults() {
        let s = parse_str(&format!(r#"{{"secret":"{SECRET}"}}"#)).unwrap();
        assert_eq!(s.user_header, "x-user-id");
        assert_eq!(s.realm, "jwt-guard");
        assert_eq!(s.guard.claims.clock_skew, 60);
        assert!(s.guard.claims.require_exp);
        assert_eq!(s.guard.claims.user_claims, ["sub", "user_id"]);
        assert_eq!(s.guard.rules, Rules::default_rules());
        assert_eq!(s.guard.keys.len(), 1);
        assert_eq!(s.token_cache_entries, 1024);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn secret_from_default_env_variable() {
        let env = |name: &str| (name == "BETTER_AUTH_SECRET").then(|| SECRET.to_owned());
        let s = parse(b"", &env).unwrap();
        assert_eq!(s.guard.keys.len(), 1);
    }

    #[test]
    fn secret_from_named_env_variable() {
        let env = |name: &str| (name == "MY_SECRET").then(|| SECRET.to_owned());
        assert!(parse(br#"{"secret_env":"MY_SECRET"}"#, &env).is_ok());
        assert_eq!(parse(b"{}", &env).unwrap_err().field, "secret");
    }

    #[test]
    fn no_key_is_refused() {
        assert_eq!(field_of("{}"), "secret");
        assert_eq!(field_of(""), "secret");
        assert_eq!(field_of(r#"{"jwks":{"keys":[]}}"#), "secret");
    }

    #[test]
    fn short_secret_warns_without_printing_it() {
        let s = parse_str(r#"{"secret":"tiny-secret"}"#).unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(!s.warnings[0].contains("tiny-secret"));
    }

    #[test]
    fn unknown_field_is_named() {
        assert_eq!(
            field_of(&format!(r#"{{"secret":"{SECRET}","issuer":"x"}}"#)),
            "issuer"
        );
    }

    #[test]
    fn misplaced_secret_is_not_echoed() {
        let err = parse_str(r#"{"issuers": "my-s3cret-that-belongs-elsewhere"}"#).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn empty_unknown_field_still_names_something() {
        assert_eq!(field_of(r#"{"": 1}"#), "(configuration)");
    }

    #[test]
    fn bad_json_is_refused() {
        assert!(parse_str("{not json").is_err());
        assert!(parse_str("[]").is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (r#""clock_skew_seconds":-1"#, "(configuration)"),
            (r#""clock_skew_seconds":7200"#, "clock_skew_seconds"),
            (r#""user_claims":[]"#, "user_claims"),
            (r#""user_claims":["sub",""]"#, "user_claims[1]"),
            (r#""issuers":[""]"#, "issuers[0]"),
            (r#""user_header":"x user""#, "user_header"),
            (r#""user_header":"Authorization""#, "user_header"),
            (r#""realm":"a\"b""#, "realm"),
            (r#""max_token_bytes":1"#, "max_token_bytes"),
            (r#""token_cache_entries":2000000"#, "token_cache_entries"),
            (
                r#""rules":[{"path":"/api/{u}","require":"token"}]"#,
                "rules[0].path",
            ),
            (
                r#""rules":[{"path":"/x","require":"admin"}]"#,
                "(configuration)",
            ),
            (
                r#""jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#,
                "jwks.keys[0].x",
            ),
        ];
        for (field, expected) in cases {
            let json = format!(r#"{{"secret":"{SECRET}",{field}}}"#);
            assert_eq!(field_of(&json), expected, "{json}");
        }
    }

    #[test]
    fn better_auth_implies_jwks_issuer_and_audience() {
        let s =
            parse_str(r#"{"better_auth":{"base_url":"https://auth.example.com/","cluster":"ba"}}"#)
                .unwrap();
        let remote = s.remote.unwrap();
        assert_eq!(remote.cluster, "ba");
        assert_eq!(remote.authority, "auth.example.com");
        assert_eq!(remote.path, "/api/auth/jwks");
        assert_eq!(remote.timeout_ms, 5000);
        assert_eq!(remote.refresh_ms, 300_000);
        assert_eq!(s.guard.claims.issuers, ["https://auth.example.com"]);
        assert_eq!(s.guard.claims.audiences, ["https://auth.example.com"]);
        assert!(s.guard.keys.is_empty());
    }

    #[test]
    fn better_auth_overrides() {
        let s = parse_str(
            r#"{"better_auth":{"base_url":"http://127.0.0.1:3000/auth","cluster":"ba",
                "refresh_seconds":60,"timeout_ms":800},
                "issuers":["other"],"audiences":[]}"#,
        )
        .unwrap();
        let remote = s.remote.unwrap();
        assert_eq!(remote.authority, "127.0.0.1:3000");
        assert_eq!(remote.path, "/auth/api/auth/jwks");
        assert_eq!((remote.refresh_ms, remote.timeout_ms), (60_000, 800));
        assert_eq!(s.guard.claims.issuers, ["other"]);
        assert!(s.guard.claims.audiences.is_empty());
    }

    #[test]
    fn remote_jwks_fields_are_checked() {
        let ok = r#"{"remote_jwks":{"cluster":"idp","path":"/jwks.json"}}"#;
        assert_eq!(parse_str(ok).unwrap().remote.unwrap().authority, "idp");
        let cases = [
            (
                r#"{"remote_jwks":{"cluster":"idp","path":"jwks"}}"#,
                "remote_jwks.path",
            ),
            (
                r#"{"remote_jwks":{"cluster":"","path":"/j"}}"#,
                "remote_jwks.cluster",
            ),
            (
                r#"{"remote_jwks":{"cluster":"i","path":"/j","timeout_ms":1}}"#,
                "remote_jwks.timeout_ms",
            ),
            (
                r#"{"remote_jwks":{"cluster":"i","path":"/j","refresh_seconds":0}}"#,
                "remote_jwks.refresh_seconds",
            ),
            (
                r#"{"better_auth":{"base_url":"ftp://x","cluster":"c"}}"#,
                "better_auth.base_url",
            ),
            (
                r#"{"better_auth":{"base_url":"http://x","cluster":"c"},
                    "remote_jwks":{"cluster":"i","path":"/j"}}"#,
                "remote_jwks",
            ),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(json), field, "{json}");
        }
    }

    #[test]
    fn user_header_is_lowercased() {
        let s = parse_str(&format!(
            r#"{{"secret":"{SECRET}","user_header":"X-Auth-User"}}"#
        ));
        assert_eq!(s.unwrap().user_header, "x-auth-user");
    }

    #[test]
    fn empty_secret_env_disables_env_lookup() {
        let env = |_: &str| Some(SECRET.to_owned());
        assert_eq!(
            parse(br#"{"secret_env":""}"#, &env).unwrap_err().field,
            "secret"
        );
    }

    #[test]
    fn error_display_names_field_without_secret() {
        let err = parse_str(r#"{"secret":""}"#).unwrap_err();
        assert_eq!(err.field, "secret");
        assert!(err.to_string().contains("`secret`"));
    }
}
