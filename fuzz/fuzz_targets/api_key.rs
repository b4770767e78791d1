//! The API key format check and digest on any presented string, plain and
//! peppered: never panics; an accepted key has the documented shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::credential::ApiKeyHasher;
use tenancy_core::secret::Secret;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let plain = ApiKeyHasher::new("tnk".to_owned(), None);
    let pepper = Secret::new("fuzz-pepper-0123456789");
    let peppered = ApiKeyHasher::new("tnk".to_owned(), Some(&pepper));
    let a = plain.digest(&text);
    let b = peppered.digest(&text);
    assert_eq!(
        a.is_ok(),
        b.is_ok(),
        "the format check does not depend on the pepper"
    );
    if a.is_ok() {
        assert!(text.starts_with("tnk_"));
        assert!(text[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
});
