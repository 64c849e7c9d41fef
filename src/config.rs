//! Plugin configuration.
