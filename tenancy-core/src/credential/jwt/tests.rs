use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::remote::JwksTiming;
use super::*;
use crate::config::{JwtAlgorithm, RealmConfig, RealmKeyConfig, TenancyConfig};
use crate::secret::Secret;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";
const ISS: &str = "https://id.example.com/realms/staff";
const ISS_B: &str = "https://id.example.com/realms/partners";

const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
const RSA2_PRIVATE: &str = include_str!("testdata/rsa2_private.pem");
const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec_public.pem");
const ED_PRIVATE: &str = include_str!("testdata/ed_private.pem");
const ED_PUBLIC: &str = include_str!("testdata/ed_public.pem");

fn now() -> i64 {
    unix_now()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Good claims for the shared realm `ISS`.
fn claims() -> Value {
    json!({
        "sub": "alice",
        "tenant_id": "acme",
        "role": "admin",
        "iss": ISS,
        "iat": now(),
        "exp": now() + 600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn encoding_key(alg: Algorithm, pem: &str) -> EncodingKey {
    match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_secret(pem.as_bytes()),
    }
}

fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, key)).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, SECRET, None, claims)
}

/// A token with a hand-written header, signed with HMAC-SHA256 over `key`.
fn hmac_signed_raw(header: &Value, claims: &Value, key: &[u8]) -> String {
    hmac_signed_text(&header.to_string(), &claims.to_string(), key)
}

fn hmac_signed_text(header: &str, claims: &str, key: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn shared() -> RealmConfig {
    RealmConfig::hs256("staff", ISS, SECRET)
}

fn pem_realm(alg: JwtAlgorithm, pem: &str) -> RealmConfig {
    let mut realm = shared();
    realm.keys = vec![RealmKeyConfig::pem(alg, pem)];
    realm
}

fn config(realms: impl IntoIterator<Item = RealmConfig>) -> TenancyConfig {
    realms
        .into_iter()
        .fold(TenancyConfig::builder(), |b, r| b.realm(r))
        .build()
        .unwrap()
}

fn verifier(realms: impl IntoIterator<Item = RealmConfig>) -> JwtVerifier {
    JwtVerifier::from_config(&config(realms)).unwrap()
}

fn rejection(result: Result<VerifiedToken, TenancyError>) -> TokenRejection {
    let err = result.expect_err("the token should be refused");
    assert_eq!(err.code(), "invalid_token", "{err:?}");
    assert_eq!(err.status(), 401);
    match err.kind() {
        ErrorKind::InvalidToken(r) => *r,
        other => panic!("not invalid_token: {other:?}"),
    }
}

fn expired(result: Result<VerifiedToken, TenancyError>) {
    let err = result.expect_err("the token should be refused");
    assert_eq!(err.code(), "token_expired", "{err:?}");
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn hs256_happy_path() {
    let v = verifier([shared()]);
    let exp = now() + 600;
    let token = hs(&with(claims(), "exp", json!(exp)));
    let t = v.verify(&token).await.unwrap();
    assert_eq!(&*t.realm, "staff");
    assert_eq!(&*t.subject, "alice");
    assert_eq!(t.tenant.as_str(), "acme");
    assert_eq!(t.role, Role::Admin);
    assert_eq!(t.expires_at, exp);
    assert!(!t.services);
}

#[tokio::test]
async fn claims_read_by_the_verifier_round_trip_through_jwt_claims() {
    let v = verifier([shared()]);
    let claims = JwtClaims::new(ISS, "carol", "operator", Duration::from_secs(60))
        .with_tenant("acme")
        .with_audience("api")
        .with_audience("web");
    let token = encode_hs256(&Secret::new(SECRET), &claims).unwrap();
    let t = v.verify(&token).await.unwrap();
    assert_eq!((t.role, &*t.subject), (Role::Operator, "carol"));
    let read: JwtClaims = jsonwebtoken::dangerous::insecure_decode(&token)
        .unwrap()
        .claims;
    assert_eq!(read, claims);
}

#[tokio::test]
async fn large_payloads_and_fractional_dates_verify() {
    let v = verifier([shared()]);
    let padded = with(claims(), "pad", json!("x".repeat(3000)));
    assert!(v.verify(&hs(&padded)).await.is_ok());
    let fractional = with(claims(), "exp", json!(now() as f64 + 600.5));
    assert!(v.verify(&hs(&fractional)).await.is_ok());
    // Escaped JSON strings are read like plain ones.
    let escaped_claims = format!(
        r#"{{"sub":"alice","tenant_id":"acme","role":"admin","iss":"https:\/\/id.example.com\/realms\/staff","exp":{}}}"#,
        now() + 600
    );
    let token = hmac_signed_text(
        r#"{"alg":"HS\u0032\u00356"}"#,
        &escaped_claims,
        SECRET.as_bytes(),
    );
    assert!(v.verify(&token).await.is_ok());
}

#[tokio::test]
async fn alg_none_is_refused() {
    let v = verifier([shared()]);
    for signature in ["", "c2ln"] {
        let token = format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(claims().to_string())
        );
        assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
    }
    for alg in ["None", "NONE", "PS256", "HS1", ""] {
        let token = hmac_signed_raw(&json!({ "alg": alg }), &claims(), SECRET.as_bytes());
        assert_eq!(
            rejection(v.verify(&token).await),
            TokenRejection::Algorithm,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn rs256_header_on_an_hmac_signed_token_is_refused() {
    let v = verifier([shared()]);
    let token = hmac_signed_raw(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims(),
        SECRET.as_bytes(),
    );
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_as_secret_is_refused() {
    let v = verifier([pem_realm(JwtAlgorithm::RS256, RSA_PUBLIC)]);
    let token = sign(Algorithm::HS256, RSA_PUBLIC, None, &claims());
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
    // Even with a kid pointing at the RSA key.
    let mut realm = pem_realm(JwtAlgorithm::RS256, RSA_PUBLIC);
    realm.keys[0].kid = Some("rsa".into());
    let v = verifier([realm]);
    let token = sign(Algorithm::HS256, RSA_PUBLIC, Some("rsa"), &claims());
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
}

#[tokio::test]
async fn wrong_key_is_a_signature_refusal() {
    let v = verifier([shared()]);
    let token = sign(Algorithm::HS256, OTHER_SECRET, None, &claims());
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Signature);
    let v = verifier([pem_realm(JwtAlgorithm::RS256, RSA_PUBLIC)]);
    let token = sign(Algorithm::RS256, RSA2_PRIVATE, None, &claims());
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Signature);
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_refused() {
    let v = verifier([shared()]);
    let token = hs(&with(claims(), "iss", json!("https://evil.example.com")));
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Issuer);
    let token = hs(&without(claims(), "iss"));
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Issuer);
}

#[tokio::test]
async fn audience_must_match_when_the_realm_lists_one() {
    let mut realm = shared();
    realm.audience = vec!["api".into(), "admin-ui".into()];
    let v = verifier([realm]);
    for aud in [json!("api"), json!(["web", "admin-ui"])] {
        let token = hs(&with(claims(), "aud", aud.clone()));
        assert!(v.verify(&token).await.is_ok(), "{aud}");
    }
    for aud in [json!("web"), json!(["web", "mobile"]), json!([])] {
        let token = hs(&with(claims(), "aud", aud.clone()));
        assert_eq!(
            rejection(v.verify(&token).await),
            TokenRejection::Audience,
            "{aud}"
        );
    }
    assert_eq!(
        rejection(v.verify(&hs(&claims())).await),
        TokenRejection::Audience
    );
    // A realm without audiences does not look at `aud`.
    let v = verifier([shared()]);
    assert!(
        v.verify(&hs(&with(claims(), "aud", json!("anything"))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let v = verifier([shared()]);
    expired(
        v.verify(&hs(&with(claims(), "exp", json!(now() - 100))))
            .await,
    );
    expired(
        v.verify(&hs(&with(claims(), "nbf", json!(now() + 100))))
            .await,
    );
}

#[tokio::test]
async fn leeway_is_honoured() {
    let v = verifier([shared()]);
    assert!(
        v.verify(&hs(&with(claims(), "exp", json!(now() - 10))))
            .await
            .is_ok()
    );
    assert!(
        v.verify(&hs(&with(claims(), "nbf", json!(now() + 10))))
            .await
            .is_ok()
    );
    let mut strict = config([shared()]);
    strict.auth.leeway_secs = 0;
    let v = JwtVerifier::from_config(&strict).unwrap();
    expired(
        v.verify(&hs(&with(claims(), "exp", json!(now() - 10))))
            .await,
    );
    expired(
        v.verify(&hs(&with(claims(), "nbf", json!(now() + 10))))
            .await,
    );
}

#[tokio::test]
async fn missing_or_malformed_exp_is_a_claims_refusal() {
    let v = verifier([shared()]);
    for token in [
        hs(&without(claims(), "exp")),
        hs(&with(claims(), "exp", Value::Null)),
        hs(&with(claims(), "exp", json!("tomorrow"))),
    ] {
        assert_eq!(rejection(v.verify(&token).await), TokenRejection::Claims);
    }
}

#[tokio::test]
async fn shared_realm_needs_a_valid_tenant_id() {
    let v = verifier([shared()]);
    for claims in [
        without(claims(), "tenant_id"),
        with(claims(), "tenant_id", json!("Acme Corp")),
        with(claims(), "tenant_id", json!("acme:{evil}")),
        with(claims(), "tenant_id", json!(42)),
    ] {
        assert_eq!(
            rejection(v.verify(&hs(&claims)).await),
            TokenRejection::Claims,
            "{claims}"
        );
    }
}

#[tokio::test]
async fn dedicated_realm_refuses_another_tenant() {
    let acme = TenantId::new("acme").unwrap();
    let v = verifier([shared().dedicated_to(acme)]);
    let token = hs(&with(claims(), "tenant_id", json!("globex")));
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Realm);
    let t = v
        .verify(&hs(&without(claims(), "tenant_id")))
        .await
        .unwrap();
    assert_eq!(t.tenant.as_str(), "acme");
    let t = v.verify(&hs(&claims())).await.unwrap();
    assert_eq!(t.tenant.as_str(), "acme");
}

#[tokio::test]
async fn system_role_only_from_a_services_realm() {
    let v = verifier([shared()]);
    let token = hs(&with(claims(), "role", json!("system")));
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Realm);
    let v = verifier([shared().for_services()]);
    let t = v.verify(&token).await.unwrap();
    assert_eq!(t.role, Role::System);
    assert!(t.services);
}

#[tokio::test]
async fn realms_cap_roles_whatever_alias_carries_them() {
    let dedicated = || shared().dedicated_to(TenantId::new("bigcorp").unwrap());
    // A tenant's own identity provider (dedicated or shared) stops at admin.
    for realm in [dedicated(), shared()] {
        let v = verifier([realm]);
        for role in ["super_admin", "cpi-admin", "system"] {
            let token = hs(&with(
                with(claims(), "role", json!(role)),
                "tenant_id",
                json!("bigcorp"),
            ));
            assert_eq!(
                rejection(v.verify(&token).await),
                TokenRejection::Realm,
                "{role}"
            );
        }
        let token = hs(&with(
            with(claims(), "role", json!("tenant-admin")),
            "tenant_id",
            json!("bigcorp"),
        ));
        assert_eq!(v.verify(&token).await.unwrap().role, Role::Admin);
    }
    // An explicit ceiling below admin.
    let v = verifier([dedicated().max_role(Role::Operator)]);
    let admin = hs(&without(claims(), "tenant_id"));
    assert_eq!(rejection(v.verify(&admin).await), TokenRejection::Realm);
    let operator = hs(&with(
        without(claims(), "tenant_id"),
        "role",
        json!("devops"),
    ));
    assert_eq!(v.verify(&operator).await.unwrap().role, Role::Operator);
    // Only the platform's realm issues super_admin; a services realm that is
    // not the platform's issues system but never super_admin.
    let token = hs(&with(claims(), "role", json!("super_admin")));
    let v = verifier([shared().for_platform()]);
    assert_eq!(v.verify(&token).await.unwrap().role, Role::SuperAdmin);
    let v = verifier([shared().for_services()]);
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Realm);
    // A platform realm capped at admin.
    let v = verifier([shared().for_platform().max_role(Role::Admin)]);
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Realm);
}

#[test]
fn a_ceiling_above_what_the_realm_is_marked_for_is_a_config_error() {
    let err = TenancyConfig::builder()
        .realm(shared().max_role(Role::SuperAdmin))
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "realms[0].max_role");
    let err = TenancyConfig::builder()
        .realm(shared().for_platform().max_role(Role::System))
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "realms[0].max_role");
    let toml = format!(
        "[[realms]]\nname = \"bigcorp\"\nissuer = \"{ISS}\"\ntenant = \"bigcorp\"\nmax_role = \"super_admin\"\n[[realms.keys]]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n"
    );
    assert_eq!(
        TenancyConfig::from_toml_str(&toml).unwrap_err().key(),
        "realms[0].max_role"
    );
}

#[tokio::test]
async fn role_aliases_map_onto_roles() {
    let config = TenancyConfig::builder()
        .realm(shared().for_platform())
        .role_alias("sre", Role::Operator)
        .build()
        .unwrap();
    let v = JwtVerifier::from_config(&config).unwrap();
    for (name, role) in [
        ("tenant-admin", Role::Admin),
        ("DevOps", Role::Operator),
        ("cpi-admin", Role::SuperAdmin),
        ("sre", Role::Operator),
        ("viewer", Role::Viewer),
    ] {
        let t = v
            .verify(&hs(&with(claims(), "role", json!(name))))
            .await
            .unwrap();
        assert_eq!(t.role, role, "{name}");
    }
}

#[tokio::test]
async fn unknown_or_missing_role_and_subject_are_claims_refusals() {
    let v = verifier([shared()]);
    for claims in [
        with(claims(), "role", json!("root")),
        with(claims(), "role", json!("Admin ")),
        without(claims(), "role"),
        without(claims(), "sub"),
        with(claims(), "sub", json!("")),
        with(claims(), "sub", json!(["alice"])),
    ] {
        assert_eq!(
            rejection(v.verify(&hs(&claims)).await),
            TokenRejection::Claims,
            "{claims}"
        );
    }
}

/// A shared realm reading Keycloak's shapes: roles from `roles`, the
/// subject from `preferred_username`, the tenant from `tenant`.
fn mapped(tenant: &str, roles: &str, subject: &str) -> RealmConfig {
    shared().claims(crate::config::ClaimsConfig {
        tenant: tenant.parse().unwrap(),
        roles: roles.parse().unwrap(),
        subject: subject.parse().unwrap(),
    })
}

/// Claims as Keycloak issues them: no `role`, no top-level `tenant_id`.
fn keycloak_claims(realm_roles: Value) -> Value {
    json!({
        "sub": "f:1c2b:alice",
        "preferred_username": "alice",
        "iss": ISS,
        "iat": now(),
        "exp": now() + 600,
        "typ": "Bearer",
        "azp": "tenancy-api",
        "realm_access": { "roles": realm_roles },
        "resource_access": {
            "tenancy-api": { "roles": ["operator"] },
            "account": { "roles": ["manage-account", "view-profile"] }
        },
        "org": { "tenant": "acme" },
        "https://example.com/tenant_id": "globex",
    })
}

#[tokio::test]
async fn mapped_claims_read_realm_roles_client_roles_nested_and_namespaced_tenants() {
    let kc_roles = json!([
        "offline_access",
        "uma_authorization",
        "default-roles-staff",
        "viewer",
        "tenant-admin"
    ]);
    for (realm, role, tenant, subject) in [
        (
            mapped("org.tenant", "realm_access.roles", "preferred_username"),
            Role::Admin,
            "acme",
            "alice",
        ),
        (
            mapped("org.tenant", "resource_access.tenancy-api.roles", "sub"),
            Role::Operator,
            "acme",
            "f:1c2b:alice",
        ),
        (
            mapped(
                "/https:~1~1example.com~1tenant_id",
                "/realm_access/roles",
                "preferred_username",
            ),
            Role::Admin,
            "globex",
            "alice",
        ),
    ] {
        let v = verifier([realm]);
        let t = v
            .verify(&hs(&keycloak_claims(kc_roles.clone())))
            .await
            .unwrap();
        assert_eq!(
            (t.role, t.tenant.as_str(), &*t.subject),
            (role, tenant, subject)
        );
    }
}

#[tokio::test]
async fn the_highest_known_role_wins_and_no_known_role_is_refused() {
    let v = verifier([mapped(
        "org.tenant",
        "realm_access.roles",
        "preferred_username",
    )]);
    let role_of = |roles: Value| {
        let token = hs(&keycloak_claims(roles));
        let v = v.clone();
        async move { v.verify(&token).await }
    };
    assert_eq!(
        role_of(json!(["viewer", "devops", "viewer"]))
            .await
            .unwrap()
            .role,
        Role::Operator
    );
    assert_eq!(
        role_of(json!("tenant-admin")).await.unwrap().role,
        Role::Admin
    );
    assert_eq!(
        role_of(json!([7, {"x": 1}, "viewer"])).await.unwrap().role,
        Role::Viewer
    );
    for no_role in [
        json!(["offline_access", "uma_authorization"]),
        json!([]),
        json!(3),
        json!({"admin": true}),
        json!(null),
    ] {
        assert_eq!(
            rejection(role_of(no_role.clone()).await),
            TokenRejection::Claims,
            "{no_role}"
        );
    }
    // The winner is held to the realm's ceiling: a tenant realm is refused,
    // not capped, when a role above it is in the list.
    assert_eq!(
        rejection(role_of(json!(["viewer", "cpi-admin"])).await),
        TokenRejection::Realm
    );
    // The default mapping takes an array too.
    let v = verifier([shared()]);
    let t = v
        .verify(&hs(&with(claims(), "role", json!(["viewer", "operator"]))))
        .await
        .unwrap();
    assert_eq!(t.role, Role::Operator);
}

#[tokio::test]
async fn mapped_claims_of_the_wrong_type_are_refused_and_unmapped_ones_ignored() {
    let v = verifier([mapped(
        "org.tenant",
        "realm_access.roles",
        "preferred_username",
    )]);
    // What sits under the default names does not matter to a mapped realm.
    let mut odd = keycloak_claims(json!(["viewer"]));
    odd["role"] = json!(5);
    odd["tenant_id"] = json!({"nested": true});
    assert_eq!(v.verify(&hs(&odd)).await.unwrap().tenant.as_str(), "acme");
    for (path, value) in [
        ("org", json!({"tenant": 42})),
        ("org", json!({"tenant": ["acme"]})),
        ("org", json!({"tenant": "Not A Slug"})),
        ("org", json!({})),
        ("preferred_username", json!("")),
        ("preferred_username", json!(1)),
    ] {
        let mut claims = keycloak_claims(json!(["viewer"]));
        claims[path] = value.clone();
        assert_eq!(
            rejection(v.verify(&hs(&claims)).await),
            TokenRejection::Claims,
            "{path}: {value}"
        );
    }
    // A dedicated realm still refuses another tenant at the mapped place.
    let acme = crate::tenant::TenantId::new("globex").unwrap();
    let v = verifier([mapped("org.tenant", "realm_access.roles", "sub").dedicated_to(acme)]);
    assert_eq!(
        rejection(v.verify(&hs(&keycloak_claims(json!(["viewer"])))).await),
        TokenRejection::Realm
    );
}

#[test]
fn claim_paths_are_checked_when_the_config_is_read() {
    let toml = |roles: &str| {
        format!(
            "[[realms]]\nname = \"kc\"\nissuer = \"{ISS}\"\n[realms.claims]\nroles = \"{roles}\"\n[[realms.keys]]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n"
        )
    };
    let config = TenancyConfig::from_toml_str(&toml("realm_access.roles")).unwrap();
    assert_eq!(config.realms[0].claims.roles.as_str(), "realm_access.roles");
    assert!(config.realms[0].claims.tenant.is_top_level("tenant_id"));
    assert!(TenancyConfig::from_toml_str(&toml("realm_access..roles")).is_err());
    assert!(TenancyConfig::from_toml_str(&toml("/a~9")).is_err());
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_any_crypto() {
    let v = verifier([shared()]);
    let good = hs(&claims());
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let oversized = hs(&with(claims(), "pad", json!("x".repeat(8 * 1024))));
    assert!(oversized.len() > MAX_TOKEN_LEN);
    let cases = [
        String::new(),
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{good}.{signature}"),
        "..".to_owned(),
        format!("{header}$.{payload}.{signature}"),
        format!("{header}.{payload}==.{signature}"),
        format!("{header}.{payload}.{signature}*"),
        format!("{header}.{payload}."),
        format!("{header}.{}.{signature}", b64("not json")),
        format!("{header}.{}.{signature}", b64(r#"["alice","acme"]"#)),
        format!("{}.{payload}.{signature}", b64("{")),
        format!(
            "{}.{payload}.{signature}",
            b64(r#"{"alg":"HS256","crit":["exp"]}"#)
        ),
        oversized,
    ];
    for token in cases {
        assert_eq!(
            rejection(v.verify(&token).await),
            TokenRejection::Malformed,
            "{token:.80}"
        );
    }
}

#[tokio::test]
async fn a_token_from_one_realm_is_never_valid_in_another() {
    let realm_a = RealmConfig::hs256("a", ISS, SECRET);
    let realm_b = RealmConfig::hs256("b", ISS_B, OTHER_SECRET);
    let v = verifier([realm_a, realm_b]);
    // Signed with A's key, claiming B's issuer: verified with B's key only.
    let token = hs(&with(claims(), "iss", json!(ISS_B)));
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Signature);
    let token = sign(
        Algorithm::HS256,
        OTHER_SECRET,
        None,
        &with(claims(), "iss", json!(ISS_B)),
    );
    assert_eq!(&*v.verify(&token).await.unwrap().realm, "b");

    // A: RS256, B: HS256. An RS256 token of A claiming B has no key in B.
    let realm_a = pem_realm(JwtAlgorithm::RS256, RSA_PUBLIC);
    let realm_b = RealmConfig::hs256("b", ISS_B, OTHER_SECRET);
    let v = verifier([realm_a, realm_b]);
    let token = sign(
        Algorithm::RS256,
        RSA_PRIVATE,
        None,
        &with(claims(), "iss", json!(ISS_B)),
    );
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_verify() {
    for (alg, jwt_alg, public, private) in [
        (
            JwtAlgorithm::RS256,
            Algorithm::RS256,
            RSA_PUBLIC,
            RSA_PRIVATE,
        ),
        (
            JwtAlgorithm::RS512,
            Algorithm::RS512,
            RSA_PUBLIC,
            RSA_PRIVATE,
        ),
        (JwtAlgorithm::ES256, Algorithm::ES256, EC_PUBLIC, EC_PRIVATE),
        (JwtAlgorithm::EdDSA, Algorithm::EdDSA, ED_PUBLIC, ED_PRIVATE),
    ] {
        let v = verifier([pem_realm(alg, public)]);
        let token = sign(jwt_alg, private, None, &claims());
        let t = v.verify(&token).await.unwrap();
        assert_eq!(
            (t.tenant.as_str(), t.role),
            ("acme", Role::Admin),
            "{alg:?}"
        );
        // A key is fixed to its algorithm: same key type, other algorithm.
        if alg == JwtAlgorithm::RS256 {
            let token = sign(Algorithm::RS384, private, None, &claims());
            assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
        }
    }
}

#[tokio::test]
async fn public_key_file_is_read_at_start() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/credential/jwt/testdata");
    let mut realm = shared();
    realm.keys.push(RealmKeyConfig {
        algorithm: Some(JwtAlgorithm::RS256),
        public_key_file: Some(format!("{dir}/rsa_public.pem").into()),
        ..RealmKeyConfig::default()
    });
    let v = verifier([realm.clone()]);
    let token = sign(Algorithm::RS256, RSA_PRIVATE, None, &claims());
    assert!(v.verify(&token).await.is_ok());
    assert!(v.verify(&hs(&claims())).await.is_ok());

    realm.keys[1].public_key_file = Some(format!("{dir}/missing.pem").into());
    let err = JwtVerifier::from_config(&config([realm.clone()])).unwrap_err();
    assert_eq!(err.key(), "realms[0].keys[1].public_key_file");

    realm.keys[1].public_key_file = Some(format!("{dir}/ec_public.pem").into());
    let err = JwtVerifier::from_config(&config([realm])).unwrap_err();
    assert_eq!(err.key(), "realms[0].keys[1].public_key_file");
}

#[test]
fn unusable_keys_are_refused_at_start_naming_the_key() {
    let cases = [
        (
            RealmKeyConfig::pem(JwtAlgorithm::RS256, "not a pem"),
            "public_key_pem",
        ),
        (
            RealmKeyConfig::pem(JwtAlgorithm::RS256, EC_PUBLIC),
            "public_key_pem",
        ),
        (
            RealmKeyConfig::pem(JwtAlgorithm::ES384, EC_PUBLIC),
            "public_key_pem",
        ),
        (
            RealmKeyConfig::pem(JwtAlgorithm::EdDSA, RSA_PUBLIC),
            "public_key_pem",
        ),
        (
            RealmKeyConfig {
                jwks_url: Some("http://user:pw@127.0.0.1/jwks".into()),
                ..RealmKeyConfig::default()
            },
            "jwks_url",
        ),
    ];
    for (key, field) in cases {
        let mut realm = shared();
        realm.keys.push(key);
        let err = JwtVerifier::from_config(&config([realm])).unwrap_err();
        assert_eq!(err.key(), format!("realms[0].keys[1].{field}"), "{err}");
    }
}

#[test]
fn key_urls_and_ca_files_are_checked_at_start() {
    let jwks = |url: &str| {
        let mut realm = shared();
        realm.keys = vec![RealmKeyConfig {
            jwks_url: Some(url.into()),
            ..RealmKeyConfig::default()
        }];
        realm
    };
    assert!(JwtVerifier::from_config(&config([jwks("https://id.example.com/certs")])).is_ok());
    let err = TenancyConfig::builder()
        .realm(jwks("ftp://id.example.com/certs"))
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "realms[0].keys[0].jwks_url");

    let mut realm = jwks("https://id.example.com/certs");
    realm.ca_file = Some("/no/such/ca.pem".into());
    let err = JwtVerifier::from_config(&config([realm.clone()])).unwrap_err();
    assert_eq!(err.key(), "realms[0].ca_file", "{err}");
    realm.ca_file = Some(temp_file("not-a-ca.pem", "hello"));
    let err = JwtVerifier::from_config(&config([realm.clone()])).unwrap_err();
    assert_eq!(err.key(), "realms[0].ca_file", "{err}");
    realm.ca_file = None;
    let mut config = config([realm]);
    config.auth.ca_file = Some(temp_file("empty-ca.pem", ""));
    let err = JwtVerifier::from_config(&config).unwrap_err();
    assert_eq!(err.key(), "auth.ca_file", "{err}");
}

fn jwk(alg: Algorithm, private: &str, kid: Option<&str>) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, private), alg).unwrap();
    jwk.common.key_id = kid.map(Into::into);
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tenancy-jwt-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn jwks_file_realm(path: std::path::PathBuf) -> RealmConfig {
    let mut realm = shared();
    realm.keys = vec![RealmKeyConfig {
        jwks_file: Some(path),
        ..RealmKeyConfig::default()
    }];
    realm
}

#[tokio::test]
async fn jwks_file_keys_are_chosen_by_kid_or_alg() {
    let no_alg = without(jwk(Algorithm::RS256, RSA2_PRIVATE, Some("no-alg")), "alg");
    let encryption = with(
        jwk(Algorithm::RS256, RSA2_PRIVATE, Some("enc")),
        "use",
        json!("enc"),
    );
    let set = jwks(&[
        jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1")),
        jwk(Algorithm::ES256, EC_PRIVATE, Some("e1")),
        jwk(Algorithm::EdDSA, ED_PRIVATE, Some("d1")),
        no_alg,
        encryption,
        json!({"kty": "weird", "kid": "x"}),
    ]);
    let v = verifier([jwks_file_realm(temp_file("set.json", &set))]);

    for (alg, private, kid) in [
        (Algorithm::RS256, RSA_PRIVATE, "r1"),
        (Algorithm::ES256, EC_PRIVATE, "e1"),
        (Algorithm::EdDSA, ED_PRIVATE, "d1"),
    ] {
        let token = sign(alg, private, Some(kid), &claims());
        assert!(v.verify(&token).await.is_ok(), "{kid}");
    }
    // No kid: the keys of the header's algorithm.
    let token = sign(Algorithm::RS256, RSA_PRIVATE, None, &claims());
    assert!(v.verify(&token).await.is_ok());
    // A kid naming a key of another algorithm.
    let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("e1"), &claims());
    assert_eq!(rejection(v.verify(&token).await), TokenRejection::Algorithm);
    // Keys without `alg`, and encryption keys, were not loaded.
    for kid in ["no-alg", "enc"] {
        let token = sign(Algorithm::RS256, RSA2_PRIVATE, Some(kid), &claims());
        assert_eq!(
            rejection(v.verify(&token).await),
            TokenRejection::Signature,
            "{kid}"
        );
    }
}

#[test]
fn jwks_file_without_a_usable_key_is_refused() {
    let set = jwks(&[without(
        jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1")),
        "alg",
    )]);
    let err = JwtVerifier::from_config(&config([jwks_file_realm(temp_file("no-alg.json", &set))]))
        .unwrap_err();
    assert_eq!(err.key(), "realms[0].keys[0].jwks_file");
    assert!(err.message().contains("alg"), "{err}");
    let err = JwtVerifier::from_config(&config([jwks_file_realm(temp_file("bad.json", "{}"))]))
        .unwrap_err();
    assert_eq!(err.key(), "realms[0].keys[0].jwks_file");
}

/// A JWK set over plain HTTP on 127.0.0.1, counting connections.
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    body: Arc<Mutex<String>>,
}

impl JwksServer {
    async fn start(body: String, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/realms/staff/certs",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new(body));
        let (h, b) = (Arc::clone(&hits), Arc::clone(&body));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let body = b.lock().unwrap().clone();
                tokio::spawn(answer(stream, body, delay));
            }
        });
        Self { url, hits, body }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }
}

async fn answer(stream: tokio::net::TcpStream, body: String, delay: Duration) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    assert!(request.starts_with(b"GET /realms/staff/certs HTTP/1.1\r\n"));
    tokio::time::sleep(delay).await;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut rest = response.as_bytes();
    while !rest.is_empty() {
        if stream.writable().await.is_err() {
            return;
        }
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

fn jwks_url_config(url: &str) -> TenancyConfig {
    let mut realm = shared();
    realm.keys = vec![RealmKeyConfig {
        jwks_url: Some(url.to_owned()),
        ..RealmKeyConfig::default()
    }];
    let mut config = config([realm]);
    config.auth.token_cache_capacity = 0;
    config
}

fn fast_timing() -> JwksTiming {
    JwksTiming {
        min_refresh: Duration::from_millis(300),
        retry_unloaded: Duration::from_millis(300),
        max_age: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
    }
}

fn rsa_token(private: &str, kid: &str, subject: &str) -> String {
    sign(
        Algorithm::RS256,
        private,
        Some(kid),
        &with(claims(), "sub", json!(subject)),
    )
}

#[tokio::test]
async fn jwks_url_is_fetched_lazily_and_refreshed_on_unknown_kid_at_most_once_per_interval() {
    let r1 = jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1"));
    let r2 = jwk(Algorithm::RS256, RSA2_PRIVATE, Some("r2"));
    let server = JwksServer::start(jwks(std::slice::from_ref(&r1)), Duration::ZERO).await;
    let v = JwtVerifier::build(&jwks_url_config(&server.url), fast_timing()).unwrap();
    assert_eq!(server.hits(), 0, "fetched lazily");

    assert!(v.verify(&rsa_token(RSA_PRIVATE, "r1", "a")).await.is_ok());
    assert_eq!(server.hits(), 1);
    assert!(v.verify(&rsa_token(RSA_PRIVATE, "r1", "b")).await.is_ok());
    assert_eq!(server.hits(), 1, "known kid: no fetch");

    // Rotation: r2 appears. Within the interval of the last fetch, an
    // unknown kid does not fetch again.
    server.serve(jwks(&[r1.clone(), r2.clone()]));
    let r2_token = rsa_token(RSA2_PRIVATE, "r2", "c");
    assert_eq!(
        rejection(v.verify(&r2_token).await),
        TokenRejection::Signature
    );
    assert_eq!(server.hits(), 1);

    // After it, the unknown kid triggers one refresh, which finds r2.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(v.verify(&r2_token).await.is_ok());
    assert_eq!(server.hits(), 2);

    // A second unknown kid inside the interval: no fetch.
    let r3_token = rsa_token(RSA2_PRIVATE, "r3", "d");
    assert_eq!(
        rejection(v.verify(&r3_token).await),
        TokenRejection::Signature
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn jwks_url_default_interval_holds_back_refetches() {
    let r1 = jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1"));
    let server = JwksServer::start(jwks(std::slice::from_ref(&r1)), Duration::ZERO).await;
    let v = JwtVerifier::from_config(&jwks_url_config(&server.url)).unwrap();
    assert!(v.verify(&rsa_token(RSA_PRIVATE, "r1", "a")).await.is_ok());
    for kid in ["x1", "x2", "x3"] {
        let token = rsa_token(RSA2_PRIVATE, kid, "b");
        assert_eq!(rejection(v.verify(&token).await), TokenRejection::Signature);
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let r1 = jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1"));
    let r2 = jwk(Algorithm::RS256, RSA2_PRIVATE, Some("r2"));
    let server =
        JwksServer::start(jwks(std::slice::from_ref(&r1)), Duration::from_millis(100)).await;
    let timing = JwksTiming {
        min_refresh: Duration::ZERO,
        ..fast_timing()
    };
    let v = JwtVerifier::build(&jwks_url_config(&server.url), timing).unwrap();
    assert!(v.verify(&rsa_token(RSA_PRIVATE, "r1", "a")).await.is_ok());
    assert_eq!(server.hits(), 1);

    server.serve(jwks(&[r1, r2]));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let v = v.clone();
            let token = rsa_token(RSA2_PRIVATE, "r2", &format!("user-{i}"));
            tokio::spawn(async move { v.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(server.hits(), 2, "one fetch for eight callers");
}

#[tokio::test]
async fn unreachable_jwks_url_fails_closed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    drop(listener);
    let v = JwtVerifier::build(&jwks_url_config(&url), fast_timing()).unwrap();
    let err = v
        .verify(&rsa_token(RSA_PRIVATE, "r1", "a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store_unavailable");
    assert_eq!(err.status(), 503);
    // Malformed tokens are still refused as such, without a fetch.
    assert_eq!(rejection(v.verify("x.y").await), TokenRejection::Malformed);

    // The realm's fixed keys still verify while its JWK set is missing.
    let mut config = jwks_url_config(&url);
    config.realms[0]
        .keys
        .push(RealmKeyConfig::hmac(JwtAlgorithm::HS256, SECRET));
    let v = JwtVerifier::build(&config, fast_timing()).unwrap();
    assert!(v.verify(&hs(&claims())).await.is_ok());
    let err = v
        .verify(&rsa_token(RSA_PRIVATE, "r1", "a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "store_unavailable");
}

#[tokio::test]
async fn cache_hits_return_the_same_result_and_never_serve_an_edited_token() {
    let v = verifier([pem_realm(JwtAlgorithm::RS256, RSA_PUBLIC)]);
    let cache = v.inner.cache.as_ref().expect("cache on by default");
    let token = sign(Algorithm::RS256, RSA_PRIVATE, None, &claims());
    let first = v.verify(&token).await.unwrap();
    assert_eq!(cache.len(), 1);
    let second = v.verify(&token).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(cache.len(), 1);

    // Same signature, payload edited to another tenant and role.
    let (header, rest) = token.split_once('.').unwrap();
    let signature = rest.rsplit_once('.').unwrap().1;
    let forged_claims = with(
        with(claims(), "tenant_id", json!("globex")),
        "role",
        json!("super_admin"),
    );
    let forged = format!("{header}.{}.{signature}", b64(forged_claims.to_string()));
    assert_eq!(
        rejection(v.verify(&forged).await),
        TokenRejection::Signature
    );
    // Edited header, same payload and signature.
    let forged = token.replacen(header, &b64(r#"{"alg":"RS256","kid":"x"}"#), 1);
    assert_eq!(
        rejection(v.verify(&forged).await),
        TokenRejection::Signature
    );
    assert_eq!(v.verify(&token).await.unwrap(), first);
}

#[test]
fn cache_never_serves_a_token_after_exp_plus_leeway() {
    let v = verifier([shared()]);
    let exp = now() + 5;
    let token = hs(&with(claims(), "exp", json!(exp)));
    let check = |at: i64| v.inner.check(&token, at, false);
    assert!(check(now()).is_ok());
    assert_eq!(v.inner.cache.as_ref().unwrap().len(), 1);
    assert!(check(exp + 30).is_ok());
    match check(exp + 31) {
        Err(Fail::Refused(e)) => assert_eq!(e.code(), "token_expired"),
        _ => panic!("served after exp + leeway"),
    }
}

#[tokio::test]
async fn cache_can_be_turned_off_and_stays_bounded() {
    let mut off = config([shared()]);
    off.auth.token_cache_capacity = 0;
    let v = JwtVerifier::from_config(&off).unwrap();
    assert!(v.inner.cache.is_none());
    assert!(v.verify(&hs(&claims())).await.is_ok());

    let mut small = config([shared()]);
    small.auth.token_cache_capacity = 4;
    let v = JwtVerifier::from_config(&small).unwrap();
    for i in 0..10 {
        let token = hs(&with(claims(), "sub", json!(format!("user-{i}"))));
        assert!(v.verify(&token).await.is_ok());
        assert!(v.inner.cache.as_ref().unwrap().len() <= 4);
    }
}

#[test]
fn debug_shows_no_secret() {
    let mut realm = shared();
    realm
        .keys
        .push(RealmKeyConfig::pem(JwtAlgorithm::RS256, RSA_PUBLIC));
    realm.keys[0].kid = Some("hs-key".into());
    let v = verifier([realm]);
    let debug = format!("{v:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains("0123456789"), "{debug}");
    let pem_body = RSA_PUBLIC.lines().nth(1).unwrap();
    assert!(!debug.contains(pem_body), "{debug}");
    assert!(
        debug.contains("hs-key") && debug.contains("RS256"),
        "{debug}"
    );
}

#[test]
fn verifier_is_cheap_to_share() {
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<JwtVerifier>();
    send_sync::<VerifiedToken>();
    assert!(verifier([]).is_empty());
    assert!(!verifier([shared()]).is_empty());
}

fn assert_401(result: Result<VerifiedToken, TenancyError>) -> Result<(), TestCaseError> {
    let err = result
        .err()
        .ok_or_else(|| TestCaseError::fail("accepted"))?;
    prop_assert_eq!(err.status().as_u16(), 401);
    prop_assert!(matches!(err.code(), "invalid_token" | "token_expired"));
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_strings_are_refused_with_401(s in any::<String>()) {
        let v = verifier([shared()]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_401(rt.block_on(v.verify(&s)))?;
    }

    #[test]
    fn arbitrary_segments_are_refused_with_401(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        signature in "[A-Za-z0-9_-]{0,64}",
        json_header in any::<bool>(),
    ) {
        let v = verifier([shared()]);
        let header = if json_header { br#"{"alg":"HS256"}"#.to_vec() } else { header };
        let token = format!("{}.{}.{signature}", b64(header), b64(payload));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_401(rt.block_on(v.verify(&token)))?;
    }

    #[test]
    fn claim_soup_is_refused_with_401(
        sub in proptest::option::of(".{0,8}"),
        tenant in proptest::option::of("[a-zA-Z:{}-]{0,8}"),
        role in proptest::option::of("[a-z_]{0,12}"),
        exp in proptest::option::of(any::<i64>()),
        nbf in proptest::option::of(any::<i64>()),
    ) {
        let v = verifier([shared()]);
        let claims = json!({ "iss": ISS, "sub": sub, "tenant_id": tenant, "role": role, "exp": exp, "nbf": nbf });
        // Signed with another key, so nothing may pass.
        let token = sign(Algorithm::HS256, OTHER_SECRET, None, &claims);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_401(rt.block_on(v.verify(&token)))?;
        // Signed with the realm's key: accepted only when every claim holds.
        let token = hs(&claims);
        if let Err(e) = rt.block_on(v.verify(&token)) {
            prop_assert_eq!(e.status().as_u16(), 401);
        }
    }
}

#[tokio::test]
async fn jwk_sets_never_supply_symmetric_keys() {
    let oct = json!({"kty": "oct", "kid": "h1", "alg": "HS256", "k": b64(SECRET)});
    let set = jwks(std::slice::from_ref(&oct));
    let err = JwtVerifier::from_config(&config([jwks_file_realm(temp_file("oct.json", &set))]))
        .unwrap_err();
    assert!(err.message().contains("oct"), "{err}");
    // Beside a public key, the oct key is skipped: a token signed with the
    // published secret is refused.
    let set = jwks(&[oct, jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1"))]);
    let v = verifier([jwks_file_realm(temp_file("oct-and-rsa.json", &set))]);
    let forged = sign(Algorithm::HS256, SECRET, Some("h1"), &claims());
    assert!(matches!(
        rejection(v.verify(&forged).await),
        TokenRejection::Signature | TokenRejection::Algorithm
    ));
}

#[test]
fn plain_http_key_urls_only_for_loopback_or_when_allowed() {
    let realm = |url: &str, allow_http: bool| {
        let mut realm = shared();
        realm.keys = vec![RealmKeyConfig {
            jwks_url: Some(url.into()),
            allow_http,
            ..RealmKeyConfig::default()
        }];
        realm
    };
    let err = JwtVerifier::from_config(&config([realm("http://id.example.com/certs", false)]))
        .unwrap_err();
    assert_eq!(err.key(), "realms[0].keys[0].jwks_url");
    assert!(err.message().contains("loopback"), "{err}");
    for url in [
        "http://127.0.0.1:8080/certs",
        "http://[::1]/certs",
        "http://localhost/certs",
    ] {
        assert!(
            JwtVerifier::from_config(&config([realm(url, false)])).is_ok(),
            "{url}"
        );
    }
    assert!(
        JwtVerifier::from_config(&config([realm("http://id.example.com/certs", true)])).is_ok()
    );
}

/// What `check` makes of a token at a fixed `now`.
fn outcome(v: &JwtVerifier, token: &str, now: i64) -> &'static str {
    match v.inner.check(token, now, false) {
        Ok(_) => "ok",
        Err(Fail::Refused(e)) => e.code(),
        Err(Fail::NeedKeys(..)) => "need_keys",
        Err(Fail::Foreign(_)) => "foreign",
    }
}

#[test]
fn exp_and_nbf_boundaries_are_exact() {
    let v = verifier([shared()]);
    let leeway = 30;
    let now = 2_000_000_000;
    let token = |key: &str, at: i64| {
        let claims = with(claims(), "exp", json!(now + 600));
        hs(&with(claims, key, json!(at)))
    };
    // `exp` may lie up to the leeway in the past, not a second more.
    assert_eq!(outcome(&v, &token("exp", now - leeway), now), "ok");
    assert_eq!(
        outcome(&v, &token("exp", now - leeway - 1), now),
        "token_expired"
    );
    // `nbf` may lie up to the leeway in the future, not a second more.
    assert_eq!(outcome(&v, &token("nbf", now + leeway), now), "ok");
    assert_eq!(
        outcome(&v, &token("nbf", now + leeway + 1), now),
        "token_expired"
    );
    // A cached token is served until `exp` + leeway, not a second longer.
    let cached = token("exp", now + 10);
    assert_eq!(outcome(&v, &cached, now), "ok");
    assert_eq!(outcome(&v, &cached, now + 10 + leeway), "ok");
    assert_eq!(outcome(&v, &cached, now + 10 + leeway + 1), "token_expired");
}

#[test]
fn a_token_of_exactly_the_longest_length_is_read() {
    let now = 2_000_000_000;
    let v = verifier([shared()]);
    // Find a padding that makes the token exactly MAX_TOKEN_LEN long (an
    // unpadded base64 length is never 1 modulo 4, so try two headers).
    let exact = (0..MAX_TOKEN_LEN).find_map(|pad| {
        let claims = with(
            with(claims(), "exp", json!(now + 600)),
            "pad",
            json!("p".repeat(pad)),
        );
        [
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "typ": "JWT"}),
        ]
        .iter()
        .map(|header| hmac_signed_raw(header, &claims, SECRET.as_bytes()))
        .find(|t| t.len() == MAX_TOKEN_LEN)
    });
    let exact = exact.expect("a token of exactly the longest length");
    assert_eq!(outcome(&v, &exact, now), "ok");
    let longer = format!("{exact}A");
    assert_eq!(
        v.inner.check(&longer, now, false).err().map(|f| match f {
            Fail::Refused(e) =>
                matches!(e.kind(), ErrorKind::InvalidToken(TokenRejection::Malformed)),
            Fail::NeedKeys(..) | Fail::Foreign(_) => false,
        }),
        Some(true)
    );
}

#[tokio::test]
async fn after_a_refresh_an_unknown_kid_is_a_refusal_not_another_fetch() {
    let r1 = jwk(Algorithm::RS256, RSA_PRIVATE, Some("r1"));
    let server = JwksServer::start(jwks(std::slice::from_ref(&r1)), Duration::ZERO).await;
    let v = JwtVerifier::build(&jwks_url_config(&server.url), fast_timing()).unwrap();
    assert!(v.verify(&rsa_token(RSA_PRIVATE, "r1", "a")).await.is_ok());
    let unknown = rsa_token(RSA2_PRIVATE, "r9", "b");
    let now = unix_now();
    // The first look may ask for keys; the look after a refresh refuses.
    assert_eq!(outcome(&v, &unknown, now), "invalid_token");
    assert!(matches!(
        v.inner.check(&unknown, now, true),
        Err(Fail::NeedKeys(_, RefreshReason::UnknownKid))
    ));
}

#[test]
fn base64url_segments_of_an_impossible_length_are_malformed() {
    for (segment, ok) in [
        ("", false),
        ("A", false),
        ("AB", true),
        ("ABC", true),
        ("ABCD", true),
        ("ABCDE", false),
        ("ABCDEFGHI", false),
        ("ABCDEFGH", true),
        ("AB+/", false),
        ("AB-_", true),
    ] {
        assert_eq!(is_base64url(segment), ok, "{segment:?}");
    }
}
