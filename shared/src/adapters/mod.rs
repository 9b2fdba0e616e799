//! Adapters: each implements a port (or two) on one technology, named `<Tech><Port>`. They may use
//! the domain and the ports, never the use cases.

pub mod aws;
#[cfg(feature = "sqlite")]
pub mod file_objects;
#[cfg(feature = "sqlite")]
pub mod file_payloads;
pub mod gemini;
pub mod jwks;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod telemetry;
