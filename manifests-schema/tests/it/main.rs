//! Integration tests of `manifests_schema`: real manifests, rule table, schema/type agreement.

mod real_manifests;
