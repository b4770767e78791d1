//! Tenant resolution from request heads (header, query, host, path): never
//! panics, and a caller below super_admin never resolves to a tenant other
//! than its own.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tenancy_core::config::{ResolutionConfig, TenantSource};
use tenancy_core::rbac::Role;
use tenancy_core::engine::RequestHead;
use tenancy_core::resolve::{Resolved, TenantResolver};
use tenancy_core::tenant::TenantId;

fn resolver() -> &'static TenantResolver {
    static RESOLVER: OnceLock<TenantResolver> = OnceLock::new();
    RESOLVER.get_or_init(|| {
        let config = ResolutionConfig {
            sources: vec![
                TenantSource::Credential,
                TenantSource::Header,
                TenantSource::Query,
                TenantSource::Host,
                TenantSource::Path,
            ],
            host_template: Some("{tenant}.example.com".into()),
            path_prefix: Some("/t".into()),
            ..ResolutionConfig::default()
        };
        TenantResolver::from_config(&config).expect("resolver")
    })
}

fuzz_target!(|data: &[u8]| {
    // Three fields, split at the first two 0xff bytes: path and query,
    // Host header, tenant header.
    let mut fields = data.splitn(3, |b| *b == 0xff);
    let uri = fields.next().unwrap_or_default();
    let host = fields.next().unwrap_or_default();
    let tenant = fields.next().unwrap_or_default();
    let mut builder = http::Request::builder().uri(uri);
    if let Ok(host) = http::HeaderValue::from_bytes(host) {
        builder = builder.header(http::header::HOST, host);
    }
    if let Ok(tenant) = http::HeaderValue::from_bytes(tenant) {
        builder = builder.header("x-tenant-id", tenant);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let resolver = resolver();
    let _ = resolver.resolve(&RequestHead::from(&parts), None);
    let own = TenantId::new("acme").expect("valid");
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        if let Ok(Resolved::Tenant { id, cross_tenant }) =
            resolver.resolve(&RequestHead::from(&parts), Some((&own, role)))
        {
            assert_eq!(id, own);
            assert!(!cross_tenant);
        }
    }
});
