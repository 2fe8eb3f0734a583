//! Finding the bearer token in a request's `Authorization` headers (RFC 6750 §2.1).

use crate::denial::Denial;

/// Returns the single bearer token carried by `values`, the raw values of every
/// `Authorization` header on the request.
///
/// The scheme is matched without regard to case and may be followed by one or more
/// spaces; the token must be a non-empty `token68`. Anything else is refused: no header
/// (`MissingToken`), several headers, another scheme, an empty token or stray
/// characters such as tabs or commas (`InvalidAuthorization`), or a token longer than
/// `max_len` bytes (`TokenTooLarge`).
pub fn bearer_token<'a>(values: &[&'a [u8]], max_len: usize) -> Result<&'a str, Denial> {
    token68(bearer_credentials(values)?, max_len)
}

/// The first half of [`bearer_token`]: the bytes after the `Bearer` scheme of the single
/// `Authorization` header, not yet checked to be a token. Refuses no header
/// (`MissingToken`), several headers or another scheme (`InvalidAuthorization`).
pub fn bearer_credentials<'a>(values: &[&'a [u8]]) -> Result<&'a [u8], Denial> {
    let value = match values {
        [] => return Err(Denial::MissingToken),
        [value] => trim_ows(value),
        _ => return Err(Denial::InvalidAuthorization),
    };

    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ').unwrap_or(0));
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Denial::InvalidAuthorization);
    }
    Ok(trim_leading_spaces(rest))
}

/// The second half of [`bearer_token`]: `credentials` as a token, if they are a
/// non-empty `token68` (else `InvalidAuthorization`) of at most `max_len` bytes (else
/// `TokenTooLarge`).
pub fn token68(credentials: &[u8], max_len: usize) -> Result<&str, Denial> {
    if credentials.is_empty() || !is_token68(credentials) {
        return Err(Denial::InvalidAuthorization);
    }
    if credentials.len() > max_len {
        return Err(Denial::TokenTooLarge);
    }

    // token68 is ASCII, so this cannot fail; failing closed all the same.
    std::str::from_utf8(credentials).map_err(|_| Denial::InvalidAuthorization)
}

/// Strips the optional whitespace (SP, HTAB) HTTP allows around a field value.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

fn trim_leading_spaces(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    &value[start..]
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_token68(token: &[u8]) -> bool {
    let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // What follows `body_end` is all `=` by construction.
    let body = &token[..body_end];
    !body.is_empty() && body.iter().all(|&b| TOKEN68_BODY[usize::from(b)])
}

/// The bytes of a token68 before its padding, as a table: tokens are hundreds of bytes
/// and every request's is checked, so one load per byte instead of a chain of ranges.
const TOKEN68_BODY: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < table.len() {
        table[b] = matches!(
            b as u8,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/'
        );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(values: &[&str]) -> Result<String, Denial> {
        let raw: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        bearer_token(&raw, 64).map(str::to_owned)
    }

    #[test]
    fn bearer_plain_returns_token() {
        assert_eq!(extract(&["Bearer a.b.c"]), Ok("a.b.c".into()));
    }

    #[test]
    fn bearer_scheme_any_case_returns_token() {
        assert_eq!(extract(&["bEaReR a.b.c"]), Ok("a.b.c".into()));
        assert_eq!(extract(&["BEARER a.b.c"]), Ok("a.b.c".into()));
    }

    #[test]
    fn bearer_several_spaces_and_surrounding_ows_returns_token() {
        assert_eq!(extract(&["  Bearer   a.b.c \t"]), Ok("a.b.c".into()));
    }

    #[test]
    fn no_header_is_missing_token() {
        assert_eq!(extract(&[]), Err(Denial::MissingToken));
    }

    #[test]
    fn two_headers_are_invalid() {
        assert_eq!(
            extract(&["Bearer a.b.c", "Bearer d.e.f"]),
            Err(Denial::InvalidAuthorization)
        );
    }

    #[test]
    fn merged_headers_are_invalid() {
        assert_eq!(
            extract(&["Bearer a.b.c, Bearer d.e.f"]),
            Err(Denial::InvalidAuthorization)
        );
    }

    #[test]
    fn other_schemes_are_invalid() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Token a.b.c",
            "Bearera.b.c",
            "a.b.c",
            "Bearer",
        ] {
            assert_eq!(
                extract(&[value]),
                Err(Denial::InvalidAuthorization),
                "{value}"
            );
        }
    }

    #[test]
    fn empty_token_is_invalid() {
        assert_eq!(extract(&["Bearer "]), Err(Denial::InvalidAuthorization));
        assert_eq!(extract(&["Bearer    "]), Err(Denial::InvalidAuthorization));
        assert_eq!(extract(&[""]), Err(Denial::InvalidAuthorization));
    }

    #[test]
    fn tab_separator_is_invalid() {
        assert_eq!(
            extract(&["Bearer\ta.b.c"]),
            Err(Denial::InvalidAuthorization)
        );
    }

    #[test]
    fn inner_whitespace_or_bad_bytes_are_invalid() {
        for value in [
            "Bearer a.b c",
            "Bearer a.b\tc",
            "Bearer a.\u{e9}.c",
            "Bearer =abc",
        ] {
            assert_eq!(
                extract(&[value]),
                Err(Denial::InvalidAuthorization),
                "{value}"
            );
        }
        assert_eq!(
            bearer_token(&[b"Bearer a.\xff.c"], 64),
            Err(Denial::InvalidAuthorization)
        );
    }

    #[test]
    fn every_byte_is_judged_by_the_token68_grammar() {
        let allowed = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
        for b in 0..=u8::MAX {
            let value = [&b"Bearer a"[..], &[b], b"z=="].concat();
            let expected = allowed.contains(&b);
            assert_eq!(
                bearer_token(&[&value], 64).is_ok(),
                expected,
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn long_token_is_too_large() {
        let token = format!("Bearer {}", "a".repeat(65));
        assert_eq!(extract(&[&token]), Err(Denial::TokenTooLarge));
    }
}
