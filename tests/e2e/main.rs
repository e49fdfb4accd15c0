//! End-to-end tests: filled in by the examples work.
