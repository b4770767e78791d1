//! JWK sets at and past the cap of 64 keys: the first byte says how many
//! copies of the key the rest holds; a set of more than 64 entries is
//! refused whole, and a set that is read yields at most 64 keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Most keys a JWK set may hold.
const CAP: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&count, key)) = data.split_first() else {
        return;
    };
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    if serde_json::from_str::<serde_json::Value>(key).is_err() {
        return;
    }
    let copies = usize::from(count) % (CAP + 16);
    let set = format!("{{\"keys\":[{}]}}", vec![key; copies].join(","));
    match tenancy_core::credential::parse_jwk_set_for_fuzzing(set.as_bytes()) {
        Ok(keys) => assert!(keys <= copies && copies <= CAP, "{copies} entries gave {keys} keys"),
        Err(_) => {}
    }
    if copies > CAP {
        assert!(tenancy_core::credential::parse_jwk_set_for_fuzzing(set.as_bytes()).is_err());
    }
});
