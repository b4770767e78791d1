//! Test support that third-party stores and adapters can run too.
//!
//! - [`stores`]: the store acceptance suite, one function per store trait;
//! - [`services`]: where store tests find the real Redis and ClickHouse
//!   servers started by `scripts/test.sh`.

pub mod services;
pub mod stores;
