//! Billing plans and their quotas, as data: [`Plan`], [`PlanQuotas`],
//! [`PlanCatalog`] with the four default plans, and calendar [`Period`]s.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A count limit: a number, or `unlimited`.
///
/// In TOML and JSON it is a non-negative integer or the string `"unlimited"`.
///
/// ```
/// use tenancy_core::plan::Limit;
///
/// assert!(Limit::Limited(2).allows(2));
/// assert!(!Limit::Limited(2).allows(3));
/// assert!(Limit::Unlimited.allows(u64::MAX));
/// let parsed: Limit = serde_json::from_str("\"unlimited\"")?;
/// assert_eq!(parsed, Limit::Unlimited);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// At most this many.
    Limited(u64),
    /// No limit.
    Unlimited,
}

impl Limit {
    /// Whether a total of `used` stays within the limit.
    pub fn allows(self, used: u64) -> bool {
        match self {
            Limit::Limited(max) => used <= max,
            Limit::Unlimited => true,
        }
    }

    /// The limit as a number, `None` when unlimited.
    pub fn get(self) -> Option<u64> {
        match self {
            Limit::Limited(max) => Some(max),
            Limit::Unlimited => None,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Limited(n) => write!(f, "{n}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Limited(n) => serializer.serialize_u64(*n),
            Limit::Unlimited => serializer.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl serde::de::Visitor<'_> for LimitVisitor {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or \"unlimited\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit::Limited(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Limit, E> {
                u64::try_from(v)
                    .map(Limit::Limited)
                    .map_err(|_| E::custom("a limit cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Limit, E> {
                if v == "unlimited" {
                    Ok(Limit::Unlimited)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        deserializer.deserialize_any(LimitVisitor)
    }
}

/// A calendar period in UTC. Windows follow the calendar (a month is a
/// calendar month, not 30 days).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use tenancy_core::plan::Period;
///
/// let t = Utc.with_ymd_and_hms(2026, 2, 14, 9, 30, 0).unwrap();
/// let w = Period::Month.window(t);
/// assert_eq!(w.start, Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
/// assert_eq!(w.end, Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A UTC clock hour.
    Hour,
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
}

/// One window of a [`Period`]: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodWindow {
    /// First instant of the window.
    pub start: DateTime<Utc>,
    /// First instant after the window.
    pub end: DateTime<Utc>,
}

impl Period {
    /// The window of this period that holds `at`.
    pub fn window(self, at: DateTime<Utc>) -> PeriodWindow {
        let start = match self {
            Period::Hour => at
                .with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(at),
            Period::Day => Utc
                .with_ymd_and_hms(at.year(), at.month(), at.day(), 0, 0, 0)
                .single()
                .unwrap_or(at),
            Period::Month => Utc
                .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(at),
        };
        let end = match self {
            Period::Hour => start + Duration::hours(1),
            Period::Day => start + Duration::days(1),
            Period::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                    .single()
                    .unwrap_or(start + Duration::days(31))
            }
        };
        PeriodWindow { start, end }
    }

    /// The lowercase name (`hour`, `day`, `month`).
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// A named budget with a limit per calendar period (e.g. LLM tokens per day).
///
/// ```
/// use tenancy_core::plan::{Budget, Limit, Period};
/// let b = Budget { limit: Limit::Limited(100_000), period: Period::Day };
/// assert_eq!(b.period.as_str(), "day");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// How much may be charged in one window.
    pub limit: Limit,
    /// The window.
    pub period: Period,
}

/// Name of the built-in budget charged by ingestion: events per month.
pub const EVENTS_BUDGET: &str = "events";

/// The quotas of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuotas {
    /// Ingested events per calendar month.
    pub events_per_month: Limit,
    /// Live API keys.
    pub api_keys: Limit,
    /// Users.
    pub users: Limit,
    /// Requests per second for the whole tenant.
    pub rps: u32,
    /// How long audit rows and telemetry are kept.
    pub retention_days: u32,
    /// Further named budgets, by name.
    #[serde(default)]
    pub budgets: BTreeMap<String, Budget>,
}

impl PlanQuotas {
    /// These quotas with `overrides` applied over them.
    ///
    /// ```
    /// use tenancy_core::plan::{PlanCatalog, QuotaOverrides};
    /// let free = PlanCatalog::default().get("free").unwrap().quotas.clone();
    /// let over = QuotaOverrides { rps: Some(25), ..Default::default() };
    /// assert_eq!(free.with_overrides(&over).rps, 25);
    /// ```
    pub fn with_overrides(&self, overrides: &QuotaOverrides) -> PlanQuotas {
        let mut q = self.clone();
        if let Some(v) = overrides.events_per_month {
            q.events_per_month = v;
        }
        if let Some(v) = overrides.api_keys {
            q.api_keys = v;
        }
        if let Some(v) = overrides.users {
            q.users = v;
        }
        if let Some(v) = overrides.rps {
            q.rps = v;
        }
        if let Some(v) = overrides.retention_days {
            q.retention_days = v;
        }
        for (name, budget) in &overrides.budgets {
            q.budgets.insert(name.clone(), *budget);
        }
        q
    }

    /// The budget named `name`: [`EVENTS_BUDGET`] is the monthly event quota;
    /// other names come from [`PlanQuotas::budgets`].
    pub fn budget(&self, name: &str) -> Option<Budget> {
        if name == EVENTS_BUDGET {
            return Some(Budget {
                limit: self.events_per_month,
                period: Period::Month,
            });
        }
        self.budgets.get(name).copied()
    }
}

/// Per-tenant replacements for plan quotas; unset fields keep the plan's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaOverrides {
    /// Replaces [`PlanQuotas::events_per_month`].
    pub events_per_month: Option<Limit>,
    /// Replaces [`PlanQuotas::api_keys`].
    pub api_keys: Option<Limit>,
    /// Replaces [`PlanQuotas::users`].
    pub users: Option<Limit>,
    /// Replaces [`PlanQuotas::rps`].
    pub rps: Option<u32>,
    /// Replaces [`PlanQuotas::retention_days`].
    pub retention_days: Option<u32>,
    /// Adds or replaces named budgets.
    pub budgets: BTreeMap<String, Budget>,
}

/// A named plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan's name (`free`, `starter`, …).
    pub name: String,
    /// Its quotas.
    pub quotas: PlanQuotas,
}

/// The plans a deployment offers, by name. `Default` holds the four default
/// plans:
///
/// | plan | events/month | API keys | users | RPS | retention |
/// |---|---|---|---|---|---|
/// | free | 1M | 2 | 3 | 10 | 7 days |
/// | starter | 50M | 5 | 10 | 100 | 30 days |
/// | pro | 500M | 20 | 50 | 500 | 90 days |
/// | enterprise | unlimited | 100 | 500 | 5,000 | 365 days |
///
/// ```
/// use tenancy_core::plan::{Limit, PlanCatalog};
///
/// let plans = PlanCatalog::default();
/// let pro = plans.get("pro").unwrap();
/// assert_eq!(pro.quotas.rps, 500);
/// assert_eq!(plans.get("enterprise").unwrap().quotas.events_per_month, Limit::Unlimited);
/// assert!(plans.get("gold").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCatalog {
    plans: BTreeMap<String, Arc<Plan>>,
}

impl PlanCatalog {
    /// An empty catalog.
    pub fn empty() -> Self {
        Self {
            plans: BTreeMap::new(),
        }
    }

    /// The plan named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plan>> {
        self.plans.get(name)
    }

    /// Adds or replaces a plan.
    pub fn insert(&mut self, plan: Plan) {
        self.plans.insert(plan.name.clone(), Arc::new(plan));
    }

    /// Every plan, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plan>> {
        self.plans.values()
    }

    /// Whether a plan of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.plans.contains_key(name)
    }
}

impl Default for PlanCatalog {
    fn default() -> Self {
        let mut catalog = Self::empty();
        for (name, events, keys, users, rps, retention) in [
            ("free", Limit::Limited(1_000_000), 2, 3, 10, 7),
            ("starter", Limit::Limited(50_000_000), 5, 10, 100, 30),
            ("pro", Limit::Limited(500_000_000), 20, 50, 500, 90),
            ("enterprise", Limit::Unlimited, 100, 500, 5_000, 365),
        ] {
            catalog.insert(Plan {
                name: name.to_owned(),
                quotas: PlanQuotas {
                    events_per_month: events,
                    api_keys: Limit::Limited(keys),
                    users: Limit::Limited(users),
                    rps,
                    retention_days: retention,
                    budgets: BTreeMap::new(),
                },
            });
        }
        catalog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn windows_are_calendar_correct() {
        let w = Period::Month.window(t(2026, 12, 31, 23, 59, 59));
        assert_eq!(w.start, t(2026, 12, 1, 0, 0, 0));
        assert_eq!(w.end, t(2027, 1, 1, 0, 0, 0));
        let feb_leap = Period::Month.window(t(2028, 2, 29, 12, 0, 0));
        assert_eq!(feb_leap.end, t(2028, 3, 1, 0, 0, 0));
        let d = Period::Day.window(t(2026, 3, 31, 23, 0, 0));
        assert_eq!(
            (d.start, d.end),
            (t(2026, 3, 31, 0, 0, 0), t(2026, 4, 1, 0, 0, 0))
        );
        let h = Period::Hour.window(t(2026, 3, 31, 23, 10, 5));
        assert_eq!(
            (h.start, h.end),
            (t(2026, 3, 31, 23, 0, 0), t(2026, 4, 1, 0, 0, 0))
        );
    }

    #[test]
    fn default_plans_match_the_table() {
        let c = PlanCatalog::default();
        let row = |n: &str| {
            let q = &c.get(n).unwrap().quotas;
            (
                q.events_per_month,
                q.api_keys,
                q.users,
                q.rps,
                q.retention_days,
            )
        };
        use Limit::*;
        assert_eq!(
            row("free"),
            (Limited(1_000_000), Limited(2), Limited(3), 10, 7)
        );
        assert_eq!(
            row("starter"),
            (Limited(50_000_000), Limited(5), Limited(10), 100, 30)
        );
        assert_eq!(
            row("pro"),
            (Limited(500_000_000), Limited(20), Limited(50), 500, 90)
        );
        assert_eq!(
            row("enterprise"),
            (Unlimited, Limited(100), Limited(500), 5000, 365)
        );
    }

    #[test]
    fn limit_parses_and_refuses() {
        assert_eq!(
            serde_json::from_str::<Limit>("5").unwrap(),
            Limit::Limited(5)
        );
        assert!(serde_json::from_str::<Limit>("-1").is_err());
        assert!(serde_json::from_str::<Limit>("\"lots\"").is_err());
    }

    #[test]
    fn events_budget_is_monthly() {
        let catalog = PlanCatalog::default();
        let q = &catalog.get("free").unwrap().quotas;
        let b = q.budget(EVENTS_BUDGET).unwrap();
        assert_eq!(b.period, Period::Month);
        assert_eq!(b.limit, Limit::Limited(1_000_000));
        assert!(q.budget("tokens").is_none());
    }
}
