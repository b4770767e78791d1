//! Keys behind a URL: JWK sets named directly (`jwks_url`) or found through
//! OIDC discovery. Fetched lazily, cached, refreshed on an unknown `kid` or
//! when old, at most once per interval per realm, one fetch in flight at a
//! time. The HTTP side is [`KeyClient`](super::fetch::KeyClient).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::fetch::{KeyClient, KeyUrl, PlainHttp};
use super::keys::{KeySet, VerifyKey, parse_jwks};
use crate::config::JwtAlgorithm;

/// What a JWK set answer is asked for as.
const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";

/// How often a realm's JWK sets may be fetched, and when they are old.
#[derive(Debug, Clone, Copy)]
pub(super) struct JwksTiming {
    /// Least time between two fetches of a realm's sets once loaded.
    pub(super) min_refresh: Duration,
    /// Least time between two attempts while nothing has loaded yet.
    pub(super) retry_unloaded: Duration,
    /// Sets older than this are refreshed on the next token.
    pub(super) max_age: Duration,
    /// Limit on one fetch, connect to last byte.
    pub(super) timeout: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(30),
            retry_unloaded: Duration::from_secs(5),
            max_age: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Where a realm's remote keys are.
#[derive(Debug)]
pub(super) enum Source {
    /// A `jwks_url` key.
    Jwks(KeyUrl),
    /// The `jwks_uri` of the realm's OIDC discovery document.
    Discovery {
        /// The realm's issuer, which the document must name exactly.
        issuer: Box<str>,
        /// `{issuer}/.well-known/openid-configuration`.
        document: KeyUrl,
        /// Where a plain-http `jwks_uri` is accepted (never when the
        /// document itself was fetched over https).
        plain: PlainHttp,
    },
}

/// One remote key source of a realm, with the `alg` and `kid` it is
/// restricted to.
#[derive(Debug)]
pub(super) struct RemoteSource {
    pub(super) source: Source,
    pub(super) only_alg: Option<JwtAlgorithm>,
    pub(super) only_kid: Option<String>,
}

impl RemoteSource {
    /// Every key of the set at `url`.
    pub(super) fn jwks(
        url: KeyUrl,
        only_alg: Option<JwtAlgorithm>,
        only_kid: Option<String>,
    ) -> Self {
        Self {
            source: Source::Jwks(url),
            only_alg,
            only_kid,
        }
    }

    /// Every key of the set the discovery document of `issuer` names.
    pub(super) fn discovery(issuer: &str, plain: PlainHttp) -> Result<Self, String> {
        Ok(Self {
            source: Source::Discovery {
                issuer: issuer.into(),
                document: KeyUrl::discovery(issuer, plain)?,
                plain,
            },
            only_alg: None,
            only_kid: None,
        })
    }

    /// The URL to name in a log line.
    fn url(&self) -> &str {
        match &self.source {
            Source::Jwks(url) | Source::Discovery { document: url, .. } => url.as_str(),
        }
    }
}

/// Why a realm's keys are being refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshReason {
    /// Nothing has loaded yet.
    Unloaded,
    /// A token names a `kid` no key has.
    UnknownKid,
    /// The sets are older than the maximum age.
    Stale,
}

/// The keys of a realm with at least one `jwks_url`: its fixed keys plus
/// those last fetched from each URL.
pub(super) struct RemoteKeys {
    fixed: Vec<Arc<VerifyKey>>,
    sources: Vec<RemoteSource>,
    client: KeyClient,
    timing: JwksTiming,
    current: RwLock<Arc<KeySet>>,
    /// Reference point of `fetched_at`.
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last successful fetch; 0: never.
    fetched_at: AtomicU64,
    /// Nanoseconds after `epoch` of the last attempt; 0: never.
    attempted_at: AtomicU64,
    /// Finished attempts, so callers that waited for one know it happened.
    attempts: AtomicU64,
    /// Held by the one refresh in flight.
    refresh: tokio::sync::Mutex<RefreshState>,
}

struct RefreshState {
    last_attempt: Option<Instant>,
    /// The keys last fetched from each source (`None`: never).
    fetched: Vec<Option<Vec<Arc<VerifyKey>>>>,
    /// The JWK set URL each discovery source last found, kept while its
    /// set can be fetched.
    discovered: Vec<Option<KeyUrl>>,
    /// The last failure of each source, logged at `WARN` once, then at
    /// `DEBUG` while it repeats: whoever controls the source (a tenant, for
    /// its own realm) chooses how often it fails.
    failing: Vec<Option<String>>,
}

impl fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("sources", &self.sources)
            .field("keys", &self.snapshot().keys())
            .finish_non_exhaustive()
    }
}

impl RemoteKeys {
    pub(super) fn new(
        fixed: Vec<Arc<VerifyKey>>,
        sources: Vec<RemoteSource>,
        client: KeyClient,
        timing: JwksTiming,
    ) -> Self {
        let fetched = sources.iter().map(|_| None).collect();
        let discovered = sources.iter().map(|_| None).collect();
        let failing = sources.iter().map(|_| None).collect();
        Self {
            current: RwLock::new(Arc::new(KeySet::new(fixed.clone()))),
            fixed,
            sources,
            client,
            timing,
            epoch: Instant::now(),
            fetched_at: AtomicU64::new(0),
            attempted_at: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_attempt: None,
                fetched,
                discovered,
                failing,
            }),
        }
    }

    /// The keys now.
    pub(super) fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Whether a fetch has ever succeeded.
    pub(super) fn is_loaded(&self) -> bool {
        self.fetched_at.load(Ordering::Acquire) != 0
    }

    /// Whether the keys are older than the maximum age and no attempt was
    /// made within the refresh interval.
    pub(super) fn is_stale(&self) -> bool {
        let fetched = self.fetched_at.load(Ordering::Acquire);
        if fetched == 0 {
            return false;
        }
        let now = self.nanos_since_epoch();
        let attempted = self.attempted_at.load(Ordering::Acquire);
        now.saturating_sub(fetched) >= nanos(self.timing.max_age)
            && now.saturating_sub(attempted) >= nanos(self.timing.min_refresh)
    }

    fn nanos_since_epoch(&self) -> u64 {
        // At least 1, so that 0 keeps meaning "never".
        nanos(self.epoch.elapsed()).max(1)
    }

    /// Fetches the sets again unless an attempt was made too recently.
    /// Callers that arrive while a fetch is in flight wait for it and share
    /// its result; a refresh for age never waits (the current keys serve).
    pub(super) async fn refresh(&self, realm: &str, reason: RefreshReason) {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut state = if reason == RefreshReason::Stale {
            match self.refresh.try_lock() {
                Ok(state) => state,
                Err(_) => return,
            }
        } else {
            self.refresh.lock().await
        };
        if self.attempts.load(Ordering::Acquire) != seen {
            // Another caller's fetch finished while this one waited.
            return;
        }
        let interval = if self.is_loaded() {
            self.timing.min_refresh
        } else {
            self.timing.retry_unloaded
        };
        if state.last_attempt.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        state.last_attempt = Some(Instant::now());
        self.attempted_at
            .store(self.nanos_since_epoch(), Ordering::Release);

        let mut any_success = false;
        for (i, source) in self.sources.iter().enumerate() {
            match self.fetch_one(source, &mut state.discovered[i]).await {
                Ok(keys) => {
                    tracing::debug!(
                        realm,
                        url = source.url(),
                        keys = keys.len(),
                        ?reason,
                        "JWK set fetched"
                    );
                    state.fetched[i] = Some(keys);
                    state.failing[i] = None;
                    any_success = true;
                }
                Err(error) if state.failing[i].as_deref() == Some(error.as_str()) => {
                    tracing::debug!(realm, url = source.url(), %error, ?reason, "JWK set fetch failed again");
                }
                Err(error) => {
                    tracing::warn!(
                        realm,
                        url = source.url(),
                        %error,
                        ?reason,
                        "JWK set fetch failed; the realm keeps the keys it last fetched, if any (repeats of this failure are logged at DEBUG)"
                    );
                    state.failing[i] = Some(error);
                }
            }
        }
        // The interval runs from the end of the attempt: a server that
        // answers slowly is not asked again the moment it has answered.
        state.last_attempt = Some(Instant::now());
        if any_success {
            let mut keys = self.fixed.clone();
            for fetched in state.fetched.iter().flatten() {
                keys.extend(fetched.iter().cloned());
            }
            let set = Arc::new(KeySet::new(keys));
            match self.current.write() {
                Ok(mut current) => *current = set,
                Err(poisoned) => *poisoned.into_inner() = set,
            }
            self.fetched_at
                .store(self.nanos_since_epoch(), Ordering::Release);
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    /// The keys of one source; a discovery source finds its set first,
    /// unless the set it last found is still there.
    async fn fetch_one(
        &self,
        source: &RemoteSource,
        discovered: &mut Option<KeyUrl>,
    ) -> Result<Vec<Arc<VerifyKey>>, String> {
        let url = match (&source.source, &*discovered) {
            (Source::Jwks(url), _) => url.clone(),
            (Source::Discovery { .. }, Some(url)) => url.clone(),
            (
                Source::Discovery {
                    issuer,
                    document,
                    plain,
                },
                None,
            ) => self.discover(issuer, document, *plain).await?,
        };
        let keys = self
            .client
            .get(&url, JWKS_ACCEPT)
            .await
            .and_then(|body| parse_jwks(&body, source.only_alg, source.only_kid.as_deref()))
            .map_err(|e| format!("{}: {e}", url.as_str()));
        if matches!(source.source, Source::Discovery { .. }) {
            // Found again on the next refresh if it stopped working.
            *discovered = keys.is_ok().then_some(url);
        }
        keys
    }

    /// The `jwks_uri` of the discovery document at `document`, whose
    /// `issuer` must be exactly `issuer`.
    async fn discover(
        &self,
        issuer: &str,
        document: &KeyUrl,
        plain: PlainHttp,
    ) -> Result<KeyUrl, String> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let body = self.client.get(document, "application/json").await?;
        let metadata: Metadata = serde_json::from_slice(&body)
            .map_err(|e| format!("not an OIDC discovery document: {e}"))?;
        if metadata.issuer != issuer {
            let named: String = metadata.issuer.chars().take(256).collect();
            return Err(format!(
                "the discovery document names the issuer {named:?}, not the realm's {issuer:?}"
            ));
        }
        // Whoever serves the document chooses where the keys are fetched
        // from: never in the clear when the document itself was not. The
        // scheme is the parsed URL's, whatever the case it was written in.
        let plain = if document.is_https() {
            PlainHttp::Never
        } else {
            plain
        };
        KeyUrl::parse(&metadata.jwks_uri, plain).map_err(|e| {
            if document.is_https() {
                format!("the discovery document of an https issuer names a jwks_uri that is not https: {e}")
            } else {
                format!("the discovery document's jwks_uri: {e}")
            }
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
