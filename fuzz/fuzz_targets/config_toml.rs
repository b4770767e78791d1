//! Configuration TOML: never panics; what it accepts validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::config::TenancyConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = TenancyConfig::from_toml_str(&text) {
        assert!(config.validate().is_ok());
    }
});
