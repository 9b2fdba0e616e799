//! gemini-hooks core: everything the receiver, consumer, reconciler and the local CLI share.
//!
//! Layout follows `DESIGN.md` §2: pure domain rules (verification, event model, results
//! parsing) sit beside narrow ports (`store`) and their adapters; the use cases (`receive`,
//! `consume`) only talk to ports, so the Lambda functions and `gemini-hooks dev` run the
//! same code against DynamoDB/SQS or SQLite.

pub mod clock;
pub mod config;
pub mod consume;
pub mod dedupe_keys;
pub mod enqueue_once;
pub mod envelope;
pub mod event;
pub mod gemini;
pub mod http;
pub mod jobs;
pub mod receive;
pub mod reconcile;
pub mod results;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod verify;
pub mod wiring;
