//! The integration tests, in one test binary (one link instead of one per file): each former
//! `tests/*.rs` file is a module here, and the shared helpers are modules of this crate.
//!
//! Run one group with `cargo test --test it <module>::`, e.g. `cargo test --test it engine::`.

mod common;
mod receiver;

mod architecture;
mod contract;
mod engine;
mod foundation;
mod keys;
mod power_automate;
mod readme;
mod replicas;
mod spec;
mod webhooks;
