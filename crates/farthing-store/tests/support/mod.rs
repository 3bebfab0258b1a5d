//! Test support shared by this crate's tests (and, by path, by the binary's).
pub mod postgres;
