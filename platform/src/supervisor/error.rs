//! The supervisor's errors.

use crate::runtime::RuntimeError;
use crate::secrets::SecretsError;
use crate::store::StoreError;

/// Why a reconcile pass failed (it is retried; the pass after a failure starts afresh).
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot read the desired state: {0}")]
    Store(#[from] StoreError),
    #[error("the container runtime failed: {0}")]
    Runtime(#[from] RuntimeError),
}

/// Why an application cannot be deployed at all (shown as its status's `lastFailure`).
#[derive(Debug, thiserror::Error)]
pub(super) enum Undeployable {
    #[error(transparent)]
    Secret(#[from] SecretsError),
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
}
