//! Describing serde_json errors without the offending value: a misplaced secret or key
//! must not reach the log through an "invalid type: string \"…\"" message.

/// The error's message, with the value of an "invalid type/value" error left out.
pub fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if !(text.starts_with("invalid type") || text.starts_with("invalid value")) {
        return text;
    }
    // "invalid type: string \"s3cret\", expected u64 at line 1 column 9": keep the kind
    // of value and everything from the last ", expected" (the value comes before it).
    let cut = text.rfind(", expected").unwrap_or(text.len());
    let kind_end = text[..cut].find(['"', '`']).unwrap_or(cut);
    let kind = text[..kind_end].trim_end().trim_end_matches(',');
    format!("{kind}{}", &text[cut..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        describe(&serde_json::from_str::<T>(json).unwrap_err())
    }

    #[test]
    fn invalid_type_leaves_out_the_value() {
        let text = error_of::<Vec<String>>(r#""s3cret-value, expected nothing""#);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.starts_with("invalid type: string, expected a sequence"),
            "{text}"
        );
    }

    #[test]
    fn invalid_value_leaves_out_the_value() {
        let text = error_of::<u8>("123456789");
        assert!(!text.contains("123456789"), "{text}");
        assert!(text.contains("expected u8"), "{text}");
    }

    #[test]
    fn syntax_errors_keep_their_place() {
        let eof = error_of::<Vec<u8>>("[1,");
        assert_eq!(eof, "EOF while parsing a value at line 1 column 3");
        let map = error_of::<u8>("{}");
        assert_eq!(map, "invalid type: map, expected u8 at line 1 column 0");
    }
}
