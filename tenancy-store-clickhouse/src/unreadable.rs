//! Rows a read cannot understand: skipped, counted and reported, never the
//! end of the read.
//!
//! A row written by another version, by hand or by a bug (an `actor_kind`
//! left empty, details that are not JSON) would otherwise fail every read
//! of its tenant's log. Reads keep the rows around it instead; each skipped
//! row adds one to [`ROWS_SKIPPED_TOTAL`] (label `table`), and a WARN names
//! the table, the tenant and what was wrong, at most once a second per
//! process, with how many were held back since.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tenancy_core::store::StoreError;
use tenancy_core::tenant::TenantId;

/// Counter of the rows reads skipped because they could not be understood,
/// labelled `table`.
pub const ROWS_SKIPPED_TOTAL: &str = "tenancy_store_rows_skipped_total";

/// The rows of `table` that convert, in order; the others skipped, counted
/// and reported.
pub(crate) fn keep_readable<T>(
    table: &'static str,
    tenant: &TenantId,
    rows: impl IntoIterator<Item = Result<T, StoreError>>,
) -> Vec<T> {
    rows.into_iter()
        .filter_map(|row| match row {
            Ok(row) => Some(row),
            Err(e) => {
                skipped(table, tenant, &e);
                None
            }
        })
        .collect()
}

fn skipped(table: &'static str, tenant: &TenantId, error: &StoreError) {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static HELD_BACK: AtomicU64 = AtomicU64::new(0);
    metrics::counter!(ROWS_SKIPPED_TOTAL, "table" => table).increment(1);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let last = LAST_SECOND.load(Relaxed);
    if last == second
        || LAST_SECOND
            .compare_exchange(last, second, Relaxed, Relaxed)
            .is_err()
    {
        HELD_BACK.fetch_add(1, Relaxed);
        return;
    }
    let held_back = HELD_BACK.swap(0, Relaxed);
    tracing::warn!(table, tenant = %tenant, %error, held_back, "skipped a row that cannot be read");
}
