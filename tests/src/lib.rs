//! End-to-end tests and shared test helpers.
