//! gitlab
pub mod routes;
