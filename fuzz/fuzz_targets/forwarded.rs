//! `Forwarded` and `X-Forwarded-For` headers from a trusted proxy: never
//! panic, always name a client (the proxy itself when the header names
//! none that can be read), and never an IPv4 address the header does not
//! hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peer: std::net::IpAddr = [10, 0, 0, 1].into();
    let text = String::from_utf8_lossy(data);
    for client in tenancy_core::client_addr::client_addrs_for_fuzzing(data) {
        let client = client.expect("a trusted peer always yields a client");
        if client != peer && client.is_ipv4() {
            assert!(
                text.contains(&client.to_string()),
                "{client} is not in {text:?}"
            );
        }
    }
});
