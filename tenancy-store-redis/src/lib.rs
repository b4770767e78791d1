//! Redis implementations of the [`tenancy_core`] store traits.
//!
//! The stores of this crate are not released yet; the crate pins the `redis`
//! client the stores are written against.

pub use redis;
