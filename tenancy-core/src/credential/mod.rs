//! Credentials: API keys (and, with the engine, JWT realms).

mod api_key;

pub use api_key::{ApiKeyDigest, ApiKeyRecord, InvalidKeyId, KeyId};
