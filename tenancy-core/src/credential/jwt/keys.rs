//! Verification keys: each fixed to one algorithm, loaded from a secret, a
//! PEM public key or a JWK set, and the rules that pick one for a token.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::JwtAlgorithm;
use crate::error::TokenRejection;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (aws-lc-rs verifies no larger).
const MAX_RSA_BITS: usize = 8192;
/// Most keys a JWK set may hold; a larger set is refused whole.
pub(super) const MAX_JWKS_KEYS: usize = 64;
/// Most keys one token is checked against when it names no `kid` (or a
/// `kid` no key has).
pub(super) const MAX_KEYS_TRIED: usize = 3;
/// Smallest HMAC secret accepted from a JWK set, in bytes.
const MIN_HMAC_BYTES: usize = 32;

/// The `alg` header value of each accepted algorithm.
pub(super) fn parse_algorithm(alg: &str) -> Option<JwtAlgorithm> {
    Some(match alg {
        "HS256" => JwtAlgorithm::HS256,
        "HS384" => JwtAlgorithm::HS384,
        "HS512" => JwtAlgorithm::HS512,
        "RS256" => JwtAlgorithm::RS256,
        "RS384" => JwtAlgorithm::RS384,
        "RS512" => JwtAlgorithm::RS512,
        "ES256" => JwtAlgorithm::ES256,
        "ES384" => JwtAlgorithm::ES384,
        "EdDSA" => JwtAlgorithm::EdDSA,
        _ => return None,
    })
}

fn to_jsonwebtoken(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn from_key_algorithm(alg: KeyAlgorithm) -> Option<JwtAlgorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => JwtAlgorithm::HS256,
        KeyAlgorithm::HS384 => JwtAlgorithm::HS384,
        KeyAlgorithm::HS512 => JwtAlgorithm::HS512,
        KeyAlgorithm::RS256 => JwtAlgorithm::RS256,
        KeyAlgorithm::RS384 => JwtAlgorithm::RS384,
        KeyAlgorithm::RS512 => JwtAlgorithm::RS512,
        KeyAlgorithm::ES256 => JwtAlgorithm::ES256,
        KeyAlgorithm::ES384 => JwtAlgorithm::ES384,
        KeyAlgorithm::EdDSA => JwtAlgorithm::EdDSA,
        _ => return None,
    })
}

/// One key, fixed to one algorithm.
pub(super) struct VerifyKey {
    kid: Option<Box<str>>,
    alg: JwtAlgorithm,
    key: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// An HMAC key.
    pub(super) fn hmac(kid: Option<&str>, alg: JwtAlgorithm, secret: &[u8]) -> Self {
        Self {
            kid: kid.map(Into::into),
            alg,
            key: DecodingKey::from_secret(secret),
        }
    }

    /// A public key in PEM for `alg` (RS*, ES*, EdDSA).
    pub(super) fn from_pem(
        kid: Option<&str>,
        alg: JwtAlgorithm,
        pem: &[u8],
    ) -> Result<Self, String> {
        let key = match alg {
            JwtAlgorithm::RS256 | JwtAlgorithm::RS384 | JwtAlgorithm::RS512 => {
                DecodingKey::from_rsa_pem(pem)
            }
            JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => DecodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
                return Err("HMAC algorithms take a secret, not a public key".to_owned());
            }
        }
        .map_err(|e| format!("not a {alg:?} public key in PEM: {e}"))?;
        check_public_key(alg, &key)?;
        Ok(Self {
            kid: kid.map(Into::into),
            alg,
            key,
        })
    }

    /// A key from one JWK; refused (with the reason) when the JWK is not a
    /// usable signing key: no `alg`, an encryption key, an algorithm not
    /// accepted here, or a key that does not fit its `alg`.
    fn from_jwk(jwk: &Jwk) -> Result<Self, String> {
        let common = &jwk.common;
        if matches!(
            common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return Err("an encryption key".to_owned());
        }
        if let Some(ops) = &common.key_operations
            && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
        {
            return Err("key_ops does not allow verify".to_owned());
        }
        let alg = common
            .key_algorithm
            .ok_or_else(|| "no alg: each key must name its algorithm".to_owned())?;
        let alg = from_key_algorithm(alg).ok_or_else(|| format!("alg {alg} is not accepted"))?;
        let fits = match (&jwk.algorithm, alg) {
            (AlgorithmParameters::RSA(_), a) => {
                matches!(
                    a,
                    JwtAlgorithm::RS256 | JwtAlgorithm::RS384 | JwtAlgorithm::RS512
                )
            }
            (AlgorithmParameters::EllipticCurve(p), JwtAlgorithm::ES256) => {
                p.curve == EllipticCurve::P256
            }
            (AlgorithmParameters::EllipticCurve(p), JwtAlgorithm::ES384) => {
                p.curve == EllipticCurve::P384
            }
            (AlgorithmParameters::OctetKeyPair(p), JwtAlgorithm::EdDSA) => {
                p.curve == EllipticCurve::Ed25519
            }
            // A JWK set is published: a symmetric key in it is a secret
            // anyone could read, and a token signed with it anyone could mint.
            (AlgorithmParameters::OctetKey(_), _) => {
                return Err("symmetric (oct) keys are never taken from a JWK set".to_owned());
            }
            _ => false,
        };
        if !fits {
            return Err(format!("the key type does not fit alg {alg:?}"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unreadable key: {e}"))?;
        check_public_key(alg, &key)?;
        Ok(Self {
            kid: common.key_id.as_deref().map(Into::into),
            alg,
            key,
        })
    }

    pub(super) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies `signature` (decoded) over `message`.
    ///
    /// Uses jsonwebtoken's aws-lc-rs provider directly rather than the
    /// process-wide default, which panics when a dependency graph turns on
    /// both of jsonwebtoken's backends.
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), TokenRejection> {
        let verifier = (PROVIDER.verifier_factory)(&to_jsonwebtoken(self.alg), &self.key)
            .map_err(|_| TokenRejection::Signature)?;
        verifier
            .verify(message, signature)
            .map_err(|_| TokenRejection::Signature)
    }
}

/// The cryptography: jsonwebtoken's aws-lc-rs provider.
pub(super) static PROVIDER: &jsonwebtoken::crypto::CryptoProvider =
    &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;

/// Refuses keys that cannot verify anything: RSA moduli under 2048 bits,
/// EC points of the wrong curve, Ed25519 keys of the wrong length, short
/// HMAC secrets.
fn check_public_key(alg: JwtAlgorithm, key: &DecodingKey) -> Result<(), String> {
    use jsonwebtoken::DecodingKeyKind;
    match (alg, key.kind()) {
        (JwtAlgorithm::RS256 | JwtAlgorithm::RS384 | JwtAlgorithm::RS512, kind) => {
            let modulus_bytes = match kind {
                DecodingKeyKind::RsaModulusExponent { n, .. } => {
                    n.iter().skip_while(|b| **b == 0).count()
                }
                DecodingKeyKind::SecretOrDer(der) => {
                    let utils = &PROVIDER.key_utils;
                    let (n, _) = (utils.rsa_pub_components_from_public_key)(der)
                        .map_err(|e| format!("not an RSA public key: {e}"))?;
                    n.iter().skip_while(|b| **b == 0).count()
                }
            };
            if modulus_bytes * 8 < MIN_RSA_BITS || modulus_bytes * 8 > MAX_RSA_BITS {
                return Err(format!(
                    "RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
                ));
            }
        }
        (JwtAlgorithm::ES256, DecodingKeyKind::SecretOrDer(point)) if point.len() != 65 => {
            return Err("ES256 needs a P-256 key".to_owned());
        }
        (JwtAlgorithm::ES384, DecodingKeyKind::SecretOrDer(point)) if point.len() != 97 => {
            return Err("ES384 needs a P-384 key".to_owned());
        }
        (JwtAlgorithm::EdDSA, DecodingKeyKind::SecretOrDer(x)) if x.len() != 32 => {
            return Err("EdDSA needs an Ed25519 key".to_owned());
        }
        (JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512, kind) => {
            if matches!(kind, DecodingKeyKind::SecretOrDer(s) if s.len() < MIN_HMAC_BYTES) {
                return Err(format!(
                    "HMAC secrets must be at least {MIN_HMAC_BYTES} bytes"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads a JWK set, keeping the keys that can verify a token and fit the
/// optional `alg` and `kid` restrictions of the configuration. Refuses a set
/// with no usable key, or with more than [`MAX_JWKS_KEYS`] entries (before
/// any is read: a set's size is its publisher's choice, and every key is
/// work on every token that names none).
pub(super) fn parse_jwks(
    bytes: &[u8],
    only_alg: Option<JwtAlgorithm>,
    only_kid: Option<&str>,
) -> Result<Vec<Arc<VerifyKey>>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|e| format!("not a JWK set: {e}"))?;
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(format!(
            "the set holds {} keys; at most {MAX_JWKS_KEYS} are accepted",
            set.keys.len()
        ));
    }
    let mut keys = Vec::with_capacity(set.keys.len());
    let mut skipped = Vec::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        let key = serde_json::from_value::<Jwk>(value)
            .map_err(|e| format!("not a JWK: {e}"))
            .and_then(|jwk| VerifyKey::from_jwk(&jwk));
        match key {
            Ok(key)
                if only_alg.is_none_or(|a| a == key.alg)
                    && only_kid.is_none_or(|k| key.kid() == Some(k)) =>
            {
                keys.push(Arc::new(key));
            }
            Ok(_) => {}
            Err(why) => {
                tracing::debug!(index = i, reason = %why, "JWK skipped");
                skipped.push(format!("keys[{i}]: {why}"));
            }
        }
    }
    if keys.is_empty() {
        let mut message = "no usable signing key".to_owned();
        if !skipped.is_empty() {
            message.push_str(" (");
            message.push_str(&skipped.join("; "));
            message.push(')');
        }
        return Err(message);
    }
    Ok(keys)
}

/// A realm's keys at one moment.
#[derive(Debug, Default)]
pub(super) struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    /// Whether any key has a `kid`.
    any_kid: bool,
}

/// Why no key verified a token.
pub(super) enum KeyMiss {
    /// The token was refused.
    Rejected(TokenRejection),
    /// The token names a `kid` no key has (a JWK set refresh may find it).
    UnknownKid,
}

impl KeySet {
    pub(super) fn new(keys: Vec<Arc<VerifyKey>>) -> Self {
        let any_kid = keys.iter().any(|k| k.kid.is_some());
        Self { keys, any_kid }
    }

    pub(super) fn keys(&self) -> &[Arc<VerifyKey>] {
        &self.keys
    }

    /// Verifies `signature` over `message` with the key the token asks for.
    ///
    /// With a `kid` that a key has: that key only, and `alg` must be its
    /// algorithm. With a `kid` no key has: the first [`MAX_KEYS_TRIED`] keys
    /// without a `kid` whose algorithm is `alg`, else
    /// [`KeyMiss::UnknownKid`]. Without a `kid` (or when no key has one):
    /// the first [`MAX_KEYS_TRIED`] keys whose algorithm is `alg`; none →
    /// `Algorithm`. So a token costs at most three signature checks, however
    /// many keys the realm has.
    pub(super) fn verify(
        &self,
        alg: JwtAlgorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<(), KeyMiss> {
        use base64::Engine as _;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| KeyMiss::Rejected(TokenRejection::Malformed))?;
        let signature = &signature;
        if let Some(kid) = kid.filter(|_| self.any_kid) {
            if let Some(key) = self.keys.iter().find(|k| k.kid() == Some(kid)) {
                if key.alg != alg {
                    return Err(KeyMiss::Rejected(TokenRejection::Algorithm));
                }
                return key.verify(message, signature).map_err(KeyMiss::Rejected);
            }
            // Unknown kid: the keys without one may still hold it; if they
            // do not, a refreshed JWK set might.
            return match self.verify_by_alg(alg, message, signature, |k| k.kid.is_none()) {
                Err(KeyMiss::Rejected(TokenRejection::Signature | TokenRejection::Algorithm)) => {
                    Err(KeyMiss::UnknownKid)
                }
                other => other,
            };
        }
        self.verify_by_alg(alg, message, signature, |_| true)
    }

    fn verify_by_alg(
        &self,
        alg: JwtAlgorithm,
        message: &[u8],
        signature: &Vec<u8>,
        eligible: impl Fn(&VerifyKey) -> bool,
    ) -> Result<(), KeyMiss> {
        let mut tried = false;
        let candidates = self.keys.iter().filter(|k| k.alg == alg && eligible(k));
        for key in candidates.take(MAX_KEYS_TRIED) {
            tried = true;
            match key.verify(message, signature) {
                Ok(()) => return Ok(()),
                Err(TokenRejection::Signature) => continue,
                Err(other) => return Err(KeyMiss::Rejected(other)),
            }
        }
        Err(KeyMiss::Rejected(if tried {
            TokenRejection::Signature
        } else {
            TokenRejection::Algorithm
        }))
    }
}
