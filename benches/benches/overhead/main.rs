//! In-process overhead of the tenancy middleware, each group next to its
//! baseline in the same run:
//!
//! - [`admit`]: `Tenancy::admit` + `complete` per path, next to a bare
//!   harness and `jsonwebtoken::decode` alone;
//! - [`adapters`]: a full request through axum and actix-web, bare vs
//!   layered, next to the hand-rolled peers.
//!
//! `cargo bench -p tenancy-benches --bench overhead` (add a criterion filter
//! such as `-- axum_hs256` to run one group).

mod adapters;
mod admit;
mod fixture;

fn main() {
    if !fixture::under_cargo_bench() {
        eprintln!("overhead: run with `cargo bench`; skipped");
        return;
    }
    admit::run();
    adapters::run();
}
