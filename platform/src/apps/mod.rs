//! The domain layer: the flows that change applications (checking, acting on the engine and the
//! store, undoing on failure), called by the API's handlers, which only parse and render. No
//! HTTP type appears here; what a flow needs from the rest of the platform it names itself.

pub mod upload;
