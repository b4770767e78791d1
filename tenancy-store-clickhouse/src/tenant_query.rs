//! Queries bound to one tenant: [`TenantQuery`] and [`TenantSql`].
//!
//! Every table of this crate is shared by all tenants, so a query that
//! forgets `tenant_id = …` reads or deletes everyone's rows. Application code
//! therefore writes its SQL as a [`TenantSql`] template holding the
//! `{tenant}` placeholder, and [`TenantQuery::sql`] replaces the placeholder
//! with `tenant_id = '<the tenant>'` before the query exists:
//!
//! - a template without `{tenant}` does not compile when written with
//!   [`tenant_sql!`](crate::tenant_sql) (or in any `const`), and panics at
//!   once when built with [`TenantSql::new`] at run time;
//! - templates are `&'static str`, so values cannot be formatted into them:
//!   they go through `?` and [`Query::bind`](clickhouse::query::Query::bind),
//!   which escapes them on the client;
//! - the tenant comes from a [`TenantId`], a validated slug, and is quoted as
//!   a string literal, so it cannot change the query's shape.
//!
//! Put the placeholder where it restricts the whole query: as a top-level
//! conjunct of `WHERE` (`WHERE {tenant} AND …`) or as the `PREWHERE` (which
//! ClickHouse applies before, and in addition to, any `WHERE`). Each
//! `SELECT` of a `UNION` or subquery that reads a shared table needs its own.
//!
//! ```
//! use tenancy_store_clickhouse::{TenantQuery, tenant_sql};
//! use tenancy_core::tenant::TenantId;
//!
//! let client = clickhouse::Client::default().with_database("tenancy");
//! let acme = TenantId::new("acme")?;
//! let query = TenantQuery::new(&client, &acme)
//!     .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant} AND action = ?"))
//!     .bind("apikey.create");
//! assert_eq!(
//!     query.sql_display().to_string(),
//!     "SELECT count() FROM audit_log WHERE (tenant_id = 'acme') AND action = 'apikey.create'"
//! );
//! # Ok::<(), tenancy_core::tenant::InvalidTenantId>(())
//! ```
//!
//! Forgetting the tenant is a compile error:
//!
//! ```compile_fail,E0080
//! let unscoped = tenancy_store_clickhouse::tenant_sql!("SELECT count() FROM audit_log");
//! ```

use clickhouse::Client;
use clickhouse::query::Query;
use tenancy_core::tenant::TenantId;

/// The placeholder every [`TenantSql`] holds.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// A SQL template that restricts itself to one tenant through the
/// `{tenant}` placeholder. Build it with [`tenant_sql!`](crate::tenant_sql)
/// (checked at compile time) or [`TenantSql::new`] in a `const`.
///
/// ```
/// use tenancy_store_clickhouse::TenantSql;
///
/// const RECENT: TenantSql =
///     TenantSql::new("SELECT action FROM audit_log PREWHERE {tenant} ORDER BY timestamp DESC LIMIT 10");
/// assert!(RECENT.template().contains("{tenant}"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantSql(&'static str);

impl TenantSql {
    /// Checks that `template` holds `{tenant}`.
    ///
    /// # Panics
    ///
    /// When it does not: at compile time in a `const` context (which
    /// [`tenant_sql!`](crate::tenant_sql) always is), otherwise when called.
    pub const fn new(template: &'static str) -> Self {
        assert!(
            contains(template.as_bytes(), TENANT_PLACEHOLDER.as_bytes()),
            "a tenant query must restrict itself with {{tenant}}, e.g. `WHERE {{tenant}} AND …`"
        );
        Self(template)
    }

    /// The template, placeholder included.
    pub const fn template(self) -> &'static str {
        self.0
    }

    /// The template with every `{tenant}` replaced by `(tenant_id = '<tenant>')`.
    fn expand(self, tenant: &TenantId) -> String {
        let mut predicate = String::with_capacity(tenant.as_str().len() + 20);
        predicate.push_str("(tenant_id = '");
        // A tenant id is a slug of [a-z0-9-]; escape anyway so this never
        // depends on the validation staying that strict.
        for c in tenant.as_str().chars() {
            if matches!(c, '\'' | '\\') {
                predicate.push('\\');
            }
            predicate.push(c);
        }
        predicate.push_str("')");
        self.0.replace(TENANT_PLACEHOLDER, &predicate)
    }
}

/// Whether `needle` occurs in `haystack`, usable in `const` code.
const fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.len() > haystack.len() {
        return false;
    }
    let mut start = 0;
    while start + needle.len() <= haystack.len() {
        let mut i = 0;
        while i < needle.len() && haystack[start + i] == needle[i] {
            i += 1;
        }
        if i == needle.len() {
            return true;
        }
        start += 1;
    }
    false
}

/// A [`TenantSql`] checked at compile time: a template without `{tenant}`
/// is a compile error.
///
/// ```
/// let q = tenancy_store_clickhouse::tenant_sql!("SELECT count() FROM usage_hourly WHERE {tenant}");
/// assert!(q.template().ends_with("{tenant}"));
/// ```
#[macro_export]
macro_rules! tenant_sql {
    ($template:expr $(,)?) => {{
        const SQL: $crate::TenantSql = $crate::TenantSql::new($template);
        SQL
    }};
}

/// Builds queries restricted to one tenant.
///
/// The only way from a `TenantQuery` to a [`Query`] is [`TenantQuery::sql`],
/// which takes a [`TenantSql`]; see the [module docs](self) for the rules.
///
/// ```no_run
/// # async fn run(stores: tenancy_store_clickhouse::ClickHouseStores) -> Result<(), Box<dyn std::error::Error>> {
/// use tenancy_core::tenant::TenantId;
/// use tenancy_store_clickhouse::tenant_sql;
///
/// let acme = TenantId::new("acme")?;
/// let refused: u64 = stores
///     .tenant_query(&acme)
///     .sql(tenant_sql!("SELECT count() FROM audit_log WHERE {tenant} AND outcome >= ?"))
///     .bind(400)
///     .fetch_one()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TenantQuery {
    client: Client,
    tenant: TenantId,
}

impl TenantQuery {
    /// Queries of `tenant` over `client` (which names the database).
    pub fn new(client: &Client, tenant: &TenantId) -> Self {
        Self {
            client: client.clone(),
            tenant: tenant.clone(),
        }
    }

    /// The tenant every query is bound to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The query of `template` with `{tenant}` bound to this tenant. Bind the
    /// template's `?` with [`Query::bind`]; `?fields` works as usual.
    pub fn sql(&self, template: TenantSql) -> Query {
        self.client.query(&template.expand(&self.tenant))
    }
}

impl std::fmt::Debug for TenantQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client is left out: it may hold credentials.
        f.debug_struct("TenantQuery")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_bound() {
        let t = TenantId::new("acme").expect("valid");
        let sql = TenantSql::new(
            "SELECT a FROM x PREWHERE {tenant} UNION ALL SELECT a FROM y WHERE {tenant} AND b = ?",
        );
        assert_eq!(
            sql.expand(&t),
            "SELECT a FROM x PREWHERE (tenant_id = 'acme') UNION ALL \
             SELECT a FROM y WHERE (tenant_id = 'acme') AND b = ?"
        );
    }

    #[test]
    #[should_panic(expected = "must restrict itself with {tenant}")]
    fn a_template_without_the_tenant_is_refused() {
        let template: &'static str =
            Box::leak(String::from("SELECT * FROM audit_log").into_boxed_str());
        let _ = TenantSql::new(template);
    }

    #[test]
    fn const_search() {
        assert!(contains(b"WHERE {tenant}", b"{tenant}"));
        assert!(!contains(b"WHERE {tenant", b"{tenant}"));
        assert!(!contains(b"", b"{tenant}"));
    }
}
