//! The engine's per-request cost: `Tenancy::admit` then `Admission::finish`
//! on the in-memory stores, one group per path, each next to a bare async fn
//! run through the very same loop (targets: BENCHMARKS.md):
//!
//! - `features_off`: tenancy disabled, default tenant, anonymous caller, no
//!   rate limits (target: ≤ 300 ns over bare);
//! - `header_tenant`: anonymous viewer naming its tenant in `X-Tenant-ID`,
//!   tenant rate limit on;
//! - `api_key`: a full-scope key with its own limit, a POST, so `complete`
//!   meters and enqueues an audit event (target: ≤ 1 µs over bare);
//! - `hs256`, `rs256`, `es256`: a bearer token of a realm of that algorithm,
//!   next to `jsonwebtoken::decode` of the same token with the same key
//!   (targets: HS256 ≤ decode + 500 ns; RS256/ES256 ≤ 1.1 × raw verify).
//!   `tenancy` hits the verified-token cache after the first call;
//!   `tenancy_uncached` runs with `token_cache_capacity = 0` and verifies
//!   every time;
//! - `api_key_not_found_vs_revoked`: a well-formed key nobody issued and a
//!   revoked key, both refused after one digest and one lookup (their
//!   medians should be within 10 %).
//!
//! ```text
//! cargo bench -p tenancy-benches --bench admit
//! cargo bench -p tenancy-benches --bench admit -- api_key
//! ```
//!
//! Everything runs on one current-thread tokio runtime; each sample is one
//! `block_on` of a loop of `iters` requests (see `fixture::timed`), for the
//! bare baseline as for the engine. The tenant and the key have rate limits
//! no loop reaches, so no request is refused; each path is checked once
//! before it is measured.

use crate::fixture;

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use http::request::Parts;
use http::{Method, Request, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use tenancy_core::Tenancy;
use tenancy_core::config::{JwtAlgorithm, RealmConfig, RealmKeyConfig, TenancyConfig};
use tenancy_core::credential::JwtClaims;
use tenancy_core::engine::RequestHead;
use tokio::runtime::Runtime;

/// The bare async fn, through the same loop.
const BARE: &str = "bare";
/// `admit` + `finish`.
const TENANCY: &str = "tenancy";
/// `admit` + `finish` with the verified-token cache off.
const TENANCY_UNCACHED: &str = "tenancy_uncached";
/// `jsonwebtoken::decode` alone, of the same token with the same key.
const DECODE: &str = "jsonwebtoken_decode";

/// The route every request calls.
const PATH: &str = "/api/v1/things";

/// The head of a request to [`PATH`].
fn request(method: Method, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::builder().method(method).uri(PATH);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("valid request").into_parts().0
}

/// The baseline: an async fn that reads the request head and answers.
async fn bare(parts: &Parts) -> StatusCode {
    if black_box(parts).method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// What the adapters do around a handler: admit (at once when the stores
/// answer at once, else awaited), then finish with the answer (its headers
/// written into a map, as an answer's would be).
async fn admit_and_complete(tenancy: &Tenancy, parts: &Parts) -> http::HeaderMap {
    let head = RequestHead::from(parts);
    let admission = match tenancy.admit_now(&head) {
        Some(answer) => answer,
        None => tenancy.admit(&head).await,
    }
    .expect("admitted");
    let mut headers = http::HeaderMap::new();
    admission.finish(StatusCode::OK, |name, value| {
        headers.insert(name.clone(), value);
    });
    headers
}

/// An engine over `config` on the in-memory stores, with the bench tenant.
fn engine(rt: &Runtime, config: TenancyConfig) -> Tenancy {
    rt.block_on(async {
        let tenancy = Tenancy::builder(config).build().expect("engine");
        fixture::create_tenant(&tenancy).await;
        tenancy
    })
}

/// Fails unless `parts` is admitted for the bench tenant.
fn assert_admitted(rt: &Runtime, tenancy: &Tenancy, parts: &Parts) {
    let admission = rt
        .block_on(tenancy.admit(&RequestHead::from(parts)))
        .unwrap_or_else(|e| panic!("refused: {}", e.code()));
    let ctx = admission.context().expect("a tenant context");
    assert_eq!(ctx.tenant_id().as_str(), fixture::TENANT);
}

/// Checks nothing was dropped, then writes the buffers out and stops.
fn finish(rt: &Runtime, tenancy: &Tenancy) {
    fixture::assert_nothing_dropped(tenancy);
    rt.block_on(tenancy.shutdown());
}

/// Adds the bare baseline to `group`.
fn bench_bare(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, parts: &Parts) {
    group.bench_function(BARE, |b| {
        b.iter_custom(|iters| rt.block_on(fixture::timed(iters, None, async || bare(parts).await)));
    });
}

/// Adds `admit` + `complete` of `parts` on `tenancy` to `group` as `id`.
fn bench_tenancy(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    rt: &Runtime,
    tenancy: &Tenancy,
    parts: &Parts,
) {
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            rt.block_on(fixture::timed(iters, Some(tenancy), async || {
                admit_and_complete(tenancy, parts).await
            }))
        });
    });
}

/// A group of the bare baseline and one engine path.
fn bench_path(c: &mut Criterion, name: &str, rt: &Runtime, tenancy: &Tenancy, parts: &Parts) {
    assert_admitted(rt, tenancy, parts);
    let mut group = c.benchmark_group(name);
    bench_bare(&mut group, rt, parts);
    bench_tenancy(&mut group, TENANCY, rt, tenancy, parts);
    group.finish();
}

mod features_off {
    use super::*;

    /// Tenancy disabled: every request maps to the default tenant as an
    /// anonymous viewer, with no rate limit.
    pub(super) fn bench(c: &mut Criterion, rt: &Runtime) {
        let config = TenancyConfig::from_vars([
            ("TENANCY_ENABLED", "false"),
            ("TENANCY_DEFAULT_TENANT", fixture::TENANT),
            ("TENANCY_ANONYMOUS_ROLE", "viewer"),
            ("TENANCY_RATE_LIMITS", "false"),
        ])
        .expect("config");
        let tenancy = engine(rt, config);
        bench_path(c, "features_off", rt, &tenancy, &request(Method::GET, &[]));
        finish(rt, &tenancy);
    }
}

mod header_tenant {
    use super::*;
    use tenancy_core::rbac::Role;

    /// An anonymous viewer naming its tenant in the header, tenant rate
    /// limit on.
    pub(super) fn bench(c: &mut Criterion, rt: &Runtime) {
        let config = TenancyConfig::builder()
            .anonymous_role(Role::Viewer)
            .build()
            .expect("config");
        let tenancy = engine(rt, config);
        let parts = request(Method::GET, &[("x-tenant-id", fixture::TENANT)]);
        bench_path(c, "header_tenant", rt, &tenancy, &parts);
        finish(rt, &tenancy);
    }
}

mod api_key {
    use super::*;

    /// A full-scope key with its own limit, on a POST: digest, lookup,
    /// per-key and per-tenant limiter, metering, audit enqueue.
    pub(super) fn bench(c: &mut Criterion, rt: &Runtime) {
        let tenancy = engine(rt, TenancyConfig::default());
        let key = rt.block_on(fixture::issue_key(&tenancy));
        let parts = request(Method::POST, &[("x-api-key", key.secret.expose())]);
        bench_path(c, "api_key", rt, &tenancy, &parts);
        finish(rt, &tenancy);
    }
}

mod jwt {
    use super::*;

    const RSA_PRIVATE: &str =
        include_str!("../../../tenancy-core/src/credential/jwt/testdata/rsa_private.pem");
    const RSA_PUBLIC: &str =
        include_str!("../../../tenancy-core/src/credential/jwt/testdata/rsa_public.pem");
    const EC_PRIVATE: &str =
        include_str!("../../../tenancy-core/src/credential/jwt/testdata/ec_private.pem");
    const EC_PUBLIC: &str =
        include_str!("../../../tenancy-core/src/credential/jwt/testdata/ec_public.pem");

    const RS256_ISSUER: &str = "https://id.example.com/realms/rs256";
    const ES256_ISSUER: &str = "https://id.example.com/realms/es256";

    /// One realm of `algorithm` with the PEM public key `pem`.
    fn pem_realm(name: &str, issuer: &str, algorithm: JwtAlgorithm, pem: &str) -> RealmConfig {
        RealmConfig::new(name, issuer, vec![RealmKeyConfig::pem(algorithm, pem)])
    }

    /// Three shared realms, HS256, RS256 and ES256; `token_cache_capacity`
    /// 0 turns the verified-token cache off.
    fn config(token_cache_capacity: usize) -> TenancyConfig {
        let mut config = TenancyConfig::builder()
            .jwt_hs256(fixture::HS256_ISSUER, fixture::HS256_SECRET)
            .realm(pem_realm(
                "rs256",
                RS256_ISSUER,
                JwtAlgorithm::RS256,
                RSA_PUBLIC,
            ))
            .realm(pem_realm(
                "es256",
                ES256_ISSUER,
                JwtAlgorithm::ES256,
                EC_PUBLIC,
            ))
            .build()
            .expect("config");
        config.auth.token_cache_capacity = token_cache_capacity;
        config
    }

    /// One algorithm's token, and what `jsonwebtoken::decode` needs to
    /// verify it alone.
    struct Case {
        group: &'static str,
        token: String,
        key: DecodingKey,
        validation: Validation,
    }

    impl Case {
        fn new(
            group: &'static str,
            algorithm: Algorithm,
            issuer: &str,
            token: String,
            key: DecodingKey,
        ) -> Self {
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[issuer]);
            validation.leeway = 30;
            Self {
                group,
                token,
                key,
                validation,
            }
        }

        fn decode(&self) -> JwtClaims {
            jsonwebtoken::decode::<JwtClaims>(&self.token, &self.key, &self.validation)
                .expect("jsonwebtoken accepts the token")
                .claims
        }
    }

    fn cases() -> Vec<Case> {
        let sign = |algorithm, issuer, key: &EncodingKey| {
            jsonwebtoken::encode(&Header::new(algorithm), &fixture::claims(issuer), key)
                .expect("sign")
        };
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA key");
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("EC key");
        vec![
            Case::new(
                "hs256",
                Algorithm::HS256,
                fixture::HS256_ISSUER,
                fixture::hs256_token(),
                DecodingKey::from_secret(fixture::HS256_SECRET.as_bytes()),
            ),
            Case::new(
                "rs256",
                Algorithm::RS256,
                RS256_ISSUER,
                sign(Algorithm::RS256, RS256_ISSUER, &rsa),
                DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).expect("RSA key"),
            ),
            Case::new(
                "es256",
                Algorithm::ES256,
                ES256_ISSUER,
                sign(Algorithm::ES256, ES256_ISSUER, &ec),
                DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).expect("EC key"),
            ),
        ]
    }

    /// Per algorithm: bare, `admit` with the token cache (hit after the
    /// first call), `admit` without it, and `jsonwebtoken::decode` alone.
    pub(super) fn bench(c: &mut Criterion, rt: &Runtime) {
        let cached = engine(rt, config(10_000));
        let uncached = engine(rt, config(0));
        for case in cases() {
            assert_eq!(case.decode().tenant_id.as_deref(), Some(fixture::TENANT));
            let bearer = format!("Bearer {}", case.token);
            let parts = request(Method::GET, &[("authorization", &bearer)]);
            assert_admitted(rt, &cached, &parts);
            assert_admitted(rt, &uncached, &parts);

            let mut group = c.benchmark_group(case.group);
            bench_bare(&mut group, rt, &parts);
            bench_tenancy(&mut group, TENANCY, rt, &cached, &parts);
            bench_tenancy(&mut group, TENANCY_UNCACHED, rt, &uncached, &parts);
            group.bench_function(DECODE, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(fixture::timed(iters, None, async || case.decode()))
                });
            });
            group.finish();
        }
        finish(rt, &cached);
        finish(rt, &uncached);
    }
}

mod api_key_not_found_vs_revoked {
    use super::*;
    use tenancy_core::credential::{ApiKeySecret, new_key_id};
    use tenancy_core::error::{ApiKeyRejection, ErrorKind};

    /// Fails unless `parts` is refused as `invalid_api_key` for `why`.
    fn assert_refused(rt: &Runtime, tenancy: &Tenancy, parts: &Parts, why: ApiKeyRejection) {
        let err = rt
            .block_on(tenancy.admit(&RequestHead::from(parts)))
            .expect_err("refused");
        assert_eq!(err.code(), "invalid_api_key");
        assert!(
            matches!(err.kind(), ErrorKind::InvalidApiKey(r) if *r == why),
            "{:?}",
            err.kind()
        );
    }

    /// Both refusals: one digest and one lookup each.
    pub(super) fn bench(c: &mut Criterion, rt: &Runtime) {
        let tenancy = engine(rt, TenancyConfig::default());
        let revoked = rt.block_on(async {
            let key = fixture::issue_key(&tenancy).await;
            let tenant = fixture::tenant_id();
            tenancy
                .admin()
                .revoke_api_key(&tenant, &key.record.key_id)
                .await
                .expect("revoke");
            key
        });
        let prefix = &tenancy.config().auth.api_key_prefix;
        let unissued =
            ApiKeySecret::generate(prefix, new_key_id().expect("randomness")).expect("randomness");
        let not_found = request(Method::GET, &[("x-api-key", unissued.expose())]);
        let revoked = request(Method::GET, &[("x-api-key", revoked.secret.expose())]);
        assert_refused(rt, &tenancy, &not_found, ApiKeyRejection::Unknown);
        assert_refused(rt, &tenancy, &revoked, ApiKeyRejection::Revoked);

        let mut group = c.benchmark_group("api_key_not_found_vs_revoked");
        bench_bare(&mut group, rt, &not_found);
        for (id, parts) in [("not_found", &not_found), ("revoked", &revoked)] {
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(fixture::timed(iters, Some(&tenancy), async || {
                        tenancy.admit(&RequestHead::from(parts)).await.err()
                    }))
                });
            });
        }
        group.finish();
        finish(rt, &tenancy);
    }
}

/// Runs the `admit` groups.
pub(crate) fn run() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut criterion = fixture::criterion();
    features_off::bench(&mut criterion, &rt);
    header_tenant::bench(&mut criterion, &rt);
    api_key::bench(&mut criterion, &rt);
    jwt::bench(&mut criterion, &rt);
    api_key_not_found_vs_revoked::bench(&mut criterion, &rt);
    criterion.final_summary();
}
