//! Helpers shared by the integration tests. Each test file that needs them declares
//! `mod support;`.

pub mod whatwg;
