//! The `TENANCY_*` environment variables, as one table: each variable's
//! TOML key, how its text reads, and what the docs say of it. Loading turns
//! the variables present into a TOML table merged over the file's, so a
//! value from the environment is checked by the same deserializer and the
//! same validation as one from a file; errors name the variable. The docs'
//! table ([`markdown`]) is printed from it, and a test holds the crate docs
//! to it.

use std::collections::BTreeMap;

use super::ConfigError;

/// How a variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// A whole number, at least 0.
    Count,
    /// Text as it is.
    Text,
    /// Text; empty unsets the key (back to its default).
    Optional,
    /// A comma list; blanks between commas are dropped.
    List,
    /// `alias=role` pairs in a comma list: a table.
    Pairs,
    /// A setting of the realm `default` (no single key: see
    /// [`JwtVars`]).
    Realm,
}

/// One `TENANCY_*` variable.
#[derive(Debug)]
pub(super) struct EnvVar {
    /// The variable.
    pub(super) name: &'static str,
    /// The TOML key it sets, dotted.
    pub(super) key: &'static str,
    form: Form,
    /// What its value is, for the docs.
    value: &'static str,
}

const fn var(name: &'static str, key: &'static str, form: Form, value: &'static str) -> EnvVar {
    EnvVar {
        name,
        key,
        form,
        value,
    }
}

/// The key of the realm settings in the docs' table.
const REALM: &str = "realm `default` (shared, HS256, the platform's own: may issue `super_admin`)";

/// Every variable, in the docs' order.
pub(super) const VARS: &[EnvVar] = &[
    var("TENANCY_ENABLED", "resolution.enabled", Form::Bool, "bool"),
    var(
        "TENANCY_DEFAULT_TENANT",
        "resolution.default_tenant",
        Form::Optional,
        "tenant id",
    ),
    var(
        "TENANCY_TENANT_HEADER",
        "resolution.tenant_header",
        Form::Text,
        "header name",
    ),
    var(
        "TENANCY_TENANT_QUERY_PARAM",
        "resolution.query_param",
        Form::Text,
        "name",
    ),
    var(
        "TENANCY_TENANT_REQUIRED",
        "resolution.required",
        Form::Bool,
        "bool",
    ),
    var(
        "TENANCY_ALLOWED_TENANTS",
        "resolution.allowed_tenants",
        Form::List,
        "comma list of tenant ids",
    ),
    var(
        "TENANCY_TENANT_SOURCES",
        "resolution.sources",
        Form::List,
        "comma list of sources",
    ),
    var(
        "TENANCY_HOST_TEMPLATE",
        "resolution.host_template",
        Form::Optional,
        "e.g. `{tenant}.example.com`",
    ),
    var(
        "TENANCY_PATH_PREFIX",
        "resolution.path_prefix",
        Form::Optional,
        "e.g. `/t`",
    ),
    var(
        "TENANCY_JWT_SECRET",
        REALM,
        Form::Realm,
        "at least 32 bytes",
    ),
    var(
        "TENANCY_JWT_ISSUER",
        "its issuer (default `tenancy-dev`)",
        Form::Realm,
        "string",
    ),
    var(
        "TENANCY_JWT_AUDIENCE",
        "its audiences",
        Form::Realm,
        "comma list",
    ),
    var(
        "TENANCY_JWT_LEEWAY_SECS",
        "auth.leeway_secs",
        Form::Count,
        "seconds",
    ),
    var(
        "TENANCY_API_KEY_HEADER",
        "auth.api_key_header",
        Form::Text,
        "header name",
    ),
    var(
        "TENANCY_API_KEY_PREFIX",
        "auth.api_key_prefix",
        Form::Text,
        "`[a-z0-9]{1,16}`",
    ),
    var(
        "TENANCY_API_KEY_PEPPER",
        "auth.api_key_pepper",
        Form::Optional,
        "secret",
    ),
    var(
        "TENANCY_ANONYMOUS_ROLE",
        "auth.anonymous_role",
        Form::Optional,
        "`viewer`, `operator` or `admin`",
    ),
    var(
        "TENANCY_AUTH_THROTTLE",
        "auth.failure_throttle.enabled",
        Form::Bool,
        "bool",
    ),
    var(
        "TENANCY_AUTH_FAILURES_PER_SEC",
        "auth.failure_throttle.per_second",
        Form::Count,
        "count",
    ),
    var(
        "TENANCY_AUTH_FAILURE_BURST",
        "auth.failure_throttle.burst",
        Form::Count,
        "count",
    ),
    var(
        "TENANCY_ROLE_ALIASES",
        "role_aliases",
        Form::Pairs,
        "`alias=role,…`",
    ),
    var(
        "TENANCY_DEFAULT_PLAN",
        "default_plan",
        Form::Text,
        "plan name",
    ),
    var("TENANCY_RATE_LIMITS", "limits.enabled", Form::Bool, "bool"),
    var(
        "TENANCY_LIMITS_ON_STORE_FAILURE",
        "limits.on_store_failure",
        Form::Text,
        "`open` or `closed`",
    ),
    var(
        "TENANCY_INGESTION_ROUTES",
        "limits.ingestion_routes",
        Form::List,
        "comma list of `METHOD /path`",
    ),
    var("TENANCY_AUDIT", "audit.enabled", Form::Bool, "bool"),
    var(
        "TENANCY_AUDIT_BUFFER",
        "audit.buffer_capacity",
        Form::Count,
        "count",
    ),
    var(
        "TENANCY_TRUSTED_PROXIES",
        "network.trusted_proxies",
        Form::List,
        "comma list of CIDR ranges or addresses",
    ),
    var(
        "TENANCY_FORWARDED_HEADER",
        "network.forwarded_header",
        Form::Text,
        "`x-forwarded-for` or `forwarded`",
    ),
    var(
        "TENANCY_EGRESS_ALLOW",
        "egress.allow",
        Form::List,
        "comma list of CIDR ranges or addresses",
    ),
];

/// The docs' table of the variables, in markdown.
pub(super) fn markdown() -> String {
    let mut out = String::from("| variable | key | value |\n|---|---|---|\n");
    for v in VARS {
        let key = if v.form == Form::Realm {
            v.key.to_owned()
        } else {
            format!("`{}`", v.key)
        };
        out.push_str(&format!("| `{}` | {key} | {} |\n", v.name, v.value));
    }
    out
}

/// `key`, and the variable that sets it when there is one: how errors of
/// values name where they came from (`auth.leeway_secs /
/// TENANCY_JWT_LEEWAY_SECS`).
pub(super) fn label(key: &str) -> String {
    match VARS.iter().find(|v| v.form != Form::Realm && v.key == key) {
        Some(v) => format!("{key} / {}", v.name),
        None => key.to_owned(),
    }
}

/// The settings of the realm `default`, which the variables name apart
/// from any key.
#[derive(Debug, Default)]
pub(super) struct JwtVars {
    pub(super) secret: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<Vec<String>>,
}

/// What the variables present set.
#[derive(Debug, Default)]
pub(super) struct Overrides {
    /// Keys set, as a table to merge over the file's.
    pub(super) set: toml::Table,
    /// Keys unset (an empty optional variable): back to their defaults.
    pub(super) unset: Vec<&'static str>,
    /// The variables read, by key: an error at or below a key names its
    /// variable.
    pub(super) from: BTreeMap<&'static str, &'static str>,
    pub(super) jwt: JwtVars,
}

impl Overrides {
    /// Reads the `TENANCY_*` variables of `vars`; others are ignored. A
    /// value that does not read as its form is refused, naming the
    /// variable.
    pub(super) fn read<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut out = Self::default();
        for (name, value) in vars {
            let Some(v) = VARS.iter().find(|v| v.name == name.as_ref()) else {
                continue;
            };
            let text = value.as_ref();
            let err = |m: &str| ConfigError::new(v.name, m);
            let value = match v.form {
                Form::Bool => toml::Value::Boolean(parse_bool(text).ok_or_else(|| err(BOOL))?),
                Form::Count => text
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(toml::Value::Integer)
                    .ok_or_else(|| err("expected a whole number, at least 0"))?,
                Form::Text => toml::Value::String(text.to_owned()),
                Form::Optional if text.is_empty() => {
                    out.unset.push(v.key);
                    out.from.insert(v.key, v.name);
                    continue;
                }
                Form::Optional => toml::Value::String(text.to_owned()),
                Form::List => toml::Value::Array(
                    comma_list(text)
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
                Form::Pairs => {
                    let mut pairs = toml::Table::new();
                    for pair in comma_list(text) {
                        let (alias, role) = pair
                            .split_once('=')
                            .ok_or_else(|| err("expected alias=role pairs separated by commas"))?;
                        pairs.insert(
                            alias.trim().to_owned(),
                            toml::Value::String(role.trim().to_owned()),
                        );
                    }
                    toml::Value::Table(pairs)
                }
                Form::Realm => {
                    let jwt = &mut out.jwt;
                    match v.name {
                        "TENANCY_JWT_SECRET" => jwt.secret = non_empty(text),
                        "TENANCY_JWT_ISSUER" => jwt.issuer = non_empty(text),
                        _ => jwt.audience = Some(comma_list(text).map(str::to_owned).collect()),
                    }
                    continue;
                }
            };
            set(&mut out.set, v.key, value);
            out.from.insert(v.key, v.name);
        }
        Ok(out)
    }

    /// Merges the keys set over `table` (tables key by key, other values
    /// replaced) and removes the keys unset.
    pub(super) fn apply_to(&self, table: &mut toml::Table) {
        merge(table, &self.set);
        for key in &self.unset {
            remove(table, key);
        }
    }

    /// The variable that set `path` (an error's path, e.g.
    /// `limits.ingestion_routes[0]`) or a key above it.
    pub(super) fn variable_of(&self, path: &str) -> Option<&'static str> {
        self.from.iter().find_map(|(key, var)| {
            let below = path
                .strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
            below.then_some(*var)
        })
    }
}

/// Sets the dotted `key` of `table` to `value`, making the tables on the
/// way.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts = key.split('.').peekable();
    let mut at = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.insert(part.to_owned(), value);
            return;
        }
        let entry = at
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        at = inner;
    }
}

/// Removes the dotted `key` of `table`, if it is there.
fn remove(table: &mut toml::Table, key: &str) {
    match key.split_once('.') {
        Some((head, rest)) => {
            if let Some(toml::Value::Table(inner)) = table.get_mut(head) {
                remove(inner, rest);
            }
        }
        None => {
            table.remove(key);
        }
    }
}

/// Merges `over` into `base`: tables key by key, other values replaced.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

const BOOL: &str = "expected true or false";

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn comma_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_table_is_a_key_of_the_config() {
        // Each variable alone, set to a value of its form, names a key the
        // config has (it refuses unknown keys; the value itself may be
        // refused).
        for v in VARS.iter().filter(|v| v.form != Form::Realm) {
            let sample = match v.form {
                Form::Bool => "true",
                Form::Count => "5",
                Form::Pairs => "sre=operator",
                _ => "",
            };
            let overrides = Overrides::read([(v.name, sample)]).unwrap();
            let mut table = toml::Table::new();
            overrides.apply_to(&mut table);
            let loaded: Result<super::super::TenancyConfig, toml::de::Error> =
                toml::Value::Table(table).try_into();
            if let Err(e) = loaded {
                assert!(!e.message().contains("unknown field"), "{}: {e}", v.name);
            }
        }
    }

    #[test]
    fn the_crate_docs_show_the_table() {
        let docs = include_str!("../config.rs");
        let shown: String = docs
            .lines()
            .filter_map(|l| l.strip_prefix("//! "))
            .filter(|l| l.starts_with('|'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(shown, markdown(), "the module docs' table is out of date");
    }

    #[test]
    fn errors_below_a_key_name_its_variable() {
        let overrides = Overrides::read([("TENANCY_INGESTION_ROUTES", "telemetry")]).unwrap();
        assert_eq!(
            overrides.variable_of("limits.ingestion_routes[0]"),
            Some("TENANCY_INGESTION_ROUTES")
        );
        assert_eq!(overrides.variable_of("limits.ingestion"), None);
        assert_eq!(overrides.variable_of("limits"), None);
    }
}
