//! Any bytes as the plugin configuration: accepted or refused naming a field, never a
//! panic.
#![no_main]

use jwt_guard::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = config::parse(data, &|_| None) {
        assert!(!error.field.is_empty());
    }
});
