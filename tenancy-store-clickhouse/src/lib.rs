//! ClickHouse implementations of the [`tenancy_core`] audit and metering stores.
//!
//! The stores of this crate are not released yet; the crate pins the
//! `clickhouse` client the stores are written against.

pub use clickhouse;
