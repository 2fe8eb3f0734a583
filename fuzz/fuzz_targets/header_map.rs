//! Any bytes as Envoy's serialized header map: the reader never panics, and whatever it
//! accepts serializes back to exactly the same bytes (so it skips and invents nothing).
#![no_main]

use jwt_guard::header_map;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = header_map::pairs(data) else {
        return;
    };
    if data.is_empty() {
        assert!(pairs.is_empty());
        return;
    }
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (name, value) in &pairs {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in &pairs {
        out.extend(*name);
        out.push(0);
        out.extend(*value);
        out.push(0);
    }
    assert_eq!(out, data);
});
