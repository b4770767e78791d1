//! Credentials: API keys (format, issuing, digests, stored records) and JWT
//! realms.

mod api_key;
mod api_key_secret;
mod jwt;
#[cfg(feature = "openapi")]
pub(crate) use jwt::MAX_PATH_BYTES as MAX_CLAIM_PATH_BYTES;

pub use crate::key_id::{InvalidKeyId, KeyId};
pub use api_key::{ApiKeyDigest, ApiKeyRecord};
pub use api_key_secret::{ApiKeyHasher, ApiKeySecret, new_key_id};
pub(crate) use jwt::Pending;
#[cfg(fuzzing)]
#[doc(hidden)]
pub use jwt::parse_jwk_set_for_fuzzing;
pub use jwt::{
    ClaimPath, InvalidClaimPath, JwtClaims, JwtVerifier, RealmClaim, TenantRealm, VerifiedToken,
    encode_hs256, normalize_issuer, tenant_realm_name,
};
