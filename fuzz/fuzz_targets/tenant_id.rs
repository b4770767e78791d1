//! `TenantId::new` on any string: never panics; what it accepts is a slug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::tenant::TenantId;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = TenantId::new(text.as_ref()) {
        let s = id.as_str();
        assert!((1..=63).contains(&s.len()));
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert!(!s.starts_with('-') && !s.ends_with('-'));
    }
});
