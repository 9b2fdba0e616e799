//! Test support for gemini-hooks' end-to-end suite: paths to the built binaries, helpers for
//! the moto and dynalite servers that `scripts/test.sh` starts, a fake Lambda Runtime API that
//! runs the real function binaries the way Lambda does, a fake Gemini API, and delivery/JWT
//! builders.

pub mod bins;
pub mod consume;
pub mod contract;
pub mod delivery;
pub mod dynalite;
pub mod fake_gemini;
pub mod jwt;
pub mod local;
pub mod moto;
pub mod runtime_api;
pub mod template;
