//! `GET /api/v1/tenants/{id}/export`: everything a tenant has, as NDJSON,
//! one page of one kind at a time, so a tenant with a million audit events
//! exports in the memory of one page.
//!
//! Each line is `{"type": <kind>, "data": <record>}`, in this order:
//! `tenant`, `realm` (when it brought one), `api_key` (never a secret or a
//! digest), `user`, `team`, `audit_event` (newest first), `usage` (by hour)
//! and `telemetry` (newest first). Rows past the plan's retention are left
//! out, as every read leaves them out.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures_util::Stream;
use serde::Serialize;
use tenancy_core::audit::{AUDIT_MAX_LIMIT, AuditFilter};
use tenancy_core::error::TenancyError;
use tenancy_core::member::RecordId;
use tenancy_core::telemetry::{TELEMETRY_MAX_LIMIT, TelemetryFilter};
use tenancy_core::tenant::TenantRecord;

use crate::app::App;
use crate::wire::{ApiKey, Tenant};

/// Rows read from a store at a time.
pub const EXPORT_PAGE: usize = 1_000;
// A page must be one the stores answer whole.
const _: () = assert!(EXPORT_PAGE < AUDIT_MAX_LIMIT && EXPORT_PAGE < TELEMETRY_MAX_LIMIT);
/// The span of usage hours read at a time.
const USAGE_SPAN: Duration = Duration::days(7);

/// Where an export is.
enum Stage {
    Tenant,
    Realm,
    ApiKeys,
    Users(Option<RecordId>),
    Teams(Option<RecordId>),
    Audit(TimeCursor<tenancy_core::audit::AuditEvent>),
    Usage(DateTime<Utc>),
    Telemetry(TimeCursor<tenancy_core::telemetry::TelemetryEvent>),
    Done,
}

/// Pages newest first by time: each page asks for rows before `until`, and
/// rows sharing the last time of a page are asked for again and skipped
/// when already written (counted, so identical rows are each written once).
/// When more rows than a page share one time, that instant is read whole
/// (up to the store's largest page) before paging goes past it.
struct TimeCursor<T> {
    until: Option<DateTime<Utc>>,
    /// The rows written with the time `until` stands just after.
    at_edge: Vec<T>,
    /// An instant to read whole before going on.
    drain: Option<DateTime<Utc>>,
}

impl<T: PartialEq + Clone> TimeCursor<T> {
    fn new() -> Self {
        Self {
            until: None,
            at_edge: Vec::new(),
            drain: None,
        }
    }

    /// The rows of `rows` not written yet: each row written at the edge
    /// takes out one equal row.
    fn unseen(&self, rows: Vec<T>) -> Vec<T> {
        let mut seen = self.at_edge.clone();
        rows.into_iter()
            .filter(|r| match seen.iter().position(|s| s == r) {
                Some(i) => {
                    seen.swap_remove(i);
                    false
                }
                None => true,
            })
            .collect()
    }

    /// The rows of `page` (asked for with a limit of `EXPORT_PAGE`) not yet
    /// written, and whether paging is over.
    fn advance(&mut self, page: Vec<T>, time: impl Fn(&T) -> DateTime<Utc>) -> (Vec<T>, bool) {
        let full = page.len() == EXPORT_PAGE;
        let fresh = self.unseen(page);
        let Some(last) = fresh.last().map(&time) else {
            // Nothing new: a short page is the end; a full page of rows
            // already written means more than a page share one time: read
            // that instant whole next.
            if let (true, Some(until)) = (full, self.until) {
                self.drain = Some(until - Duration::nanoseconds(1));
                return (Vec::new(), false);
            }
            return (Vec::new(), true);
        };
        if !full {
            return (fresh, true);
        }
        // The next page starts at the last time, inclusive: before the
        // next instant a store can tell apart.
        self.until = Some(last + Duration::nanoseconds(1));
        self.at_edge.retain(|r| time(r) == last);
        self.at_edge
            .extend(fresh.iter().filter(|r| time(r) == last).cloned());
        (fresh, false)
    }

    /// The rows of the instant being drained (all of them, as read), not
    /// yet written; paging then goes on before that instant.
    fn drained(&mut self, rows: Vec<T>) -> Vec<T> {
        let fresh = self.unseen(rows);
        self.until = self.drain.take();
        self.at_edge.clear();
        fresh
    }
}

/// One tenant's export in progress.
pub struct Export {
    app: Arc<App>,
    tenant: TenantRecord,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    stage: Stage,
}

#[derive(Serialize)]
struct Line<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

fn lines<T: Serialize>(kind: &str, rows: impl IntoIterator<Item = T>) -> Bytes {
    let mut out = Vec::new();
    for data in rows {
        // The records are strings, numbers, times and maps with string
        // keys: serialising them cannot fail.
        let _ = serde_json::to_writer(&mut out, &Line { kind, data });
        out.push(b'\n');
    }
    Bytes::from(out)
}

impl Export {
    /// An export of `tenant` (already checked to be the caller's to see).
    pub(crate) fn new(app: Arc<App>, tenant: TenantRecord) -> Self {
        let now = Utc::now();
        let cutoff = app.tenancy().admin().retention_cutoff(&tenant, now);
        Self {
            app,
            tenant,
            cutoff,
            now,
            stage: Stage::Tenant,
        }
    }

    /// Where usage starts: the retention's edge, or the tenant's creation
    /// (to the hour) when later, so an export never walks empty years.
    fn usage_from(&self) -> DateTime<Utc> {
        let created = tenancy_core::plan::Period::Hour
            .window(self.tenant.created_at)
            .start;
        self.cutoff.max(created)
    }

    /// The export as a stream of NDJSON chunks. A store failure ends it
    /// with the error (the answer has begun: its status cannot change).
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, TenancyError>> + Send {
        futures_util::stream::unfold(self, |mut export| async move {
            match export.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), export)),
                Ok(None) => None,
                Err(e) => {
                    export.stage = Stage::Done;
                    Some((Err(e), export))
                }
            }
        })
    }

    /// The next non-empty chunk of lines; `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, TenancyError> {
        let tenancy = self.app.tenancy().clone();
        let id = self.tenant.id.clone();
        loop {
            let chunk = match &mut self.stage {
                Stage::Done => return Ok(None),
                Stage::Tenant => {
                    tenancy.catch_up().await;
                    self.stage = Stage::Realm;
                    lines("tenant", [Tenant::from(&self.tenant)])
                }
                Stage::Realm => {
                    self.stage = Stage::ApiKeys;
                    lines("realm", tenancy.admin().tenant_realm(&id).await?)
                }
                Stage::ApiKeys => {
                    self.stage = Stage::Users(None);
                    let keys = tenancy
                        .api_key_store()
                        .list(&id)
                        .await
                        .map_err(TenancyError::from)?;
                    lines("api_key", keys.iter().map(ApiKey::from))
                }
                Stage::Users(after) => {
                    let page = tenancy
                        .member_store()
                        .list(&id, after.as_ref(), EXPORT_PAGE)
                        .await
                        .map_err(TenancyError::from)?;
                    self.stage = match page.last() {
                        Some(last) if page.len() == EXPORT_PAGE => {
                            Stage::Users(Some(last.user_id.clone()))
                        }
                        _ => Stage::Teams(None),
                    };
                    lines("user", page)
                }
                Stage::Teams(after) => {
                    let page = tenancy
                        .team_store()
                        .list(&id, after.as_ref(), EXPORT_PAGE)
                        .await
                        .map_err(TenancyError::from)?;
                    self.stage = match page.last() {
                        Some(last) if page.len() == EXPORT_PAGE => {
                            Stage::Teams(Some(last.team_id.clone()))
                        }
                        _ => Stage::Audit(TimeCursor::new()),
                    };
                    lines("team", page)
                }
                Stage::Audit(cursor) => {
                    let Some(log) = tenancy.audit_query() else {
                        self.stage = Stage::Usage(self.usage_from());
                        continue;
                    };
                    let mut filter = AuditFilter::default();
                    if let Some(instant) = cursor.drain {
                        filter.since = Some(instant);
                        filter.until = Some(instant + Duration::nanoseconds(1));
                        filter.limit = AUDIT_MAX_LIMIT;
                        let rows = log.query(&id, &filter).await.map_err(TenancyError::from)?;
                        lines("audit_event", cursor.drained(rows))
                    } else {
                        filter.since = Some(self.cutoff);
                        filter.until = cursor.until;
                        filter.limit = EXPORT_PAGE;
                        let page = log.query(&id, &filter).await.map_err(TenancyError::from)?;
                        let (fresh, done) = cursor.advance(page, |e| e.timestamp);
                        if done {
                            self.stage = Stage::Usage(self.usage_from());
                        }
                        lines("audit_event", fresh)
                    }
                }
                Stage::Usage(from) => {
                    let from = *from;
                    let to = from + USAGE_SPAN;
                    let rows = tenancy
                        .usage_meter()
                        .usage(&id, from, to)
                        .await
                        .map_err(TenancyError::from)?;
                    self.stage = if to > self.now + Duration::hours(1) {
                        Stage::Telemetry(TimeCursor::new())
                    } else {
                        Stage::Usage(to)
                    };
                    lines(
                        "usage",
                        rows.into_iter().map(|r| crate::wire::UsageRow {
                            hour: r.hour,
                            event_type: r.event_type,
                            count: r.count,
                        }),
                    )
                }
                Stage::Telemetry(cursor) => {
                    let store = self.app.telemetry();
                    if let Some(instant) = cursor.drain {
                        let filter = TelemetryFilter {
                            since: Some(instant),
                            until: Some(instant + Duration::nanoseconds(1)),
                            limit: TELEMETRY_MAX_LIMIT,
                            ..TelemetryFilter::default()
                        };
                        let rows = store
                            .query(&id, &filter)
                            .await
                            .map_err(TenancyError::from)?;
                        lines("telemetry", cursor.drained(rows))
                    } else {
                        let filter = TelemetryFilter {
                            since: Some(self.cutoff),
                            until: cursor.until,
                            limit: EXPORT_PAGE,
                            ..TelemetryFilter::default()
                        };
                        let page = store
                            .query(&id, &filter)
                            .await
                            .map_err(TenancyError::from)?;
                        let (fresh, done) = cursor
                            .advance(page, |e| e.timestamp.unwrap_or(DateTime::<Utc>::MIN_UTC));
                        if done {
                            self.stage = Stage::Done;
                        }
                        lines("telemetry", fresh)
                    }
                }
            };
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store's answer: rows before `until`, newest first, a page at most.
    fn page(
        rows: &[(DateTime<Utc>, u32)],
        until: Option<DateTime<Utc>>,
    ) -> Vec<(DateTime<Utc>, u32)> {
        let mut page: Vec<_> = rows
            .iter()
            .filter(|(t, _)| until.is_none_or(|u| *t < u))
            .copied()
            .collect();
        page.sort_by_key(|r| std::cmp::Reverse(r.0));
        page.truncate(EXPORT_PAGE);
        page
    }

    fn export_all(rows: &[(DateTime<Utc>, u32)]) -> Vec<u32> {
        let mut cursor = TimeCursor::new();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            if let Some(instant) = cursor.drain {
                let whole: Vec<_> = rows.iter().filter(|r| r.0 == instant).copied().collect();
                out.extend(cursor.drained(whole).iter().map(|r| r.1));
                continue;
            }
            let (fresh, done) = cursor.advance(page(rows, cursor.until), |r| r.0);
            out.extend(fresh.iter().map(|r| r.1));
            if done {
                return out;
            }
        }
        panic!("paging never ended");
    }

    #[test]
    fn pages_lose_and_repeat_nothing_when_rows_share_a_time_across_a_page_edge() {
        let t0 = Utc::now();
        // Three rows per millisecond, and nanosecond times in between.
        let rows: Vec<(DateTime<Utc>, u32)> = (0..2_500u32)
            .map(|i| {
                let at = t0 - Duration::milliseconds(i64::from(i / 3));
                let at = if i % 7 == 0 {
                    at - Duration::nanoseconds(17)
                } else {
                    at
                };
                (at, i)
            })
            .collect();
        let mut got = export_all(&rows);
        got.sort_unstable();
        assert_eq!(got, (0..2_500).collect::<Vec<_>>());
    }

    #[test]
    fn more_rows_at_one_time_than_a_page_are_all_written_once() {
        let t0 = Utc::now();
        let rows: Vec<(DateTime<Utc>, u32)> = (0..EXPORT_PAGE as u32 * 2 + 5)
            .map(|i| (t0, i))
            .chain([
                (t0 - Duration::seconds(1), 99_999),
                (t0 + Duration::seconds(1), 7),
            ])
            .collect();
        let mut got = export_all(&rows);
        got.sort_unstable();
        let mut want: Vec<u32> = rows.iter().map(|r| r.1).collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn identical_rows_are_each_written() {
        let t0 = Utc::now();
        let rows: Vec<(DateTime<Utc>, u32)> = (0..EXPORT_PAGE + 10).map(|_| (t0, 1)).collect();
        assert_eq!(export_all(&rows).len(), rows.len());
    }
}
