//! Test support that third-party stores and adapters can run too.
//!
//! - [`stores`]: the store acceptance suite, one function per store trait;
//! - [`conformance`]: the adapter conformance table;
//! - [`faults`]: a store that fails every call;
//! - [`idp`]: an identity provider's documents at Keycloak's paths;
//! - [`services`]: where store tests find the real Redis and ClickHouse
//!   servers started by `scripts/test.sh`.

pub mod conformance;
pub mod faults;
pub mod idp;
pub mod services;
pub mod stores;
