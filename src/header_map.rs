//! Reads the header map Envoy hands a Wasm filter as one buffer (the proxy-wasm ABI's
//! serialized pairs) by borrowing each name and value from it.
//!
//! The SDK's reader copies every name and value into its own allocation; inside Envoy's
//! V8 those copies were a measurable share of the filter's fixed cost per request
//! (bench/README.md), and the filter needs three headers at most.

/// The buffer is not a serialized header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A header's name and value, borrowed from the serialized map.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// The name-value pairs of a serialized map, in order.
///
/// Layout: a little-endian `u32` count; per pair a `u32` name length and a `u32` value
/// length; then per pair the name, a NUL, the value, a NUL. An empty buffer is an empty
/// map. Anything else that does not add up exactly is [`Malformed`].
pub fn pairs(bytes: &[u8]) -> Result<Vec<Pair<'_>>, Malformed> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).map_err(|_| Malformed)?;
    let sizes_end = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .filter(|end| *end <= bytes.len())
        .ok_or(Malformed)?;
    let mut pairs = Vec::with_capacity(count);
    let mut at = sizes_end;
    for i in 0..count {
        let name_len = read_len(bytes, 4 + i * 8)?;
        let value_len = read_len(bytes, 8 + i * 8)?;
        let name = field(bytes, &mut at, name_len)?;
        let value = field(bytes, &mut at, value_len)?;
        pairs.push((name, value));
    }
    if at != bytes.len() {
        return Err(Malformed);
    }
    Ok(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, Malformed> {
    let word = bytes.get(at..at + 4).ok_or(Malformed)?;
    let word: [u8; 4] = word.try_into().map_err(|_| Malformed)?;
    Ok(u32::from_le_bytes(word))
}

fn read_len(bytes: &[u8], at: usize) -> Result<usize, Malformed> {
    usize::try_from(read_u32(bytes, at)?).map_err(|_| Malformed)
}

/// The `len` bytes at `*at`, which must be followed by a NUL; moves `*at` past both.
fn field<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], Malformed> {
    let end = at.checked_add(len).ok_or(Malformed)?;
    let value = bytes.get(*at..end).ok_or(Malformed)?;
    if bytes.get(end) != Some(&0) {
        return Err(Malformed);
    }
    *at = end + 1;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes pairs the way the host does.
    fn serialize(pairs: &[Pair<'_>]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend(*name);
            out.push(0);
            out.extend(*value);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_pairs_in_order_with_any_bytes() {
        let given: Vec<Pair<'_>> = vec![
            (b":path", b"/api/alice"),
            (b"authorization", b"Bearer a"),
            (b"authorization", b"Bearer b"),
            (b"x-empty", b""),
            (b"x-bytes", b"\xff\x00\x01"),
        ];
        assert_eq!(pairs(&serialize(&given)), Ok(given));
    }

    #[test]
    fn empty_buffer_and_zero_count_are_empty_maps() {
        assert_eq!(pairs(b""), Ok(vec![]));
        assert_eq!(pairs(&0u32.to_le_bytes()), Ok(vec![]));
    }

    #[test]
    fn refuses_anything_that_does_not_add_up() {
        let good = serialize(&[(b"a", b"bc"), (b"d", b"")]);
        // Every truncation, and trailing bytes.
        for len in 1..good.len() {
            assert_eq!(pairs(&good[..len]), Err(Malformed), "truncated to {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(pairs(&longer), Err(Malformed));
        // A missing NUL terminator.
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(pairs(&no_nul), Err(Malformed));
        // Lengths or a count far beyond the buffer.
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs(&huge), Err(Malformed));
        let mut count = good;
        count[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs(&count), Err(Malformed));
    }
}
