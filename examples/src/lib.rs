//! The reference server of the tenancy workspace.
//!
//! The framework-free application core and its axum and actix-web binaries
//! live in this package. No binary is shipped yet.
