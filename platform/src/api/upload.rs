//! `POST /application/applications/{id}/binaries`: microservice package upload.

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
