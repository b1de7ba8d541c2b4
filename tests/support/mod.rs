//! Helpers shared by the integration tests. Each test file that needs them declares
//! `mod support;`.
#![allow(dead_code)]

pub mod client;
pub mod hub;
pub mod nginx;
pub mod redis_server;
pub mod whatwg;
