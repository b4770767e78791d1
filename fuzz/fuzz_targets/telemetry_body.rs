//! Telemetry bodies of the reference server: never panics; an accepted body
//! is within the documented bounds and its counts add up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_examples::app::{
    MAX_EVENT_LABELS, MAX_EVENT_NAME_BYTES, MAX_EVENTS_PER_CALL, parse_telemetry,
};

fuzz_target!(|data: &[u8]| {
    if let Ok((events, by_type)) = parse_telemetry(data) {
        assert!((1..=MAX_EVENTS_PER_CALL).contains(&events.len()));
        assert_eq!(by_type.values().sum::<u64>(), events.len() as u64);
        for e in &events {
            assert!(e.name.len() <= MAX_EVENT_NAME_BYTES && e.labels.len() <= MAX_EVENT_LABELS);
            assert!(e.value.is_finite());
        }
    }
});
