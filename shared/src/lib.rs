//! gemini-hooks core: everything the receiver, consumer, reconciler and the local CLI share.
//!
//! The folders are the architecture (ARCHITECTURE.md): [`domain`] (pure rules, no I/O) ←
//! [`ports`] (one trait per kind of I/O) ← [`usecases`] (receive, consume, reconcile) and
//! [`adapters`] (DynamoDB, SQS, Secrets Manager, the Gemini HTTP API, JWKS, SQLite, EMF). Imports
//! only point inward; `scripts/check-layers.py` enforces it. [`config`] reads the environment
//! and [`wiring`] is the one place that builds use cases from adapters.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod ports;
pub mod usecases;
pub mod wiring;
