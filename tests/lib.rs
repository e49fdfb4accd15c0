//! Shared helpers for the end-to-end suite live in `e2e/`; this library is intentionally empty.
