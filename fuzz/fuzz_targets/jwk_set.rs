//! JWK sets as a `jwks_file` or `jwks_url` delivers them: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tenancy_core::credential::parse_jwk_set_for_fuzzing(data);
});
