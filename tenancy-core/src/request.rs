//! What the engine reads of a request, as one explicit value
//! ([`RequestHead`]), what a route demands beyond the defaults
//! ([`RoutePolicy`]), the paths that skip tenancy ([`ExcludedPaths`]), and
//! request ids.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::label::Label;
use crate::limit::RateQuota;
use crate::rbac::Role;

/// The facts of a request the engine decides on: method, path, query,
/// headers and the client's address. Adapters build it; nothing is read
/// from request extensions, and the headers are read where they are (an
/// `http` 1 [`HeaderMap`], or any other map through [`HeaderSource`]), never
/// copied.
///
/// ```
/// use tenancy_core::engine::RequestHead;
///
/// let (parts, ()) = http::Request::get("/api/v1/things?tenant_id=acme")
///     .header("x-api-key", "tnk_…")
///     .body(())?
///     .into_parts();
/// let head = RequestHead::from(&parts).with_client_addr(Some("192.0.2.7".parse()?));
/// assert_eq!(head.path(), "/api/v1/things");
/// assert_eq!(head.query(), Some("tenant_id=acme"));
/// let api_key = http::HeaderName::from_static("x-api-key");
/// assert_eq!(head.header(&api_key), Some("tnk_…".as_bytes()));
/// assert_eq!(head.client_addr(), Some("192.0.2.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    /// The authority of an absolute-form request target, if any.
    authority: Option<&'a str>,
    headers: Headers<'a>,
    client_addr: Option<IpAddr>,
}

/// Where a [`RequestHead`]'s headers are read.
#[derive(Clone, Copy)]
enum Headers<'a> {
    Http(&'a HeaderMap),
    Other(&'a dyn HeaderSource),
}

/// A request's headers as a framework keeps them, for frameworks whose
/// header map is not `http` 1's (actix-web's is `http` 0.2's). Names are
/// lowercase.
pub trait HeaderSource: Sync {
    /// Every value of `name`, in order, passed to `each`.
    fn each_value(&self, name: &str, each: &mut dyn FnMut(&[u8]));

    /// The first value of `name`.
    fn first_value(&self, name: &str) -> Option<&[u8]>;
}

impl std::fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values hold credentials: never printed.
        f.debug_struct("RequestHead")
            .field("method", self.method)
            .field("path", &self.path)
            .field("client_addr", &self.client_addr)
            .finish_non_exhaustive()
    }
}

impl<'a> RequestHead<'a> {
    /// A head of `method`, `uri` and `headers`, with no client address.
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            path: uri.path(),
            query: uri.query(),
            authority: uri.authority().map(|a| a.as_str()),
            headers: Headers::Http(headers),
            client_addr: None,
        }
    }

    /// A head of `method`, `path`, `query` and headers read through
    /// `headers`, for frameworks whose types are not `http` 1's.
    pub fn with_header_source(
        method: &'a Method,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a dyn HeaderSource,
    ) -> Self {
        Self {
            method,
            path,
            query: query.filter(|q| !q.is_empty()),
            authority: None,
            headers: Headers::Other(headers),
            client_addr: None,
        }
    }

    /// The same head from `addr` (the peer's address, for the audit log,
    /// the security log and the failure throttle).
    pub fn with_client_addr(mut self, addr: Option<IpAddr>) -> Self {
        self.client_addr = addr;
        self
    }

    /// The method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The path.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// The host the request names: its `Host` header, else the authority
    /// of an absolute-form target.
    pub fn host(&self) -> Option<&'a str> {
        self.header_str(&http::header::HOST).or(self.authority)
    }

    /// The first value of header `name`, as bytes.
    pub fn header(&self, name: &HeaderName) -> Option<&'a [u8]> {
        match self.headers {
            Headers::Http(map) => map.get(name).map(HeaderValue::as_bytes),
            Headers::Other(source) => source.first_value(name.as_str()),
        }
    }

    /// The first value of `name` as a header value: from an `http` map a
    /// clone (a reference count on the request's own buffer), from another
    /// source a copy.
    pub(crate) fn header_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        match self.headers {
            Headers::Http(map) => map.get(name).cloned(),
            Headers::Other(source) => source
                .first_value(name.as_str())
                .and_then(|v| HeaderValue::from_bytes(v).ok()),
        }
    }

    /// The first value of header `name` when it is visible ASCII, as
    /// `http`'s `HeaderValue::to_str` requires.
    pub fn header_str(&self, name: &HeaderName) -> Option<&'a str> {
        self.header(name).and_then(visible_ascii)
    }

    /// Every value of header `name`, in order.
    pub fn each_header(&self, name: &HeaderName, each: &mut dyn FnMut(&[u8])) {
        match self.headers {
            Headers::Http(map) => map.get_all(name).iter().for_each(|v| each(v.as_bytes())),
            Headers::Other(source) => source.each_value(name.as_str(), each),
        }
    }

    /// The client's address, when the adapter knows it.
    pub fn client_addr(&self) -> Option<IpAddr> {
        self.client_addr
    }
}

/// `bytes` as a string when every byte is visible ASCII, space or tab.
/// Branch-free over the bytes, so it runs as vector code: tokens are long.
pub(crate) fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    let visible = bytes.iter().fold(true, |ok, &b| {
        ok & ((b.wrapping_sub(0x20) < 0x5f) | (b == b'\t'))
    });
    if visible {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// Most bytes of a path a log line carries.
const LOGGED_PATH_BYTES: usize = 256;

/// `path` cut to [`LOGGED_PATH_BYTES`] (on a character boundary), for log
/// lines: the path is the caller's to choose.
pub(crate) fn loggable(path: &str) -> &str {
    prefix_within(path, LOGGED_PATH_BYTES)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub(crate) fn prefix_within(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl<'a> From<&'a Parts> for RequestHead<'a> {
    fn from(parts: &'a Parts) -> Self {
        Self::new(&parts.method, &parts.uri, &parts.headers)
    }
}

/// What a route demands beyond the tenancy defaults: a minimum role and a
/// rate limit of its own. The adapters apply it per route (axum
/// `route_layer`, actix-web `wrap`); it runs after admission, through
/// [`Tenancy::check_route`](crate::Tenancy::check_route).
///
/// ```
/// use tenancy_core::engine::RoutePolicy;
/// use tenancy_core::label::Label;
/// use tenancy_core::limit::RateQuota;
/// use tenancy_core::rbac::Role;
///
/// let policy = RoutePolicy::min_role(Role::Admin)
///     .with_rate_limit(Label::new("export")?, RateQuota::per_second(1).unwrap());
/// assert_eq!(policy.min_role, Some(Role::Admin));
/// assert_eq!(RoutePolicy::from(Role::Viewer), RoutePolicy::min_role(Role::Viewer));
/// # Ok::<(), tenancy_core::label::InvalidLabel>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The lowest role that may call the route.
    pub min_role: Option<Role>,
    /// A rate limit of the route, counted per tenant, on top of the key's
    /// and the tenant's.
    pub rate_limit: Option<(Label, RateQuota)>,
}

impl RoutePolicy {
    /// A policy requiring `role` or higher.
    pub fn min_role(role: Role) -> Self {
        Self {
            min_role: Some(role),
            rate_limit: None,
        }
    }

    /// A policy limiting the route to `quota` per tenant, in the bucket
    /// named `route`.
    pub fn rate_limit(route: Label, quota: RateQuota) -> Self {
        Self::default().with_rate_limit(route, quota)
    }

    /// The same policy with a rate limit.
    pub fn with_rate_limit(mut self, route: Label, quota: RateQuota) -> Self {
        self.rate_limit = Some((route, quota));
        self
    }
}

impl From<Role> for RoutePolicy {
    fn from(role: Role) -> Self {
        Self::min_role(role)
    }
}

/// Paths the web adapters exempt from tenancy (health, metrics): a path
/// matches when it is one of them or lies below one. Cheap to clone.
///
/// ```
/// use tenancy_core::engine::ExcludedPaths;
/// let paths = ExcludedPaths::default().with("/healthz").with("/metrics/");
/// assert!(paths.contains("/healthz"));
/// assert!(paths.contains("/metrics/tenants"));
/// assert!(!paths.contains("/healthzz"));
/// assert!(!paths.contains("/api/v1/tenants"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExcludedPaths(Arc<[Box<str>]>);

impl ExcludedPaths {
    /// These paths and `path` (a trailing `/` is ignored).
    pub fn with(self, path: impl Into<String>) -> Self {
        let mut paths: Vec<Box<str>> = self.0.iter().cloned().collect();
        paths.push(path.into().trim_end_matches('/').into());
        Self(Arc::from(paths))
    }

    /// Whether `path` is excluded.
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| {
            path.strip_prefix(p.as_ref())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// The header request ids travel in, both ways.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: the client's `X-Request-Id` when it is short and printable
/// (as tower-http's request-id layer keeps it), else a process prefix and a
/// counter.
///
/// Made ids are written into a block of text of the thread's own, each id
/// a slice of it: taking one, and cloning it into the answer's header,
/// allocates nothing, and no two threads wait on each other for it. A new
/// block is allocated when the current one is full and some id in it is
/// still held; when none is, its memory is used again.
pub(crate) struct RequestIds {
    /// `{prefix:08x}-`, written once.
    prefix: [u8; 9],
    counter: AtomicU64,
}

thread_local! {
    /// The block this thread's next made ids are written into (shared by
    /// every engine: it is only storage).
    static ID_BLOCK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// How many of the longest ids one block holds.
const IDS_PER_BLOCK: usize = 128;

impl RequestIds {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 4];
        let _ = getrandom::fill(&mut seed);
        Self::with_prefix(u32::from_be_bytes(seed), 0)
    }

    fn with_prefix(prefix: u32, counter: u64) -> Self {
        let mut bytes = [b'-'; 9];
        hex(u64::from(prefix), 8, &mut bytes);
        Self {
            prefix: bytes,
            counter: AtomicU64::new(counter),
        }
    }

    pub(crate) fn for_request(&self, head: &RequestHead<'_>) -> RequestId {
        // A well-formed incoming id is kept as the request's own value (no
        // copy from an `http` map); a malformed one costs no copy.
        let well_formed = head
            .header(&REQUEST_ID_HEADER)
            .is_some_and(|v| valid_request_id(v).is_some());
        if let Some(id) = well_formed
            .then(|| head.header_value(&REQUEST_ID_HEADER))
            .flatten()
        {
            return RequestId(id);
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // `{prefix:08x}-{n:x}`, written by hand on the stack (`format!`
        // costs more than the rest of the id).
        let mut bytes = [0u8; MADE_LEN];
        bytes[..self.prefix.len()].copy_from_slice(&self.prefix);
        let len = self.prefix.len() + hex(n, 1, &mut bytes[self.prefix.len()..]);
        let text = ID_BLOCK.with(|block| {
            // Nothing below calls out while the block is borrowed.
            let mut block = block.borrow_mut();
            if block.capacity() < len {
                block.reserve(MADE_LEN * IDS_PER_BLOCK);
            }
            block.extend_from_slice(&bytes[..len]);
            block.split().freeze()
        });
        // Hex digits and `-`: always a valid value.
        RequestId(
            HeaderValue::from_maybe_shared(text).unwrap_or_else(|_| HeaderValue::from_static("")),
        )
    }
}

/// The longest id [`RequestIds`] makes: 8 hex digits, `-`, 16 hex digits.
const MADE_LEN: usize = 8 + 1 + 16;

/// A request's id: the client's well-formed `x-request-id`, or one made
/// here (a process prefix and a counter). Held as the header value it is
/// answered with: cloning it allocates nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// `text` as a request id, when it is well formed (up to 128 letters,
    /// digits and `-_.:`).
    ///
    /// ```
    /// use tenancy_core::request::RequestId;
    /// assert_eq!(RequestId::new("req-1").unwrap().as_str(), "req-1");
    /// assert!(RequestId::new("not one").is_none());
    /// ```
    pub fn new(text: &str) -> Option<Self> {
        valid_request_id(text.as_bytes())?;
        HeaderValue::from_str(text).ok().map(RequestId)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Every id is printable ASCII (checked when it was made or kept).
        self.0.to_str().unwrap_or_default()
    }

    /// The id as an `x-request-id` value.
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        (!self.0.is_empty()).then(|| self.0.clone())
    }
}

impl Default for RequestId {
    /// The empty id.
    fn default() -> Self {
        RequestId(HeaderValue::from_static(""))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Writes `n` in lowercase hex, at least `min_digits` long, at the start of
/// `out`; returns the digits written.
fn hex(n: u64, min_digits: usize, out: &mut [u8]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let significant = (64 - n.leading_zeros() as usize).div_ceil(4);
    let len = significant.max(min_digits).min(16).min(out.len());
    for (i, byte) in out[..len].iter_mut().enumerate() {
        let shift = 4 * (len - 1 - i);
        *byte = DIGITS[usize::try_from((n >> shift) & 0xf).unwrap_or(0)];
    }
    len
}

fn valid_request_id(value: &[u8]) -> Option<&str> {
    let s = visible_ascii(value)?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_ascii_is_what_header_values_allow_as_text() {
        assert_eq!(
            visible_ascii(b"Bearer a.b-c_d~ ok\t"),
            Some("Bearer a.b-c_d~ ok\t")
        );
        for bad in [&b"a\x7f"[..], b"\x1f", b"\x00", "é".as_bytes(), b"\r\n"] {
            assert_eq!(visible_ascii(bad), None, "{bad:?}");
        }
        assert_eq!(visible_ascii(b""), Some(""));
    }

    #[test]
    fn logged_paths_are_cut_on_a_character_boundary() {
        assert_eq!(loggable("/api/v1/things"), "/api/v1/things");
        let long = "/".to_owned() + &"é".repeat(300);
        let cut = loggable(&long);
        assert!(cut.len() <= LOGGED_PATH_BYTES && cut.len() >= LOGGED_PATH_BYTES - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn generated_ids_are_prefix_and_counter_in_hex() {
        let ids = RequestIds::with_prefix(0xab, 0x1f);
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let head = RequestHead::from(&parts);
        assert_eq!(ids.for_request(&head).as_str(), "000000ab-1f");
        assert_eq!(ids.for_request(&head).as_str(), "000000ab-20");
        let max = RequestIds::with_prefix(u32::MAX, u64::MAX);
        let longest = max.for_request(&head);
        assert_eq!(longest.as_str(), "ffffffff-ffffffffffffffff");
        assert_eq!(longest.to_header_value().unwrap(), longest.as_str());
        let mut buf = [0u8; 16];
        assert_eq!(hex(0, 1, &mut buf), 1);
        assert_eq!(&buf[..1], b"0");
        assert_eq!(hex(u64::MAX, 1, &mut buf), 16);
        assert_eq!(&buf, b"ffffffffffffffff");
    }

    #[test]
    fn made_ids_are_slices_of_one_block() {
        let ids = RequestIds::with_prefix(0xab, 0x10);
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let head = RequestHead::from(&parts);
        let first = ids.for_request(&head).to_header_value().unwrap();
        let second = ids.for_request(&head).to_header_value().unwrap();
        assert_eq!(first, "000000ab-10");
        assert_eq!(second, "000000ab-11");
        // The second id's text follows the first's in the same buffer.
        let end_of_first = first.as_bytes().as_ptr().wrapping_add(first.len());
        assert_eq!(second.as_bytes().as_ptr(), end_of_first);
        // A full block is followed by a new one: every id stays whole.
        let many: Vec<RequestId> = (0..3 * IDS_PER_BLOCK)
            .map(|_| ids.for_request(&head))
            .collect();
        for (i, id) in many.iter().enumerate() {
            assert_eq!(id.as_str(), format!("000000ab-{:x}", 0x12 + i));
        }
    }

    #[test]
    fn threads_make_distinct_ids_each_in_its_own_block() {
        let ids = Arc::new(RequestIds::with_prefix(0xab, 0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
                    let head = RequestHead::from(&parts);
                    (0..1_000)
                        .map(|_| ids.for_request(&head).to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4_000);
        assert!(all.iter().all(|id| id.starts_with("000000ab-")));
    }

    #[test]
    fn incoming_ids_are_kept_only_when_well_formed() {
        let ids = RequestIds::new();
        let id_of = |value: &str| {
            let (parts, ()) = http::Request::get("/")
                .header("x-request-id", value)
                .body(())
                .unwrap()
                .into_parts();
            ids.for_request(&RequestHead::from(&parts)).to_string()
        };
        assert_eq!(id_of("abc-1.2:3_4"), "abc-1.2:3_4");
        assert_ne!(id_of("has space"), "has space");
        assert_ne!(id_of(&"x".repeat(129)), "x".repeat(129));
    }
}
