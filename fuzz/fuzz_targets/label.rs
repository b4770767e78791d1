//! `Label::new` on any string: never panics; what it accepts cannot break
//! out of a store key or a query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::label::Label;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(label) = Label::new(text.as_ref()) {
        assert!(
            label
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
        );
    }
});
