//! actix-web front end for [`tenancy_core`].
//!
//! This crate is where the actix-web `Transform` middleware and the
//! `FromRequest` extractors live. Its public surface is not released yet: today
//! it only re-exports the core, so applications can depend on the final crate
//! name.

pub use tenancy_core as core;
