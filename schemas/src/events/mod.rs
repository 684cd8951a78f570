//! Rust types of the events, one struct per `.avsc` file.
//!
//! Field order and enum variant order must match the schema: apache-avro's serializer writes
//! fields in the order serde emits them and enum symbols by variant position. The test suite
//! checks both for every type.

mod api;
mod apps;
mod authorization;
mod bulk;
mod console;
mod ehr;
mod resources;
mod sites;
mod tokens;
mod users;

pub use api::*;
pub use apps::*;
pub use authorization::*;
pub use bulk::*;
pub use console::*;
pub use ehr::*;
pub use resources::*;
pub use sites::*;
pub use tokens::*;
pub use users::*;
