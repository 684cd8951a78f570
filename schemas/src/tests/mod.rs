//! Tests of the schema files, the encoding and the resolution of earlier versions.

mod canonical;
mod compat;
mod evolution;
mod files;
mod fuzz;
mod roundtrip;
mod values;

use crate::registry::Registry;

fn registry() -> &'static Registry {
    &crate::REGISTRY
}
