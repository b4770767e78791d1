use super::*;
use crate::plan::Limit;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn defaults_are_valid() {
    let c = TenancyConfig::default();
    c.validate().unwrap();
    assert_eq!(c.resolution.tenant_header, "X-Tenant-ID");
    assert_eq!(c.resolution.query_param, "tenant_id");
    assert_eq!(c.auth.api_key_prefix, "tnk");
    assert_eq!(c.auth.leeway_secs, 30);
    assert_eq!(c.default_plan, "free");
}

#[test]
fn every_variable_parses() {
    let vars = [
        ("TENANCY_ENABLED", "yes"),
        ("TENANCY_DEFAULT_TENANT", "acme"),
        ("TENANCY_TENANT_HEADER", "X-Org"),
        ("TENANCY_TENANT_QUERY_PARAM", "org"),
        ("TENANCY_TENANT_REQUIRED", "false"),
        ("TENANCY_ALLOWED_TENANTS", "acme, globex ,"),
        (
            "TENANCY_TENANT_SOURCES",
            "credential,host,path,header,query,default",
        ),
        ("TENANCY_HOST_TEMPLATE", "{tenant}.example.com"),
        ("TENANCY_PATH_PREFIX", "/t"),
        ("TENANCY_JWT_SECRET", SECRET),
        ("TENANCY_JWT_ISSUER", "https://issuer.example"),
        ("TENANCY_JWT_AUDIENCE", "api,admin"),
        ("TENANCY_JWT_LEEWAY_SECS", "5"),
        ("TENANCY_API_KEY_HEADER", "X-Key"),
        ("TENANCY_API_KEY_PREFIX", "acme"),
        ("TENANCY_API_KEY_PEPPER", "pepper-pepper-pepper"),
        ("TENANCY_ANONYMOUS_ROLE", "viewer"),
        ("TENANCY_ROLE_ALIASES", "sre=operator, boss=admin"),
        ("TENANCY_DEFAULT_PLAN", "pro"),
        ("TENANCY_RATE_LIMITS", "off"),
        ("TENANCY_LIMITS_ON_STORE_FAILURE", "closed"),
        ("TENANCY_INGESTION_ROUTES", "POST /ingest, PUT /v2/events"),
        ("TENANCY_AUDIT_BUFFER", "128"),
        ("TENANCY_AUDIT", "off"),
        ("TENANCY_BIND", "ignored: not a library variable"),
        ("PATH", "/usr/bin"),
    ];
    let c = TenancyConfig::from_vars(vars).unwrap();
    let r = &c.resolution;
    assert!(r.enabled);
    assert_eq!(r.default_tenant.as_ref().unwrap().as_str(), "acme");
    assert_eq!(r.tenant_header, "X-Org");
    assert_eq!(r.query_param, "org");
    assert!(!r.required);
    let allowed: Vec<&str> = r.allowed_tenants.iter().map(|t| t.as_str()).collect();
    assert_eq!(allowed, ["acme", "globex"]);
    assert_eq!(r.sources.len(), 6);
    assert_eq!(r.sources[1], TenantSource::Host);
    assert_eq!(r.host_template.as_deref(), Some("{tenant}.example.com"));
    assert_eq!(r.path_prefix.as_deref(), Some("/t"));
    let realm = &c.realms[0];
    assert_eq!(realm.name, ENV_REALM);
    assert_eq!(realm.issuer, "https://issuer.example");
    assert_eq!(realm.audience, ["api", "admin"]);
    assert_eq!(realm.keys[0].secret.as_ref().unwrap().expose(), SECRET);
    assert_eq!(c.auth.leeway_secs, 5);
    assert_eq!(c.auth.api_key_header, "X-Key");
    assert_eq!(c.auth.api_key_prefix, "acme");
    assert_eq!(
        c.auth.api_key_pepper.as_ref().unwrap().expose(),
        "pepper-pepper-pepper"
    );
    assert_eq!(c.auth.anonymous_role, Some(Role::Viewer));
    assert_eq!(c.role_aliases.resolve("sre"), Some(Role::Operator));
    assert_eq!(c.role_aliases.resolve("boss"), Some(Role::Admin));
    assert_eq!(c.default_plan, "pro");
    assert!(!c.limits.enabled);
    assert_eq!(c.limits.on_store_failure, FailurePolicy::Closed);
    assert_eq!(c.limits.ingestion_routes.len(), 2);
    assert!(c.limits.ingestion_routes[1].matches(&http::Method::PUT, "/v2/events"));
    assert_eq!(c.audit.buffer_capacity, 128);
    assert!(!c.audit.enabled);
}

#[test]
fn jwt_secret_alone_uses_the_dev_issuer() {
    let c = TenancyConfig::from_vars([("TENANCY_JWT_SECRET", SECRET)]).unwrap();
    assert_eq!(c.realms[0].issuer, DEFAULT_ISSUER);
}

#[test]
fn bad_variables_name_themselves() {
    let cases: &[(&str, &str, &str)] = &[
        ("TENANCY_ENABLED", "maybe", "TENANCY_ENABLED"),
        (
            "TENANCY_DEFAULT_TENANT",
            "Acme Corp",
            "TENANCY_DEFAULT_TENANT",
        ),
        ("TENANCY_DEFAULT_TENANT", "a:b", "TENANCY_DEFAULT_TENANT"),
        (
            "TENANCY_TENANT_HEADER",
            "bad header",
            "resolution.tenant_header / TENANCY_TENANT_HEADER",
        ),
        (
            "TENANCY_TENANT_QUERY_PARAM",
            "a&b",
            "resolution.query_param / TENANCY_TENANT_QUERY_PARAM",
        ),
        ("TENANCY_TENANT_REQUIRED", "2", "TENANCY_TENANT_REQUIRED"),
        (
            "TENANCY_ALLOWED_TENANTS",
            "acme,{evil}",
            "TENANCY_ALLOWED_TENANTS",
        ),
        (
            "TENANCY_TENANT_SOURCES",
            "header,cookie",
            "TENANCY_TENANT_SOURCES",
        ),
        (
            "TENANCY_TENANT_SOURCES",
            "header,header",
            "resolution.sources / TENANCY_TENANT_SOURCES",
        ),
        (
            "TENANCY_TENANT_SOURCES",
            "host",
            "resolution.host_template / TENANCY_HOST_TEMPLATE",
        ),
        (
            "TENANCY_TENANT_SOURCES",
            "path",
            "resolution.path_prefix / TENANCY_PATH_PREFIX",
        ),
        ("TENANCY_JWT_SECRET", "short", "realms[0].keys[0].secret"),
        ("TENANCY_JWT_ISSUER", "x", "TENANCY_JWT_ISSUER"),
        ("TENANCY_JWT_LEEWAY_SECS", "-1", "TENANCY_JWT_LEEWAY_SECS"),
        (
            "TENANCY_JWT_LEEWAY_SECS",
            "100000",
            "auth.leeway_secs / TENANCY_JWT_LEEWAY_SECS",
        ),
        (
            "TENANCY_API_KEY_HEADER",
            "",
            "auth.api_key_header / TENANCY_API_KEY_HEADER",
        ),
        (
            "TENANCY_API_KEY_PREFIX",
            "TNK_",
            "auth.api_key_prefix / TENANCY_API_KEY_PREFIX",
        ),
        (
            "TENANCY_API_KEY_PEPPER",
            "short",
            "auth.api_key_pepper / TENANCY_API_KEY_PEPPER",
        ),
        ("TENANCY_ANONYMOUS_ROLE", "root", "TENANCY_ANONYMOUS_ROLE"),
        (
            "TENANCY_ANONYMOUS_ROLE",
            "super_admin",
            "auth.anonymous_role / TENANCY_ANONYMOUS_ROLE",
        ),
        ("TENANCY_ROLE_ALIASES", "sre", "TENANCY_ROLE_ALIASES"),
        ("TENANCY_ROLE_ALIASES", "sre=god", "TENANCY_ROLE_ALIASES"),
        (
            "TENANCY_DEFAULT_PLAN",
            "platinum",
            "default_plan / TENANCY_DEFAULT_PLAN",
        ),
        ("TENANCY_RATE_LIMITS", "sometimes", "TENANCY_RATE_LIMITS"),
        (
            "TENANCY_LIMITS_ON_STORE_FAILURE",
            "ajar",
            "TENANCY_LIMITS_ON_STORE_FAILURE",
        ),
        (
            "TENANCY_INGESTION_ROUTES",
            "telemetry",
            "TENANCY_INGESTION_ROUTES",
        ),
        ("TENANCY_AUDIT_BUFFER", "lots", "TENANCY_AUDIT_BUFFER"),
        ("TENANCY_AUDIT", "sometimes", "TENANCY_AUDIT"),
        (
            "TENANCY_AUDIT_BUFFER",
            "0",
            "audit.buffer_capacity / TENANCY_AUDIT_BUFFER",
        ),
    ];
    for (var, value, key) in cases {
        let err = TenancyConfig::from_vars([(*var, *value)])
            .expect_err(&format!("{var}={value} should be refused"));
        assert_eq!(err.key(), *key, "{var}={value}: {err}");
        assert!(!err.message().is_empty());
        assert!(err.to_string().contains(key));
    }
}

#[test]
fn errors_never_echo_secrets() {
    let err = TenancyConfig::from_vars([("TENANCY_JWT_SECRET", "tiny-secret")]).unwrap_err();
    assert!(!err.to_string().contains("tiny-secret"));
    let c = TenancyConfig::from_vars([("TENANCY_JWT_SECRET", SECRET)]).unwrap();
    assert!(!format!("{c:?}").contains(SECRET));
}

#[test]
fn disabled_tenancy_needs_a_default() {
    let err = TenancyConfig::from_vars([("TENANCY_ENABLED", "false")]).unwrap_err();
    assert_eq!(
        err.key(),
        "resolution.default_tenant / TENANCY_DEFAULT_TENANT"
    );
    TenancyConfig::from_vars([
        ("TENANCY_ENABLED", "false"),
        ("TENANCY_DEFAULT_TENANT", "solo"),
    ])
    .unwrap();
}

#[test]
fn default_tenant_must_be_allowed() {
    let err = TenancyConfig::from_vars([
        ("TENANCY_DEFAULT_TENANT", "acme"),
        ("TENANCY_ALLOWED_TENANTS", "globex"),
    ])
    .unwrap_err();
    assert_eq!(
        err.key(),
        "resolution.default_tenant / TENANCY_DEFAULT_TENANT"
    );
}

const FULL_TOML: &str = r#"
default_plan = "gold"

[resolution]
enabled = true
default_tenant = "acme"
tenant_header = "X-Org"
query_param = "org"
required = false
allowed_tenants = ["acme", "globex"]
sources = ["credential", "host", "path", "header", "query", "default"]
host_template = "{tenant}.example.com"
path_prefix = "/t"

[auth]
bearer_header = "Authorization"
api_key_header = "X-Key"
api_key_prefix = "acme"
api_key_pepper = "pepper-pepper-pepper"
leeway_secs = 10
token_cache_capacity = 50
anonymous_role = "viewer"

[[realms]]
name = "staff"
issuer = "https://id.example.com/realms/staff"
audience = ["api"]
services = true
[[realms.keys]]
kid = "k1"
algorithm = "HS256"
secret = "0123456789abcdef0123456789abcdef"
[[realms.keys]]
kid = "k2"
algorithm = "ES256"
public_key_file = "/etc/keys/es.pem"

[[realms]]
name = "acme"
issuer = "https://id.example.com/realms/acme"
tenant = "acme"
[[realms.keys]]
jwks_url = "https://id.example.com/realms/acme/certs"
[[realms.keys]]
jwks_file = "/etc/keys/acme.json"
[[realms.keys]]
algorithm = "RS256"
public_key_pem = "-----BEGIN PUBLIC KEY-----"

[role_aliases]
sre = "operator"

[plans.gold]
events_per_month = "unlimited"
api_keys = 50
users = 100
rps = 1000
retention_days = 180
[plans.gold.budgets.llm_tokens]
limit = 100000
period = "day"

[limits]
enabled = false
on_store_failure = "closed"
ingestion_routes = ["POST /ingest"]

[audit]
enabled = false
buffer_capacity = 10
batch_size = 5
flush_interval_ms = 250
"#;

#[test]
fn every_toml_key_parses() {
    let c = TenancyConfig::from_toml_str(FULL_TOML).unwrap();
    assert_eq!(c.default_plan, "gold");
    assert_eq!(c.resolution.tenant_header, "X-Org");
    assert_eq!(c.resolution.query_param, "org");
    assert!(!c.resolution.required);
    assert_eq!(c.resolution.sources[2], TenantSource::Path);
    assert_eq!(c.auth.api_key_header, "X-Key");
    assert_eq!(c.auth.leeway_secs, 10);
    assert_eq!(c.auth.token_cache_capacity, 50);
    assert_eq!(c.realms.len(), 2);
    assert!(c.realms[0].services);
    assert_eq!(c.realms[0].keys[1].algorithm, Some(JwtAlgorithm::ES256));
    assert_eq!(c.realms[1].tenant.as_ref().unwrap().as_str(), "acme");
    assert_eq!(c.role_aliases.resolve("SRE"), Some(Role::Operator));
    let gold = c.plans();
    let gold = &gold.get("gold").unwrap().quotas;
    assert_eq!(gold.events_per_month, Limit::Unlimited);
    assert_eq!(
        gold.budget("llm_tokens").unwrap().limit,
        Limit::Limited(100_000)
    );
    assert!(c.plans().get("free").is_some(), "defaults stay");
    assert!(!c.limits.enabled);
    assert_eq!(c.audit.batch_size, 5);
    assert_eq!(c.audit.flush_interval_ms, 250);
    assert!(!c.audit.enabled);
}

#[test]
fn env_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("tenancy-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tenancy.toml");
    std::fs::write(&path, FULL_TOML).unwrap();
    let c = TenancyConfig::load_from([
        (CONFIG_FILE_VAR, path.to_str().unwrap()),
        ("TENANCY_TENANT_HEADER", "X-Env"),
    ])
    .unwrap();
    assert_eq!(c.resolution.tenant_header, "X-Env");
    assert_eq!(c.default_plan, "gold");
    // An empty optional variable unsets the file's value; tables merge key
    // by key.
    let c = TenancyConfig::load_from([
        (CONFIG_FILE_VAR, path.to_str().unwrap()),
        ("TENANCY_HOST_TEMPLATE", ""),
        ("TENANCY_TENANT_SOURCES", "credential,header"),
        ("TENANCY_AUTH_FAILURE_BURST", "7"),
    ])
    .unwrap();
    assert_eq!(c.resolution.host_template, None);
    assert_eq!(c.resolution.default_tenant.unwrap().as_str(), "acme");
    assert_eq!(c.auth.failure_throttle.burst, 7);
    assert_eq!(c.auth.api_key_header, "X-Key");
    // A bad value names its variable when it came from one, else its key
    // and the file.
    let err = TenancyConfig::load_from([
        (CONFIG_FILE_VAR, path.to_str().unwrap()),
        ("TENANCY_ANONYMOUS_ROLE", "root"),
    ])
    .unwrap_err();
    assert_eq!(err.key(), "TENANCY_ANONYMOUS_ROLE");
    std::fs::write(&path, "[auth]\nanonymous_role = \"root\"\n").unwrap();
    let err = TenancyConfig::load_from([(CONFIG_FILE_VAR, path.to_str().unwrap())]).unwrap_err();
    assert_eq!(
        err.key(),
        format!("auth.anonymous_role ({})", path.display())
    );
    let missing =
        TenancyConfig::load_from([(CONFIG_FILE_VAR, "/nonexistent/tenancy.toml")]).unwrap_err();
    assert_eq!(missing.key(), CONFIG_FILE_VAR);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_toml_values_give_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("[resolution]\ndefault_tenant = \"Bad Id\"", "tenant id"),
        ("[resolution]\nsources = [\"cookie\"]", "unknown variant"),
        ("[resolution]\nunknown_key = 1", "unknown field"),
        ("[auth]\nanonymous_role = \"root\"", "unknown role"),
        (
            "[plans.x]\nevents_per_month = -5\napi_keys=1\nusers=1\nrps=1\nretention_days=1",
            "negative",
        ),
        (
            "[plans.x]\nevents_per_month = \"lots\"\napi_keys=1\nusers=1\nrps=1\nretention_days=1",
            "unlimited",
        ),
        (
            "[limits]\ningestion_routes = [\"telemetry\"]",
            "METHOD /path",
        ),
        ("[limits]\non_store_failure = \"ajar\"", "unknown variant"),
        (
            "[[realms]]\nname = \"r\"\nissuer = \"i\"\nkeys = [{ algorithm = \"none\", secret = \"x\" }]",
            "unknown variant",
        ),
        ("not toml at all [", "toml"),
    ];
    for (text, needle) in cases {
        let err = TenancyConfig::from_toml_str(text).expect_err(text);
        let shown = err.to_string();
        assert!(shown.contains(needle), "{text:?}: {shown}");
    }
}

#[test]
fn bad_toml_combinations_name_their_key() {
    let realm =
        |key: &str| format!("[[realms]]\nname = \"r\"\nissuer = \"i\"\n[[realms.keys]]\n{key}\n");
    let cases: Vec<(String, &str)> = vec![
        (
            realm("algorithm = \"RS256\"\nsecret = \"0123456789abcdef0123456789abcdef\""),
            "realms[0].keys[0].algorithm",
        ),
        (
            realm("algorithm = \"HS256\"\npublic_key_pem = \"x\""),
            "realms[0].keys[0].algorithm",
        ),
        (
            realm("public_key_pem = \"x\""),
            "realms[0].keys[0].algorithm",
        ),
        (realm("algorithm = \"HS256\""), "realms[0].keys[0]"),
        (
            realm("jwks_url = \"ftp://x\""),
            "realms[0].keys[0].jwks_url",
        ),
        (
            "[[realms]]\nname = \"r\"\nissuer = \"i\"\nkeys = []".to_owned(),
            "realms[0].keys",
        ),
        (
            format!(
                "{}{}",
                realm("algorithm = \"ES256\"\npublic_key_pem = \"x\""),
                realm("algorithm = \"ES256\"\npublic_key_pem = \"x\"")
            ),
            "realms[1].name",
        ),
        (
            "[plans.x]\nevents_per_month = 1\napi_keys=1\nusers=1\nrps=0\nretention_days=1"
                .to_owned(),
            "plans.x.rps",
        ),
        ("[audit]\nbatch_size = 0".to_owned(), "audit.batch_size"),
    ];
    for (text, key) in cases {
        let err = TenancyConfig::from_toml_str(&text).expect_err(&text);
        assert_eq!(err.key(), key, "{text}\n{err}");
    }
}

#[test]
fn builder_validates() {
    let err = TenancyConfig::builder()
        .tenant_header("bad header")
        .build()
        .unwrap_err();
    assert_eq!(
        err.key(),
        "resolution.tenant_header / TENANCY_TENANT_HEADER"
    );
    let c = TenancyConfig::builder()
        .sources([TenantSource::Header])
        .anonymous_role(Role::Viewer)
        .rate_limits(false)
        .build()
        .unwrap();
    assert_eq!(c.resolution.sources, [TenantSource::Header]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_variable_value_is_parsed_or_refused_without_panic(
            var in prop::sample::select(vec![
                "TENANCY_ENABLED", "TENANCY_DEFAULT_TENANT", "TENANCY_TENANT_HEADER",
                "TENANCY_TENANT_QUERY_PARAM", "TENANCY_TENANT_REQUIRED", "TENANCY_ALLOWED_TENANTS",
                "TENANCY_TENANT_SOURCES", "TENANCY_HOST_TEMPLATE", "TENANCY_PATH_PREFIX",
                "TENANCY_JWT_SECRET", "TENANCY_JWT_ISSUER", "TENANCY_JWT_AUDIENCE",
                "TENANCY_JWT_LEEWAY_SECS", "TENANCY_API_KEY_HEADER", "TENANCY_API_KEY_PREFIX",
                "TENANCY_API_KEY_PEPPER", "TENANCY_ANONYMOUS_ROLE", "TENANCY_ROLE_ALIASES",
                "TENANCY_DEFAULT_PLAN", "TENANCY_RATE_LIMITS", "TENANCY_LIMITS_ON_STORE_FAILURE",
                "TENANCY_INGESTION_ROUTES", "TENANCY_AUDIT_BUFFER", "TENANCY_AUDIT",
            ]),
            value in any::<String>(),
        ) {
            if let Err(e) = TenancyConfig::from_vars([(var, value.as_str())]) {
                prop_assert!(!e.key().is_empty());
                prop_assert!(!e.message().is_empty());
            }
        }

        #[test]
        fn any_toml_text_is_parsed_or_refused_without_panic(text in any::<String>()) {
            let _ = TenancyConfig::from_toml_str(&text);
        }
    }
}
