//! Turning a request target into the one sequence of path segments it can mean.
//!
//! The upstream will percent-decode the path once and split it on `/`. A path whose
//! meaning depends on anything more (dot segments, encoded separators, doubled
//! slashes, `;` parameters, a second decoding) is refused here, so the segments this
//! filter matches are the segments the upstream serves.

use std::borrow::Cow;

use crate::denial::Denial;

/// One decoded path segment: borrowed from the request when it held no `%` escape.
pub type Segment<'a> = Cow<'a, [u8]>;

/// The decoded segments of a request path, without the query string.
///
/// The root `/` has no segments, and a single trailing `/` is not a segment: `/a/b/`
/// and `/a/b` both give `["a", "b"]`.
pub fn segments(target: &[u8]) -> Result<Vec<Segment<'_>>, Denial> {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(end) => &target[..end],
        None => target,
    };
    let Some(path) = path.strip_prefix(b"/") else {
        // Absolute-form or asterisk-form targets never reach the filter unconverted;
        // if one does, refuse it rather than guess.
        return Err(Denial::AmbiguousPath);
    };
    let path = path.strip_suffix(b"/").unwrap_or(path);
    if path.is_empty() {
        return Ok(Vec::new());
    }
    // Room for the usual depth up front, rather than growing the vector as it fills.
    let mut segments = Vec::with_capacity(8);
    for raw in path.split(|&b| b == b'/') {
        segments.push(segment(raw)?);
    }
    Ok(segments)
}

/// Decodes one raw segment exactly once, refusing anything with a second meaning.
fn segment(raw: &[u8]) -> Result<Segment<'_>, Denial> {
    if raw.is_empty() || raw.iter().any(|&b| refused_raw(b)) {
        return Err(Denial::AmbiguousPath);
    }
    if !raw.contains(&b'%') {
        return checked(raw).map(Cow::Borrowed);
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            decoded.push(b);
            continue;
        }
        let (Some(&hi), Some(&lo)) = (bytes.next(), bytes.next()) else {
            return Err(Denial::AmbiguousPath);
        };
        let byte = (hex(hi)? << 4) | hex(lo)?;
        if refused_decoded(byte) {
            return Err(Denial::AmbiguousPath);
        }
        decoded.push(byte);
    }
    checked(&decoded)?;
    Ok(Cow::Owned(decoded))
}

/// Refuses a decoded segment that is a dot segment or not UTF-8.
fn checked(decoded: &[u8]) -> Result<&[u8], Denial> {
    if decoded == b"." || decoded == b".." || std::str::from_utf8(decoded).is_err() {
        return Err(Denial::AmbiguousPath);
    }
    Ok(decoded)
}

/// Bytes refused as they stand in the raw path: `\`, `;`, `#`, controls and spaces.
fn refused_raw(b: u8) -> bool {
    matches!(b, b'\\' | b';' | b'#') || b <= b' ' || b == 0x7f
}

/// Bytes refused when percent-encoded: separators, `%` itself (double encoding),
/// `;`, and controls.
fn refused_decoded(b: u8) -> bool {
    matches!(b, b'/' | b'\\' | b';' | b'%') || b < b' ' || b == 0x7f
}

fn hex(digit: u8) -> Result<u8, Denial> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(Denial::AmbiguousPath),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Result<Vec<String>, Denial> {
        segments(path.as_bytes()).map(|s| {
            s.into_iter()
                .map(|v| String::from_utf8(v.into_owned()).unwrap())
                .collect()
        })
    }

    #[test]
    fn plain_path_splits() {
        assert_eq!(
            segs("/api/alice/docs"),
            Ok(vec!["api".into(), "alice".into(), "docs".into()])
        );
    }

    #[test]
    fn root_and_trailing_slash() {
        assert_eq!(segs("/"), Ok(vec![]));
        assert_eq!(segs("/api/alice/"), segs("/api/alice"));
    }

    #[test]
    fn query_is_ignored() {
        assert_eq!(segs("/api/alice?u=/api/bob/..;%2F"), segs("/api/alice"));
        assert_eq!(segs("/?x"), Ok(vec![]));
    }

    #[test]
    fn percent_decoding_happens_once() {
        assert_eq!(segs("/api/%61lice"), segs("/api/alice"));
        assert_eq!(segs("/%41pi/x"), Ok(vec!["Api".into(), "x".into()]));
        assert_eq!(
            segs("/a/%E2%82%AC"),
            Ok(vec!["a".into(), "\u{20ac}".into()])
        );
    }

    #[test]
    fn dot_segments_raw_or_encoded_are_ambiguous() {
        for path in [
            "/api/alice/../bob",
            "/api/./bob",
            "/api/%2e%2e/bob",
            "/api/%2E%2E/bob",
            "/api/.%2e/bob",
            "/api/%2e/bob",
            "/..",
            "/api/bob/..",
        ] {
            assert_eq!(segs(path), Err(Denial::AmbiguousPath), "{path}");
        }
    }

    #[test]
    fn encoded_separators_and_controls_are_ambiguous() {
        for path in [
            "/api/alice%2F..%2Fbob",
            "/api/alice%2fx",
            "/api/alice%5Cbob",
            "/api/alice\\bob",
            "/api/alice%00",
            "/api/alice%0a",
            "/api/%2561lice",
            "/api/alice%3Bx",
        ] {
            assert_eq!(segs(path), Err(Denial::AmbiguousPath), "{path}");
        }
    }

    #[test]
    fn empty_segments_and_params_are_ambiguous() {
        for path in [
            "//api/bob",
            "/api//bob",
            "/api/bob//",
            "/api;x/bob",
            "/api/bob;a=b/x",
        ] {
            assert_eq!(segs(path), Err(Denial::AmbiguousPath), "{path}");
        }
    }

    #[test]
    fn bad_escapes_and_fragments_are_ambiguous() {
        for path in ["/api/%", "/api/%4", "/api/%zz", "/api/a#b", "/api/a b"] {
            assert_eq!(segs(path), Err(Denial::AmbiguousPath), "{path}");
        }
    }

    #[test]
    fn overlong_or_invalid_utf8_is_ambiguous() {
        assert_eq!(segs("/api/%c0%ae%c0%ae/bob"), Err(Denial::AmbiguousPath));
        assert_eq!(segments(b"/api/\xff"), Err(Denial::AmbiguousPath));
    }

    #[test]
    fn non_origin_form_is_ambiguous() {
        for target in ["http://host/api/bob", "*", "", "api/bob"] {
            assert_eq!(segs(target), Err(Denial::AmbiguousPath), "{target}");
        }
    }
}
