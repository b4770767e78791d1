//! A tenant-brought realm as `PATCH /api/v1/tenants/{id}` takes it (JSON):
//! never panics; what parses and validates reads back the same after a
//! round trip through JSON, claim paths included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenancy_core::credential::TenantRealm;

fuzz_target!(|data: &[u8]| {
    let Ok(realm) = serde_json::from_slice::<TenantRealm>(data) else {
        return;
    };
    if realm.validate().is_ok() {
        let json = serde_json::to_vec(&realm).expect("a realm serializes");
        let again: TenantRealm = serde_json::from_slice(&json).expect("and reads back");
        assert_eq!(again, realm);
        assert!(again.validate().is_ok());
    }
});
