//! Test support shared by the end-to-end suites.

pub mod contract;
pub mod delivery;
pub mod jwt;
pub mod local;
