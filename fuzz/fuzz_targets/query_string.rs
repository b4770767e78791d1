//! Query strings of the reference server (percent-decoding, `limit`,
//! times): never panics; an accepted limit is in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_examples::app::{parse_limit, parse_time, query_param};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    for name in ["actor", "action", "name", "type", "tenant_id"] {
        let _ = query_param(&query, name);
    }
    if let Ok(limit) = parse_limit(&query, 100, 1000) {
        assert!((1..=1000).contains(&limit));
    }
    let _ = parse_time(&query, "since");
});
