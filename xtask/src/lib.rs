//! Project automation behind `cargo xtask`: the code generator that turns
//! `spec/openapi.yaml` into `generated/`, and the checks built on it.

pub mod chaos;
pub mod ci;
pub mod codegen;
pub mod mock;
pub mod spec_diff;
pub mod spec_norm;
