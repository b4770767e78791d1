//! Benchmarks of the tenancy workspace.
//!
//! Criterion benches live under `benches/`; this library holds what they share.
