//! OpenAPI schemas (feature `openapi`) for the types whose JSON form is
//! their own: validated strings and the role. The other wire types derive
//! [`utoipa::ToSchema`] where they are defined, so an API built on tenancy
//! can put tenants, settings, realms, audit events and problem bodies into
//! its own document:
//!
//! ```
//! use tenancy_core::error::Problem;
//! use tenancy_core::tenant::{TenantId, TenantSettings};
//! use utoipa::{PartialSchema, ToSchema};
//!
//! assert_eq!(Problem::name(), "Problem");
//! let id = serde_json::to_value(TenantId::schema())?;
//! assert_eq!(id["pattern"], "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$");
//! let settings = serde_json::to_value(TenantSettings::schema())?;
//! assert!(settings["properties"]["quota_overrides"].is_object());
//! # Ok::<(), serde_json::Error>(())
//! ```

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{PartialSchema, ToSchema};

use crate::credential::{ClaimPath, MAX_CLAIM_PATH_BYTES};
use crate::key_id::{KEY_ID_MAX_LEN, KeyId};
use crate::label::{LABEL_MAX_LEN, Label};
use crate::plan::Limit;
use crate::rbac::Role;
use crate::tenant::{TENANT_ID_MAX_LEN, TenantId};

/// A string schema with `pattern` and `description`.
fn string(pattern: Option<&str>, max_length: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .pattern(pattern)
        .min_length(Some(1))
        .max_length(Some(max_length))
        .description(Some(description))
        .into()
}

impl PartialSchema for TenantId {
    fn schema() -> RefOr<Schema> {
        string(
            Some("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
            TENANT_ID_MAX_LEN,
            "A tenant id: a lowercase slug.",
        )
    }
}
impl ToSchema for TenantId {}

impl PartialSchema for KeyId {
    fn schema() -> RefOr<Schema> {
        string(
            Some("^[A-Za-z0-9_-]{1,64}$"),
            KEY_ID_MAX_LEN,
            "An API key's id (not its secret).",
        )
    }
}
impl ToSchema for KeyId {}

impl PartialSchema for Label {
    fn schema() -> RefOr<Schema> {
        string(
            Some("^[A-Za-z0-9_./-]{1,128}$"),
            LABEL_MAX_LEN,
            "A label: event types, budget and feature names.",
        )
    }
}
impl ToSchema for Label {}

impl PartialSchema for crate::member::RecordId {
    fn schema() -> RefOr<Schema> {
        string(
            Some("^[A-Za-z0-9_./-]{1,128}$"),
            LABEL_MAX_LEN,
            "The id of a member (`usr_…`) or a team (`team_…`).",
        )
    }
}
impl ToSchema for crate::member::RecordId {}

impl PartialSchema for ClaimPath {
    fn schema() -> RefOr<Schema> {
        string(
            None,
            MAX_CLAIM_PATH_BYTES,
            "A claim's place in a token: a dotted path (`realm_access.roles`) or a JSON Pointer (`/https:~1~1acme.example~1tenant`), at most 8 segments.",
        )
    }
}
impl ToSchema for ClaimPath {}

impl PartialSchema for Role {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some(Role::ALL.iter().map(|r| r.as_str())))
            .description(Some("A role, lowest first."))
            .into()
    }
}
impl ToSchema for Role {}

impl PartialSchema for Limit {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some(["unlimited"])),
            )
            .description(Some("A count limit: a number, or `unlimited`."))
            .into()
    }
}
impl ToSchema for Limit {}
