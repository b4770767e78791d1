//! Tokens as identity providers issue them: minted by another JOSE
//! implementation (`jwt-simple`), their keys served over HTTP at Keycloak's
//! paths and in Keycloak's shapes, found through OIDC discovery.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jwt_simple::prelude::{
    Claims, ECDSAP256KeyPairLike, ES256KeyPair, Ed25519KeyPair, EdDSAKeyPairLike, RS256KeyPair,
    RSAKeyPairLike,
};
use serde_json::{Value, json};

use super::remote::JwksTiming;
use super::*;
use crate::config::{ClaimsConfig, RealmConfig, TenancyConfig};
use crate::tenant::TenantId;
use crate::testkit::idp::{IdpServer, Reply, Trap};

const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
const RSA2_PRIVATE: &str = include_str!("testdata/rsa2_private.pem");
const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
const ED_PRIVATE: &str = include_str!("testdata/ed_private.pem");

/// A signing key of the identity provider, with its `kid`.
#[allow(clippy::large_enum_variant)] // a few keys per test
enum Signer {
    Rs256(RS256KeyPair),
    Es256(ES256KeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Signer {
    fn rs256(pem: &str, kid: &str) -> Self {
        Signer::Rs256(RS256KeyPair::from_pem(pem).unwrap().with_key_id(kid))
    }
    fn es256(kid: &str) -> Self {
        Signer::Es256(ES256KeyPair::from_pem(EC_PRIVATE).unwrap().with_key_id(kid))
    }
    fn eddsa(kid: &str) -> Self {
        Signer::EdDsa(
            Ed25519KeyPair::from_pem(ED_PRIVATE)
                .unwrap()
                .with_key_id(kid),
        )
    }

    /// The public JWK, as jwt-simple writes it.
    fn jwk(&self) -> Value {
        let text = match self {
            Signer::Rs256(k) => k.public_key().to_jwk(),
            Signer::Es256(k) => k.public_key().to_jwk(),
            Signer::EdDsa(k) => k.public_key().to_jwk(),
        };
        serde_json::from_str(&text).unwrap()
    }

    /// A token for `subject` from `issuer` with `custom` claims, valid ten
    /// minutes.
    fn sign(&self, issuer: &str, subject: &str, custom: Value) -> String {
        let claims =
            Claims::with_custom_claims(custom, jwt_simple::prelude::Duration::from_mins(10))
                .with_issuer(issuer)
                .with_subject(subject);
        match self {
            Signer::Rs256(k) => k.sign(claims),
            Signer::Es256(k) => k.sign(claims),
            Signer::EdDsa(k) => k.sign(claims),
        }
        .unwrap()
    }
}

/// Keycloak's JWK set: the signing keys with the certificate fields
/// Keycloak adds to each, plus the RSA-OAEP encryption key it always
/// publishes (never a verification key).
fn keycloak_certs(signers: &[&Signer]) -> Value {
    let mut keys: Vec<Value> = signers
        .iter()
        .map(|s| {
            let mut jwk = s.jwk();
            jwk["x5c"] = json!(["MIICozCCAYsCBgGTxxE9yDANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDDApj"]);
            jwk["x5t"] = json!("k3yoEbOX3QJqo9Yq4tqpvnZnt1s");
            jwk["x5t#S256"] = json!("p3W4NbFbhUYxVVF7Gz6HtYbPRu9Y0ks5LKjpeXbUHmA");
            jwk
        })
        .collect();
    let mut enc = Signer::rs256(RSA2_PRIVATE, "enc-key").jwk();
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP");
    keys.push(enc);
    json!({ "keys": keys })
}

fn mapping(tenant: &str, roles: &str, subject: &str) -> ClaimsConfig {
    ClaimsConfig {
        tenant: tenant.parse().unwrap(),
        roles: roles.parse().unwrap(),
        subject: subject.parse().unwrap(),
    }
}

fn fast() -> JwksTiming {
    JwksTiming {
        min_refresh: Duration::from_millis(100),
        retry_unloaded: Duration::from_millis(100),
        max_age: Duration::from_secs(3600),
        timeout: Duration::from_millis(500),
    }
}

fn verifier(realms: impl IntoIterator<Item = RealmConfig>) -> JwtVerifier {
    let mut config = realms
        .into_iter()
        .fold(TenancyConfig::builder(), |b, r| b.realm(r))
        .build()
        .unwrap();
    config.auth.token_cache_capacity = 0;
    JwtVerifier::build(&config, fast()).unwrap()
}

fn rejection(result: Result<VerifiedToken, TenancyError>) -> TokenRejection {
    match result.expect_err("the token should be refused").kind() {
        ErrorKind::InvalidToken(r) => *r,
        other => panic!("not invalid_token: {other:?}"),
    }
}

/// Log lines written while a test runs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Captures this thread's events until the guard drops.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

#[tokio::test]
async fn keycloak_tokens_verify_through_discovery_for_rs256_es256_and_eddsa() {
    let idp = IdpServer::start().await;
    let (rs, es, ed) = (
        Signer::rs256(RSA_PRIVATE, "rs-1"),
        Signer::es256("es-1"),
        Signer::eddsa("ed-1"),
    );
    for (realm, signer) in [("rs", &rs), ("es", &es), ("ed", &ed)] {
        idp.publish_realm(realm, keycloak_certs(&[signer]));
    }
    let v = verifier([
        RealmConfig::discovered("rs", idp.issuer("rs")).claims(mapping(
            "tenant_id",
            "realm_access.roles",
            "preferred_username",
        )),
        RealmConfig::discovered("es", idp.issuer("es")).claims(mapping(
            "org.tenant",
            "resource_access.tenancy-api.roles",
            "sub",
        )),
        RealmConfig::discovered("ed", idp.issuer("ed")).claims(mapping(
            "/https:~1~1tenancy.example~1tenant_id",
            "/https:~1~1tenancy.example~1roles",
            "sub",
        )),
    ]);

    // Realm roles as Keycloak lists them: its defaults, which no alias
    // knows, and two known ones, of which the higher wins.
    let token = rs.sign(
        &idp.issuer("rs"),
        "8d1f6c1e-57a4-4b0c-9d59-3c0e5e2f6a10",
        json!({
            "typ": "Bearer",
            "azp": "tenancy-api",
            "preferred_username": "alice",
            "tenant_id": "acme",
            "realm_access": { "roles": ["offline_access", "uma_authorization", "default-roles-rs", "viewer", "tenant-admin"] },
            "resource_access": { "account": { "roles": ["manage-account", "view-profile"] } },
            "scope": "openid profile email",
        }),
    );
    let t = v.verify(&token).await.unwrap();
    assert_eq!(
        (&*t.realm, t.tenant.as_str(), t.role, &*t.subject),
        ("rs", "acme", Role::Admin, "alice")
    );

    // Client roles, a nested tenant claim.
    let token = es.sign(
        &idp.issuer("es"),
        "bob",
        json!({
            "org": { "tenant": "globex", "name": "Globex" },
            "resource_access": { "tenancy-api": { "roles": ["devops"] }, "account": { "roles": ["admin"] } },
        }),
    );
    let t = v.verify(&token).await.unwrap();
    assert_eq!((t.tenant.as_str(), t.role), ("globex", Role::Operator));

    // Namespaced claims (Auth0's style) read by JSON Pointer.
    let token = ed.sign(
        &idp.issuer("ed"),
        "auth0|42",
        json!({
            "https://tenancy.example/tenant_id": "initech",
            "https://tenancy.example/roles": "viewer",
        }),
    );
    let t = v.verify(&token).await.unwrap();
    assert_eq!(
        (t.tenant.as_str(), t.role, &*t.subject),
        ("initech", Role::Viewer, "auth0|42")
    );

    // One discovery and one JWK set fetch per realm, however many tokens.
    for realm in ["rs", "es", "ed"] {
        assert_eq!(idp.hits(&IdpServer::discovery_path(realm)), 1, "{realm}");
        assert_eq!(idp.hits(&IdpServer::certs_path(realm)), 1, "{realm}");
    }
    // The encryption key Keycloak publishes verifies nothing.
    let forged = Signer::rs256(RSA2_PRIVATE, "enc-key").sign(
        &idp.issuer("rs"),
        "mallory",
        json!({ "tenant_id": "acme", "preferred_username": "mallory", "realm_access": { "roles": ["viewer"] } }),
    );
    assert_eq!(
        rejection(v.verify(&forged).await),
        TokenRejection::Signature
    );
}

#[tokio::test]
async fn no_known_role_and_roles_above_the_ceiling_are_refused() {
    let idp = IdpServer::start().await;
    let rs = Signer::rs256(RSA_PRIVATE, "rs-1");
    idp.publish_realm("kc", keycloak_certs(&[&rs]));
    let v = verifier([
        RealmConfig::discovered("kc", idp.issuer("kc")).claims(mapping(
            "tenant_id",
            "realm_access.roles",
            "sub",
        )),
    ]);
    let token = |roles: Value| {
        rs.sign(
            &idp.issuer("kc"),
            "alice",
            json!({ "tenant_id": "acme", "realm_access": { "roles": roles } }),
        )
    };
    let no_role = token(json!([
        "offline_access",
        "uma_authorization",
        "default-roles-kc"
    ]));
    assert_eq!(rejection(v.verify(&no_role).await), TokenRejection::Claims);
    let above = token(json!(["viewer", "cpi-admin"]));
    assert_eq!(rejection(v.verify(&above).await), TokenRejection::Realm);
    let missing = rs.sign(&idp.issuer("kc"), "alice", json!({ "tenant_id": "acme" }));
    assert_eq!(rejection(v.verify(&missing).await), TokenRejection::Claims);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let idp = IdpServer::start().await;
    let rs = Signer::rs256(RSA_PRIVATE, "rs-1");
    idp.publish_realm("kc", keycloak_certs(&[&rs]));
    let issuer = idp.issuer("kc");
    // What an attacker who controls the document might try: the real
    // issuer with a trailing slash, another host's, another realm's.
    for named in [
        format!("{issuer}/"),
        "https://evil.example/realms/kc".to_owned(),
        idp.issuer("other"),
    ] {
        let mut document = crate::testkit::idp::keycloak_discovery(&issuer);
        document["issuer"] = json!(named);
        idp.set(&IdpServer::discovery_path("kc"), Reply::json(&document));
        let (logs, _guard) = Logs::capture();
        let v = verifier([RealmConfig::discovered("kc", &issuer).claims(mapping(
            "tenant_id",
            "realm_access.roles",
            "sub",
        ))]);
        let token = rs.sign(
            &issuer,
            "alice",
            json!({ "tenant_id": "acme", "realm_access": { "roles": ["viewer"] } }),
        );
        let err = v.verify(&token).await.unwrap_err();
        assert_eq!(err.code(), "store_unavailable", "{named}");
        assert!(logs.text().contains("names the issuer"), "{}", logs.text());
    }
    assert_eq!(idp.hits(&IdpServer::certs_path("kc")), 0);
}

#[tokio::test]
async fn a_new_kid_is_found_by_one_refresh_and_a_removed_one_is_refused() {
    let idp = IdpServer::start().await;
    let (old, new) = (
        Signer::rs256(RSA_PRIVATE, "2024-key"),
        Signer::rs256(RSA2_PRIVATE, "2025-key"),
    );
    idp.publish_realm("kc", keycloak_certs(&[&old]));
    let issuer = idp.issuer("kc");
    let v = verifier([RealmConfig::discovered("kc", &issuer).claims(mapping(
        "tenant_id",
        "realm_access.roles",
        "sub",
    ))]);
    let token = |signer: &Signer, subject: &str| {
        signer.sign(
            &issuer,
            subject,
            json!({ "tenant_id": "acme", "realm_access": { "roles": ["viewer"] } }),
        )
    };
    assert!(v.verify(&token(&old, "a")).await.is_ok());

    // Keycloak rotates: the new key is published next to the old one.
    idp.publish_realm("kc", keycloak_certs(&[&old, &new]));
    tokio::time::sleep(fast().min_refresh).await;
    assert!(v.verify(&token(&new, "b")).await.is_ok());
    assert!(v.verify(&token(&old, "c")).await.is_ok());
    let certs = IdpServer::certs_path("kc");
    assert_eq!(idp.hits(&certs), 2);
    // The discovered set URL is kept: no second discovery.
    assert_eq!(idp.hits(&IdpServer::discovery_path("kc")), 1);

    // The old key is withdrawn: once refreshed, its tokens are refused.
    idp.publish_realm("kc", keycloak_certs(&[&new]));
    tokio::time::sleep(fast().min_refresh).await;
    assert!(v.verify(&token(&new, "d")).await.is_ok());
    // Refreshing for an unknown kid finds the old one gone.
    let unknown = Signer::rs256(RSA_PRIVATE, "never-published");
    assert_eq!(
        rejection(v.verify(&token(&unknown, "e")).await),
        TokenRejection::Signature
    );
    tokio::time::sleep(fast().min_refresh).await;
    assert_eq!(
        rejection(v.verify(&token(&old, "f")).await),
        TokenRejection::Signature
    );
    // A flood of unknown kids within one interval costs no more fetches.
    let flood: Vec<String> = (0..20)
        .map(|i| token(&Signer::rs256(RSA_PRIVATE, &format!("flood-{i}")), "g"))
        .collect();
    tokio::time::sleep(fast().min_refresh).await;
    let before = idp.hits(&certs);
    for token in &flood {
        assert!(v.verify(token).await.is_err());
    }
    assert!(
        idp.hits(&certs) <= before + 1,
        "{} fetches",
        idp.hits(&certs) - before
    );
}

#[tokio::test]
async fn bad_discovery_and_jwk_set_answers_are_logged_and_refuse_the_token() {
    let idp = IdpServer::start().await;
    let rs = Signer::rs256(RSA_PRIVATE, "rs-1");
    let huge = format!("{{\"issuer\":\"x\",\"pad\":\"{}\"}}", " ".repeat(1 << 20));
    let unknown_types = json!({ "keys": [
        { "kty": "XYZ", "kid": "x", "alg": "RS256", "use": "sig" },
        { "kty": "oct", "kid": "o", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" },
    ] });
    // (realm, whether the discovery document or the JWK set is bad, the
    // bad answer given the issuer, what the log line says)
    type BadReply = Box<dyn Fn(&str) -> Reply>;
    let cases: Vec<(&str, bool, BadReply, &str)> = vec![
        (
            "not-json",
            true,
            Box::new(|_| Reply::raw(200, "text/html", "<html>login</html>")),
            "not an OIDC discovery document",
        ),
        (
            "no-jwks-uri",
            true,
            Box::new(|issuer| Reply::json(&json!({ "issuer": issuer }))),
            "missing field `jwks_uri`",
        ),
        (
            "too-large",
            true,
            Box::new(move |_| Reply::raw(200, "application/json", huge.clone())),
            "larger than",
        ),
        (
            "redirects",
            true,
            Box::new(|_| {
                Reply::status(302).header(
                    "location",
                    "/realms/elsewhere/.well-known/openid-configuration",
                )
            }),
            "redirects are not followed",
        ),
        (
            "server-error",
            true,
            Box::new(|_| Reply::status(500)),
            "500",
        ),
        (
            "hangs",
            true,
            Box::new(|_| Reply::status(200).after(Duration::from_secs(30))),
            "timed out",
        ),
        (
            "unknown-key-types",
            false,
            Box::new(move |_| Reply::json(&unknown_types)),
            "no usable signing key",
        ),
        (
            "jwks-not-json",
            false,
            Box::new(|_| Reply::raw(200, "application/json", "{\"keys\": [tru")),
            "not a JWK set",
        ),
    ];
    for (realm, at_discovery, bad_reply, expected) in cases {
        idp.publish_realm(realm, keycloak_certs(&[&rs]));
        let issuer = idp.issuer(realm);
        let path = if at_discovery {
            IdpServer::discovery_path(realm)
        } else {
            IdpServer::certs_path(realm)
        };
        idp.set(&path, bad_reply(&issuer));
        let (logs, guard) = Logs::capture();
        let v = verifier([RealmConfig::discovered(realm, &issuer)]);
        let token = rs.sign(
            &issuer,
            "alice",
            json!({ "tenant_id": "acme", "role": "viewer" }),
        );
        let started = std::time::Instant::now();
        let err = v.verify(&token).await.unwrap_err();
        drop(guard);
        assert_eq!(err.code(), "store_unavailable", "{realm}");
        assert_eq!(err.status(), 503, "{realm}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{realm}: no hang ({:?})",
            started.elapsed()
        );
        let text = logs.text();
        assert!(
            text.contains("JWK set fetch failed") && text.contains(expected),
            "{realm}: {text}"
        );
        assert!(!text.contains("BEGIN"), "{realm}: no key material in logs");
        // Nothing was loaded, and the next token within the interval costs
        // no fetch.
        let hits = idp.hits(&path);
        assert!(v.verify(&token).await.is_err());
        assert_eq!(idp.hits(&path), hits, "{realm}");
    }
}

#[tokio::test]
async fn a_tenant_realm_is_used_while_the_store_has_it_and_never_after() {
    use crate::store::RealmStore;
    use crate::store::memory::MemoryRealmStore;

    let (idp, ca) = IdpServer::start_private_tls().await;
    let rs = Signer::rs256(RSA_PRIVATE, "bigcorp-1");
    idp.publish_realm("bigcorp", keycloak_certs(&[&rs]));
    let issuer = idp.issuer("bigcorp");
    let store = MemoryRealmStore::new();
    let bigcorp = TenantId::new("bigcorp").unwrap();
    // Token caching on: a removed realm's cached tokens must not outlive it.
    let v = tenant_realm_verifier(&ca, true);
    let token = |roles: Value, tenant: Option<&str>| {
        let mut claims = json!({ "aud": "tenancy", "realm_access": { "roles": roles } });
        if let Some(tenant) = tenant {
            claims["tenant_id"] = json!(tenant);
        }
        rs.sign(&issuer, "carol", claims)
    };
    let admin = token(json!(["tenant-admin"]), None);
    let verify = |token: String| {
        let v = v.clone();
        let store = &store;
        let issuer = issuer.clone();
        async move { v.verify_in_tenant_realm(&token, &issuer, store).await }
    };

    // Unknown issuer: refused, nothing fetched.
    assert_eq!(
        rejection(verify(admin.clone()).await),
        TokenRejection::Issuer
    );
    assert_eq!(idp.hits(&IdpServer::discovery_path("bigcorp")), 0);
    // The public API knows only the configured realms.
    assert_eq!(rejection(v.verify(&admin).await), TokenRejection::Issuer);

    let realm = TenantRealm::discovered(&issuer)
        .audience("tenancy")
        .claims(mapping("tenant_id", "realm_access.roles", "sub"));
    store.put(&bigcorp, realm.clone()).await.unwrap();
    let t = verify(admin.clone()).await.unwrap();
    assert_eq!(
        (&*t.realm, t.tenant.as_str(), t.role),
        ("tenant:bigcorp", "bigcorp", Role::Admin)
    );
    assert!(verify(admin.clone()).await.is_ok(), "a cached repeat");
    // Dedicated to its tenant, capped at admin.
    assert_eq!(
        rejection(verify(token(json!(["viewer"]), Some("globex"))).await),
        TokenRejection::Realm
    );
    for platform in [
        json!(["super_admin"]),
        json!(["cpi-admin", "viewer"]),
        json!(["system"]),
    ] {
        assert_eq!(
            rejection(verify(token(platform.clone(), None)).await),
            TokenRejection::Realm,
            "{platform}"
        );
    }

    // Changing its mapping counts from the next token.
    store
        .put(
            &bigcorp,
            realm
                .clone()
                .claims(mapping("tenant_id", "resource_access.x.roles", "sub")),
        )
        .await
        .unwrap();
    assert_eq!(
        rejection(verify(admin.clone()).await),
        TokenRejection::Claims
    );
    store.put(&bigcorp, realm).await.unwrap();
    assert!(verify(admin.clone()).await.is_ok());

    // Removed: the very token verified a moment ago is refused.
    assert!(store.remove(&bigcorp).await.unwrap());
    assert_eq!(rejection(verify(admin).await), TokenRejection::Issuer);
}

/// A verifier for tenant realms whose keys are behind a private CA
/// (`ca_pem`) on loopback, which `egress.allow` lets it reach; verified
/// tokens are cached when `cache`.
fn tenant_realm_verifier(ca_pem: &str, cache: bool) -> JwtVerifier {
    let mut config = TenancyConfig::default();
    config.auth.token_cache_capacity = if cache { 100 } else { 0 };
    config.auth.ca_file = Some(temp_file("tenant-ca.pem", ca_pem));
    config.egress.allow = vec!["127.0.0.1/32".parse().unwrap()];
    JwtVerifier::build(&config, fast()).unwrap()
}

/// A private CA, and a certificate for `127.0.0.1` it signed: PEM of the
/// CA, of the server's certificate, and of the server's key.
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tenancy test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("tenancy-idp-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn an_on_premises_issuer_behind_a_private_ca_is_trusted_through_ca_file_only() {
    let (ca, cert, key) = private_ca();
    let idp = IdpServer::start_tls(&cert, &key).await;
    assert!(idp.base_url().starts_with("https://127.0.0.1:"));
    let rs = Signer::rs256(RSA_PRIVATE, "onprem-1");
    idp.publish_realm("corp", keycloak_certs(&[&rs]));
    let issuer = idp.issuer("corp");
    let token = rs.sign(
        &issuer,
        "erin",
        json!({ "tenant_id": "acme", "role": "viewer" }),
    );
    let ca_file = temp_file("ca.pem", &ca);
    let build = |realm_ca: Option<&std::path::Path>, global_ca: Option<&std::path::Path>| {
        let mut realm = RealmConfig::discovered("corp", &issuer);
        realm.ca_file = realm_ca.map(Into::into);
        let mut config = TenancyConfig::builder().realm(realm).build().unwrap();
        config.auth.ca_file = global_ca.map(Into::into);
        config.auth.token_cache_capacity = 0;
        JwtVerifier::build(&config, fast()).unwrap()
    };

    // The system's roots do not know the CA: no keys, tokens refused.
    let (logs, guard) = Logs::capture();
    let err = build(None, None).verify(&token).await.unwrap_err();
    drop(guard);
    assert_eq!(err.code(), "store_unavailable");
    let text = logs.text();
    assert!(
        text.contains("JWK set fetch failed") && text.contains("invalid peer certificate"),
        "{text}"
    );
    assert_eq!(
        idp.hits(&IdpServer::discovery_path("corp")),
        0,
        "no plain-text fallback"
    );

    // The realm's CA file, or the global one.
    for v in [build(Some(&ca_file), None), build(None, Some(&ca_file))] {
        let t = v.verify(&token).await.unwrap();
        assert_eq!((t.tenant.as_str(), t.role), ("acme", Role::Viewer));
    }

    // An https issuer's document may not send the key fetch into the clear.
    let plain = IdpServer::start().await;
    plain.publish_realm("corp", keycloak_certs(&[&rs]));
    let mut document = crate::testkit::idp::keycloak_discovery(&issuer);
    document["jwks_uri"] = json!(format!(
        "{}{}",
        plain.base_url(),
        IdpServer::certs_path("corp")
    ));
    idp.set(&IdpServer::discovery_path("corp"), Reply::json(&document));
    let (logs, guard) = Logs::capture();
    let err = build(Some(&ca_file), None)
        .verify(&token)
        .await
        .unwrap_err();
    drop(guard);
    assert_eq!(err.code(), "store_unavailable");
    assert!(logs.text().contains("not https"), "{}", logs.text());
    assert_eq!(plain.hits(&IdpServer::certs_path("corp")), 0);
}

/// A tenant realm put straight into the store (as a realm written before
/// the rules, or by another tool, would be), and a token naming its issuer.
async fn try_realm(v: &JwtVerifier, realm: TenantRealm) -> Result<VerifiedToken, TenancyError> {
    use crate::store::RealmStore;
    let store = crate::store::memory::MemoryRealmStore::new();
    let issuer = realm.issuer.clone();
    store
        .put(&TenantId::new("mallory").unwrap(), realm)
        .await
        .unwrap();
    let signer = Signer::rs256(RSA_PRIVATE, "bigcorp-1");
    let token = signer.sign(&issuer, "m", json!({ "aud": "tenancy", "role": "admin" }));
    v.verify_in_tenant_realm(&token, &issuer, &store).await
}

#[tokio::test]
async fn a_tenant_realm_never_makes_the_server_reach_an_internal_address() {
    let internal = Trap::bind("127.0.0.1").await;
    let port = internal.addr().port();
    // No egress.allow: loopback is internal like any other private range.
    let mut config = TenancyConfig::default();
    config.auth.token_cache_capacity = 0;
    let v = JwtVerifier::build(&config, fast()).unwrap();
    let jwks_urls = [
        format!("http://127.0.0.1:{port}/"),
        format!("HTTP://127.0.0.1:{port}/internal"),
        format!("http://localhost:{port}/?query=SELECT%201"),
        format!("https://127.0.0.1:{port}/jwks"),
        format!("HTTPS://127.0.0.1:{port}/jwks"),
        format!("https://localhost:{port}/jwks"),
        format!("https://LOCALHOST:{port}/jwks"),
        format!("https://[::ffff:127.0.0.1]:{port}/jwks"),
        format!("https://2130706433:{port}/jwks"),
    ];
    for url in &jwks_urls {
        let realm = TenantRealm::with_jwks_url("https://id.mallory.example", url.as_str())
            .audience("tenancy");
        let err = try_realm(&v, realm).await.unwrap_err();
        assert!(
            matches!(err.code(), "invalid_token" | "store_unavailable"),
            "{url}: {err:?}"
        );
        assert_eq!(internal.connections(), 0, "{url} reached the internal port");
    }
    for issuer in [
        format!("https://127.0.0.1:{port}/realms/x"),
        format!("HTTPS://LOCALHOST:{port}/realms/x"),
        format!("http://127.0.0.1:{port}/realms/x"),
    ] {
        let realm = TenantRealm::discovered(issuer.as_str()).audience("tenancy");
        assert!(try_realm(&v, realm).await.is_err(), "{issuer}");
    }
    assert_eq!(
        internal.connections(),
        0,
        "no connection reached the internal port"
    );
}

#[tokio::test]
async fn an_allowed_identity_provider_cannot_point_the_server_elsewhere() {
    // Bigcorp's Keycloak is on the internal network, and allowed…
    let (idp, ca) = IdpServer::start_private_tls().await;
    let rs = Signer::rs256(RSA_PRIVATE, "bigcorp-1");
    idp.publish_realm("bigcorp", keycloak_certs(&[&rs]));
    let issuer = idp.issuer("bigcorp");
    let realm = TenantRealm::discovered(issuer.as_str()).audience("tenancy");
    let allowed = tenant_realm_verifier(&ca, false);
    let t = try_realm(&allowed, realm.clone()).await.unwrap();
    assert_eq!((t.tenant.as_str(), t.role), ("mallory", Role::Admin));

    // …and the same realm is refused without the allowance: nothing fetched.
    let hits = idp.hits(&IdpServer::discovery_path("bigcorp"));
    let mut config = TenancyConfig::default();
    config.auth.token_cache_capacity = 0;
    config.auth.ca_file = Some(temp_file("ca.pem", &ca));
    let strict = JwtVerifier::build(&config, fast()).unwrap();
    assert_eq!(
        try_realm(&strict, realm.clone()).await.unwrap_err().code(),
        "store_unavailable"
    );
    assert_eq!(idp.hits(&IdpServer::discovery_path("bigcorp")), hits);

    // Its discovery document names an address outside the allowance, in
    // every spelling: nothing connects there.
    let internal = Trap::bind("127.0.0.2").await;
    let port = internal.addr().port();
    for jwks_uri in [
        format!("https://127.0.0.2:{port}/certs"),
        format!("HTTPS://127.0.0.2:{port}/certs"),
        format!("http://127.0.0.2:{port}/certs"),
        format!("HTTP://127.0.0.2:{port}/certs"),
        format!("https://169.254.169.254:{port}/latest/meta-data/"),
    ] {
        let mut document = crate::testkit::idp::keycloak_discovery(&issuer);
        document["jwks_uri"] = json!(jwks_uri);
        idp.set(
            &IdpServer::discovery_path("bigcorp"),
            Reply::json(&document),
        );
        let fresh = tenant_realm_verifier(&ca, false);
        let err = try_realm(&fresh, realm.clone()).await.unwrap_err();
        assert_eq!(err.code(), "store_unavailable", "{jwks_uri}");
    }
    assert_eq!(internal.connections(), 0);
}

/// `count` JWKs of one Ed25519 key under kids `k0`, `k1`, …
fn many_keys(signer: &Signer, count: usize) -> Value {
    let keys: Vec<Value> = (0..count)
        .map(|i| {
            let mut jwk = signer.jwk();
            jwk["kid"] = json!(format!("k{i}"));
            jwk["alg"] = json!("EdDSA");
            jwk
        })
        .collect();
    json!({ "keys": keys })
}

#[tokio::test]
async fn a_jwk_set_of_thousands_of_keys_is_refused_and_the_last_good_keys_serve() {
    let idp = IdpServer::start().await;
    let ed = Signer::eddsa("k0");
    idp.publish_realm("big", many_keys(&ed, 1));
    let issuer = idp.issuer("big");
    let v = verifier([RealmConfig::discovered("big", &issuer)]);
    let good = ed.sign(
        &issuer,
        "erin",
        json!({ "tenant_id": "acme", "role": "viewer" }),
    );
    assert!(v.verify(&good).await.is_ok());

    idp.publish_realm("big", many_keys(&ed, 5_000));
    let certs = IdpServer::certs_path("big");
    let (logs, guard) = Logs::capture();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        // An unknown kid asks for a refresh (at most one per interval).
        let unknown = Signer::eddsa(&format!("new-{round}"));
        let token = unknown.sign(
            &issuer,
            "x",
            json!({ "tenant_id": "acme", "role": "viewer" }),
        );
        let before = idp.hits(&certs);
        assert_eq!(rejection(v.verify(&token).await), TokenRejection::Signature);
        assert_eq!(idp.hits(&certs), before + 1, "round {round}: one fetch");
    }
    drop(guard);
    let text = logs.text();
    assert_eq!(
        text.matches("WARN").count(),
        1,
        "a failure that repeats is logged once: {text}"
    );
    assert!(text.contains("at most 64"), "{text}");
    // The realm kept the one key it had.
    assert!(v.verify(&good).await.is_ok());
}

#[tokio::test]
async fn a_token_is_checked_against_its_kid_or_at_most_three_keys() {
    // 64 distinct keys, the most a set may hold.
    let signers: Vec<Signer> = (0..64)
        .map(|i| Signer::EdDsa(Ed25519KeyPair::generate().with_key_id(&format!("k{i}"))))
        .collect();
    let with_kids: Vec<Value> = signers
        .iter()
        .map(|s| {
            let mut jwk = s.jwk();
            jwk["alg"] = json!("EdDSA");
            jwk
        })
        .collect();
    let without_kids: Vec<Value> = with_kids
        .iter()
        .cloned()
        .map(|mut jwk| {
            jwk.as_object_mut().unwrap().remove("kid");
            jwk
        })
        .collect();
    let idp = IdpServer::start().await;
    idp.publish_realm("kids", json!({ "keys": with_kids }));
    idp.publish_realm("bare", json!({ "keys": without_kids }));
    let claims = json!({ "tenant_id": "acme", "role": "viewer" });
    let kids = idp.issuer("kids");
    let bare = idp.issuer("bare");
    let v = verifier([
        RealmConfig::discovered("kids", &kids),
        RealmConfig::discovered("bare", &bare),
    ]);

    // With a kid: that key, wherever it is in the set.
    assert!(
        v.verify(&signers[63].sign(&kids, "a", claims.clone()))
            .await
            .is_ok()
    );
    // Without one: the first three keys of the alg, and no more.
    let unnamed = |i: usize| {
        let Signer::EdDsa(k) = &signers[i] else {
            unreachable!()
        };
        let k = Ed25519KeyPair::from_bytes(&k.to_bytes()).unwrap();
        Signer::EdDsa(k).sign(&bare, "a", claims.clone())
    };
    assert!(v.verify(&unnamed(2)).await.is_ok());
    assert_eq!(
        rejection(v.verify(&unnamed(3)).await),
        TokenRejection::Signature
    );
    assert_eq!(
        rejection(v.verify(&unnamed(63)).await),
        TokenRejection::Signature
    );
}
