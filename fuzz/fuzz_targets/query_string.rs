//! Query strings of the reference server (decoding, `limit`, times): never
//! panics; an accepted limit is in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_examples::app::{parse_limit, parse_query, parse_time};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let Ok(pairs) = parse_query::<Vec<(String, String)>>(&query) else {
        return;
    };
    for (name, value) in &pairs {
        if let Ok(limit) = parse_limit(Some(value), 100, 1000) {
            assert!((1..=1000).contains(&limit));
        }
        let _ = parse_time(name, Some(value));
    }
});
