//! Flows over applications that span the store, the engine and the supervisor, shared by the
//! API and the console.

pub mod versions;
