//! FHIR R4 logic without I/O.

pub mod bundle;
pub mod datetime;
pub mod elements;
pub mod error;
pub mod fhirpath;
pub mod id;
pub mod index;
pub mod number;
pub mod reference;
pub mod resource_types;
pub mod search_params;
pub mod validate;
