use std::fmt;

use aws_lc_rs::{digest, hmac};

use crate::credential::{ApiKeyDigest, KeyId};
use crate::error::ApiKeyRejection;
use crate::secret::Secret;

/// Bytes of OS randomness in a key (160 bits).
const RANDOM_BYTES: usize = 20;
/// Base62 characters holding the random part (62^27 > 2^160).
const RANDOM_CHARS: usize = 27;
/// Base62 characters of the checksum (62^6 > 2^32).
const CHECKSUM_CHARS: usize = 6;
/// Longest key accepted before any parsing: a 16-byte prefix, `_`, the body.
pub(crate) const MAX_KEY_LEN: usize = 16 + 1 + RANDOM_CHARS + CHECKSUM_CHARS;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly issued API key secret: `<prefix>_<random><checksum>`.
///
/// The secret is shown once, through [`expose`](Self::expose), when the key is
/// issued; only its [`ApiKeyDigest`] is stored. `Debug` and `Display` print
/// the prefix and key id only.
///
/// ```
/// use tenancy_core::credential::{ApiKeyHasher, ApiKeySecret, KeyId};
///
/// let key_id = KeyId::new("key_demo")?;
/// let secret = ApiKeySecret::generate("tnk", key_id).expect("OS randomness");
/// assert!(secret.expose().starts_with("tnk_"));
/// assert!(!format!("{secret:?}").contains(secret.expose()));
/// let hasher = ApiKeyHasher::new("tnk", None);
/// assert_eq!(hasher.digest(secret.expose()).unwrap(), hasher.digest(secret.expose()).unwrap());
/// # Ok::<(), tenancy_core::credential::InvalidKeyId>(())
/// ```
#[derive(Clone)]
pub struct ApiKeySecret {
    value: String,
    prefix_len: usize,
    key_id: KeyId,
}

impl ApiKeySecret {
    /// Generates a key with `prefix` from 160 bits of OS randomness; `None`
    /// when the OS has no randomness to give.
    pub fn generate(prefix: &str, key_id: KeyId) -> Option<Self> {
        let mut random = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut random).ok()?;
        let mut value = String::with_capacity(prefix.len() + 1 + RANDOM_CHARS + CHECKSUM_CHARS);
        value.push_str(prefix);
        value.push('_');
        push_base62(&mut value, &random, RANDOM_CHARS);
        let checksum = checksum(value.as_bytes());
        push_base62(&mut value, &checksum.to_be_bytes(), CHECKSUM_CHARS);
        Some(Self {
            value,
            prefix_len: prefix.len(),
            key_id,
        })
    }

    /// The secret. Show it to its owner once; never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The key's prefix.
    pub fn prefix(&self) -> &str {
        &self.value[..self.prefix_len]
    }

    /// The key's public id.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("prefix", &self.prefix())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_… ({})", self.prefix(), self.key_id)
    }
}

/// Checks the format of presented keys and digests them: SHA-256, or
/// HMAC-SHA-256 with a server pepper, once per key.
///
/// A key with the wrong prefix, length, alphabet or checksum (CRC32) is
/// refused as [`ApiKeyRejection::Malformed`] without a digest or a store
/// lookup.
///
/// ```
/// use tenancy_core::credential::ApiKeyHasher;
/// use tenancy_core::error::ApiKeyRejection;
///
/// let hasher = ApiKeyHasher::new("tnk", None);
/// assert_eq!(hasher.digest("tnk_notakey"), Err(ApiKeyRejection::Malformed));
/// assert_eq!(hasher.digest("ghp_x"), Err(ApiKeyRejection::Malformed));
/// ```
#[derive(Clone)]
pub struct ApiKeyHasher {
    prefix: String,
    /// HMAC-SHA256 with the pepper as its key (the key's inner and outer
    /// pads hashed once, here).
    pepper: Option<hmac::Key>,
}

impl fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyHasher")
            .field("prefix", &self.prefix)
            .field("peppered", &self.pepper.is_some())
            .finish()
    }
}

impl ApiKeyHasher {
    /// A hasher for keys with `prefix`, peppered when `pepper` is set.
    pub fn new(prefix: impl Into<String>, pepper: Option<&Secret>) -> Self {
        Self {
            prefix: prefix.into(),
            pepper: pepper.map(|p| hmac::Key::new(hmac::HMAC_SHA256, p.expose().as_bytes())),
        }
    }

    /// The prefix of the keys this hasher accepts.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Checks the format of `presented` and returns its digest.
    pub fn digest(&self, presented: &str) -> Result<ApiKeyDigest, ApiKeyRejection> {
        self.check_format(presented)?;
        Ok(self.digest_unchecked(presented))
    }

    fn check_format(&self, presented: &str) -> Result<(), ApiKeyRejection> {
        let expected_len = self.prefix.len() + 1 + RANDOM_CHARS + CHECKSUM_CHARS;
        if presented.len() != expected_len || presented.len() > MAX_KEY_LEN {
            return Err(ApiKeyRejection::Malformed);
        }
        let bytes = presented.as_bytes();
        let (head, body) = bytes.split_at(self.prefix.len() + 1);
        if &head[..self.prefix.len()] != self.prefix.as_bytes() || head[self.prefix.len()] != b'_' {
            return Err(ApiKeyRejection::Malformed);
        }
        if !body.iter().all(u8::is_ascii_alphanumeric) {
            return Err(ApiKeyRejection::Malformed);
        }
        let (signed, check) = bytes.split_at(bytes.len() - CHECKSUM_CHARS);
        let mut expected = [0u8; CHECKSUM_CHARS];
        write_base62_u32(checksum(signed), &mut expected);
        if expected != check {
            return Err(ApiKeyRejection::Malformed);
        }
        Ok(())
    }

    fn digest_unchecked(&self, presented: &str) -> ApiKeyDigest {
        // AWS-LC's SHA-256 (SHA extensions, else AVX2 or SSSE3 code).
        let mut bytes = [0u8; 32];
        match &self.pepper {
            Some(key) => bytes.copy_from_slice(hmac::sign(key, presented.as_bytes()).as_ref()),
            None => bytes
                .copy_from_slice(digest::digest(&digest::SHA256, presented.as_bytes()).as_ref()),
        }
        ApiKeyDigest::from_bytes(bytes)
    }
}

/// A new public key id, `key_` and 16 base62 characters of OS randomness.
///
/// ```
/// let id = tenancy_core::credential::new_key_id().unwrap();
/// assert!(id.as_str().starts_with("key_"));
/// ```
pub fn new_key_id() -> Option<KeyId> {
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).ok()?;
    let mut id = String::from("key_");
    push_base62(&mut id, &random, 16);
    KeyId::new(id).ok()
}

/// CRC32 over `bytes`: it catches typos and truncation before a lookup, as
/// the checksums of GitHub-style tokens do. It is not a secret (anyone can
/// compute it); only the digest guards the key.
fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Appends `bytes`, read as a big-endian number, in exactly `width` base62
/// digits (most significant first). `bytes` is at most 32 long and `width`
/// at most 64.
fn push_base62(out: &mut String, bytes: &[u8], width: usize) {
    let mut digits = [0u8; 64];
    let digits = &mut digits[..width.min(64)];
    write_base62(bytes, digits);
    out.extend(digits.iter().map(|d| *d as char));
}

/// Writes `bytes`, read as a big-endian number, as base62 digits filling
/// `digits` (most significant first), without allocating.
fn write_base62(bytes: &[u8], digits: &mut [u8]) {
    let mut n = [0u8; 32];
    let n = &mut n[..bytes.len().min(32)];
    n.copy_from_slice(&bytes[..n.len()]);
    for slot in digits.iter_mut().rev() {
        // Long division of n by 62.
        let mut rem: u32 = 0;
        for byte in n.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        *slot = BASE62[rem as usize];
    }
}

/// [`write_base62`] of a `u32`, in machine arithmetic (the checksum of
/// every presented key).
fn write_base62_u32(mut n: u32, digits: &mut [u8]) {
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn checksum_digits_are_the_long_division_digits(n in any::<u32>()) {
            let (mut long, mut short) = ([0u8; CHECKSUM_CHARS], [0u8; CHECKSUM_CHARS]);
            write_base62(&n.to_be_bytes(), &mut long);
            write_base62_u32(n, &mut short);
            prop_assert_eq!(long, short);
        }
    }

    fn key() -> ApiKeySecret {
        ApiKeySecret::generate("tnk", KeyId::new("k1").unwrap()).unwrap()
    }

    #[test]
    fn keys_with_the_longest_prefix_are_read() {
        let prefix = "p".repeat(16);
        let hasher = ApiKeyHasher::new(prefix.clone(), None);
        let longest = ApiKeySecret::generate(&prefix, KeyId::new("k1").unwrap()).unwrap();
        assert_eq!(longest.expose().len(), MAX_KEY_LEN);
        assert!(hasher.digest(longest.expose()).is_ok());
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let hasher = ApiKeyHasher::new("tnk", None);
        let (a, b) = (key(), key());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 3 + 1 + RANDOM_CHARS + CHECKSUM_CHARS);
        assert_ne!(
            hasher.digest(a.expose()).unwrap(),
            hasher.digest(b.expose()).unwrap()
        );
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let hasher = ApiKeyHasher::new("tnk", None);
        let k = key();
        let mut bytes = k.expose().as_bytes().to_vec();
        let i = 10;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(hasher.digest(&tampered), Err(ApiKeyRejection::Malformed));
    }

    #[test]
    fn wrong_prefix_is_malformed() {
        let k = key();
        assert_eq!(
            ApiKeyHasher::new("abc", None).digest(k.expose()),
            Err(ApiKeyRejection::Malformed)
        );
    }

    #[test]
    fn pepper_changes_the_digest() {
        let k = key();
        let plain = ApiKeyHasher::new("tnk", None).digest(k.expose()).unwrap();
        let pepper = Secret::new("pepper-pepper-pepper");
        let peppered = ApiKeyHasher::new("tnk", Some(&pepper))
            .digest(k.expose())
            .unwrap();
        assert_ne!(plain, peppered);
        // The digests are SHA-256 and HMAC-SHA256, as another
        // implementation computes them: stored digests stay valid.
        use ::hmac::Mac as _;
        use sha2::Digest as _;
        let expected: [u8; 32] = sha2::Sha256::digest(k.expose().as_bytes()).into();
        assert_eq!(plain.as_bytes(), &expected);
        let mut mac =
            ::hmac::Hmac::<sha2::Sha256>::new_from_slice(pepper.expose().as_bytes()).unwrap();
        mac.update(k.expose().as_bytes());
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(peppered.as_bytes(), &expected);
    }

    #[test]
    fn debug_and_display_hide_the_secret() {
        let k = key();
        let secret_part = &k.expose()[4..];
        assert!(!format!("{k:?}").contains(secret_part));
        assert!(!k.to_string().contains(secret_part));
        assert!(format!("{k:?}").contains("k1"));
    }

    #[test]
    fn base62_is_fixed_width() {
        let mut s = String::new();
        push_base62(&mut s, &[0; 4], 6);
        assert_eq!(s, "000000");
        let mut s = String::new();
        push_base62(&mut s, &[0, 0, 0, 62], 6);
        assert_eq!(s, "000010");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_is_malformed(s in any::<String>()) {
            prop_assert_eq!(ApiKeyHasher::new("tnk", None).digest(&s), Err(ApiKeyRejection::Malformed));
        }

        #[test]
        fn near_keys_are_malformed(body in "[A-Za-z0-9]{33}") {
            let s = format!("tnk_{body}");
            // A random body passes the checksum with probability 2^-32 at most.
            prop_assert_eq!(ApiKeyHasher::new("tnk", None).digest(&s), Err(ApiKeyRejection::Malformed));
        }
    }
}
