//! Test support for gemini-hooks' end-to-end suite: paths to the built binaries, helpers for
//! the moto server that `scripts/test.sh` starts, and a fake Lambda Runtime API that runs the
//! real function binaries the way Lambda does.

pub mod bins;
pub mod moto;
pub mod runtime_api;
