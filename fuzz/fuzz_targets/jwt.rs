//! Bearer tokens (header and payload JSON, base64, signatures) through the
//! verifier with an HS256 and an RS256 realm: never panics; every refusal
//! is `invalid_token` or `token_expired`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tenancy_core::config::{JwtAlgorithm, RealmConfig, RealmKeyConfig, TenancyConfig};
use tenancy_core::credential::JwtVerifier;

const RSA_PUBLIC: &str =
    include_str!("../../tenancy-core/src/credential/jwt/testdata/rsa_public.pem");

fn verifier() -> &'static (JwtVerifier, tokio::runtime::Runtime) {
    static VERIFIER: OnceLock<(JwtVerifier, tokio::runtime::Runtime)> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let mut rsa = RealmConfig::hs256(
            "rsa",
            "https://id.example.com/rsa",
            "0123456789abcdef0123456789abcdef",
        );
        rsa.keys = vec![RealmKeyConfig::pem(JwtAlgorithm::RS256, RSA_PUBLIC)];
        let config = TenancyConfig::builder()
            .jwt_hs256("tenancy-dev", "0123456789abcdef0123456789abcdef")
            .realm(rsa)
            .build()
            .expect("config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        (
            JwtVerifier::from_config(&config).expect("verifier"),
            runtime,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let (verifier, runtime) = verifier();
    if let Err(e) = runtime.block_on(verifier.verify(&token)) {
        assert!(
            matches!(e.code(), "invalid_token" | "token_expired"),
            "{}",
            e.code()
        );
    }
});
