//! The use cases: receive, consume and reconcile, the verification they start with, and reading
//! the results back (`read_rows`). They talk to the outside only through ports, so the Lambdas
//! and `gemini-hooks dev` run the same code on different adapters.

pub mod consume;
pub mod enqueue_once;
pub mod http;
pub mod offload;
pub mod read_rows;
pub mod receive;
pub mod reconcile;
pub mod routes;
pub mod secrets;
pub mod verify;
