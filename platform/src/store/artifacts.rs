//! What a stored version is outside the database: its image and Berth's tag on it, and its
//! package file. Applications record them and deletion intents carry them (serialized in the
//! intent's body, so the field names are a stored format), so neither module owns the other.

/// One uploaded version of a microservice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub version: String,
    pub image_id: String,
    pub image_tag: String,
    pub package_file: String,
}
