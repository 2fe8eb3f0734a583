//! The Envoy shell: adapts proxy-wasm host calls to the guard and back. It makes no
//! decision of its own and never logs a header value, a claim or a key.

use std::cell::RefCell;
use std::ptr::null_mut;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::cache::TokenCache;
use crate::config::{self, Settings};
use crate::denial::{self, Denial};
use crate::guard::{Allowed, Request};
use crate::header_map;
use crate::keys::KeySet;
use crate::remote::{self, FetchState, Reason, RemoteJwks};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, shared: None })
    });
}}

/// Tick period while requests wait for keys, and otherwise.
const FAST_TICK: Duration = Duration::from_millis(20);
const SLOW_TICK: Duration = Duration::from_millis(1000);

/// Counter and gauge ids, defined once per VM; Envoy shows them under `wasmcustom.`.
struct Metrics {
    allowed: Option<u32>,
    cache_hits: Option<u32>,
    denied: Vec<(Denial, Option<u32>)>,
    fetch_ok: Option<u32>,
    fetch_failed: Option<u32>,
    kid_refetch: Option<u32>,
    jwks_keys: Option<u32>,
}

impl Metrics {
    fn define(remote: bool) -> Metrics {
        let define = |kind, name: &str| hostcalls::define_metric(kind, name).ok();
        let counter = |name: &str| define(MetricType::Counter, name);
        let remote_counter = |name: &str| if remote { counter(name) } else { None };
        Metrics {
            allowed: counter("jwt_guard.allowed"),
            cache_hits: counter("jwt_guard.token_cache.hits"),
            denied: denial::ALL
                .iter()
                .map(|d| (*d, counter(&format!("jwt_guard.denied.{}", d.code()))))
                .collect(),
            fetch_ok: remote_counter("jwt_guard.jwks.fetch_ok"),
            fetch_failed: remote_counter("jwt_guard.jwks.fetch_failed"),
            kid_refetch: remote_counter("jwt_guard.jwks.kid_refetch"),
            jwks_keys: if remote {
                define(MetricType::Gauge, "jwt_guard.jwks.keys")
            } else {
                None
            },
        }
    }

    fn denied(&self, denial: Denial) -> Option<u32> {
        self.denied
            .iter()
            .find(|(d, _)| *d == denial)
            .and_then(|(_, id)| *id)
    }
}

fn increment(id: Option<u32>) {
    if let Some(id) = id {
        // A lost count is not worth failing a request over.
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// Milliseconds since the epoch; if the host clock fails, a time at which every token
/// with an expiry has expired.
fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(u64::MAX, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The proxy-wasm ABI call behind the SDK's `get_map_bytes`, which copies every
    /// header into its own allocation; `request_headers` borrows from the buffer instead.
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
}

/// The request headers as Envoy serializes them, or `None` if the host call fails.
fn request_headers() -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host has written a buffer of `size` bytes that it allocated
    // through the SDK's `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size`
    // bytes) and hands it over to us; a `Vec` with that length and capacity owns and
    // frees it, as the SDK's own `get_map_bytes` does. Nothing else refers to it.
    unsafe {
        let status =
            proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
        match status {
            0 if data.is_null() => Some(Vec::new()),
            0 => Some(Vec::from_raw_parts(data, size, size)),
            _ => None,
        }
    }
}

/// What the guard needs of a request, borrowed from its headers.
struct Seen<'a> {
    method: &'a [u8],
    path: &'a [u8],
    authorization: Vec<&'a [u8]>,
    has_origin: bool,
    has_cors_request_method: bool,
}

impl<'a> Seen<'a> {
    fn read(headers: &[header_map::Pair<'a>]) -> Seen<'a> {
        let mut seen = Seen {
            method: b"",
            path: b"",
            authorization: Vec::new(),
            has_origin: false,
            has_cors_request_method: false,
        };
        for (name, value) in headers {
            match *name {
                b":method" => seen.method = value,
                b":path" => seen.path = value,
                b"authorization" => seen.authorization.push(value),
                b"origin" => seen.has_origin = true,
                b"access-control-request-method" => seen.has_cors_request_method = true,
                _ => {}
            }
        }
        seen
    }

    fn request(&self) -> Request<'_> {
        Request {
            method: self.method,
            path: self.path,
            authorization: &self.authorization,
            has_origin: self.has_origin,
            has_cors_request_method: self.has_cors_request_method,
        }
    }
}

/// A request's facts, owned, so that it can wait for keys.
struct Facts {
    method: Vec<u8>,
    path: Vec<u8>,
    authorization: Vec<Vec<u8>>,
    has_origin: bool,
    has_cors_request_method: bool,
}

impl Facts {
    fn own(seen: &Seen<'_>) -> Facts {
        Facts {
            method: seen.method.to_vec(),
            path: seen.path.to_vec(),
            authorization: seen.authorization.iter().map(|v| v.to_vec()).collect(),
            has_origin: seen.has_origin,
            has_cors_request_method: seen.has_cors_request_method,
        }
    }

    fn seen(&self) -> Seen<'_> {
        Seen {
            method: &self.method,
            path: &self.path,
            authorization: self.authorization.iter().map(Vec::as_slice).collect(),
            has_origin: self.has_origin,
            has_cors_request_method: self.has_cors_request_method,
        }
    }
}

/// What to do with a request now.
enum Decision {
    Allow(Option<String>),
    Deny(Denial),
    /// Wait for the remote key set to be fetched for this reason.
    Wait(Reason),
}

/// A request paused until keys arrive or its deadline passes.
struct Waiting {
    context_id: u32,
    facts: Facts,
    reason: Reason,
    deadline: u64,
}

/// The keys fetched from the remote JWKS, as this worker last saw them.
#[derive(Default)]
struct Fetched {
    keys: Rc<KeySet>,
    version: u64,
    loaded: bool,
    waiting: Vec<Waiting>,
    /// Tokens this worker verified, emptied whenever the fetched keys change.
    cache: TokenCache,
}

/// State of one VM (worker) shared by its root and stream contexts.
struct Shared {
    settings: Settings,
    metrics: Metrics,
    fetched: RefCell<Fetched>,
}

impl Shared {
    /// Decides on `request` with the keys at hand.
    fn decide(&self, request: &Request<'_>, can_wait: bool) -> Decision {
        let now = now_ms() / 1000;
        let checked = match self.fetched.try_borrow_mut() {
            Ok(mut fetched) => {
                let fetched = &mut *fetched;
                let hits = fetched.cache.hits();
                let checked =
                    self.settings
                        .guard
                        .check(request, &fetched.keys, &mut fetched.cache, now);
                if fetched.cache.hits() != hits {
                    increment(self.metrics.cache_hits);
                }
                (checked, fetched.loaded)
            }
            Err(_) => (Err(Denial::KeysUnavailable), false),
        };

        match checked {
            (Ok(Allowed::Anonymous), _) => Decision::Allow(None),
            (Ok(Allowed::User(identity)), _) => Decision::Allow(Some(identity.user)),
            (Err(Denial::UnknownKey), loaded) if self.settings.remote.is_some() => {
                match (can_wait, loaded) {
                    (true, true) => Decision::Wait(Reason::UnknownKid),
                    (true, false) => Decision::Wait(Reason::Scheduled),
                    (false, true) => Decision::Deny(Denial::UnknownKey),
                    (false, false) => Decision::Deny(Denial::KeysUnavailable),
                }
            }
            (Err(denial), _) => Decision::Deny(denial),
        }
    }

    /// Carries out an allow or a deny on the current effective context. Returns whether
    /// the request goes on.
    fn apply(&self, decision: Decision) -> bool {
        let denial = match decision {
            Decision::Allow(user) => {
                let header = &self.settings.user_header;
                let set = match &user {
                    Some(user) => {
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, header, Some(user))
                    }
                    None => Ok(()),
                };
                if set.is_ok() {
                    log::debug!("jwt-guard: allowed");
                    increment(self.metrics.allowed);
                    return true;
                }
                Denial::MissingUser
            }
            Decision::Deny(denial) => denial,
            Decision::Wait(_) => Denial::KeysUnavailable,
        };

        log::debug!("jwt-guard: denied: {}", denial.code());
        increment(self.metrics.denied(denial));
        let reply = denial::reply(denial, &self.settings.realm);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let sent =
            hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
        if let Err(status) = sent {
            log::error!("jwt-guard: could not send the local reply: {status:?}");
        }
        false
    }

    /// Loads the published key set if it changed; returns the shared fetch state.
    fn sync(&self, remote: &RemoteJwks) -> FetchState {
        let state_key = remote.shared_key("state");
        let (bytes, _) = hostcalls::get_shared_data(&state_key).unwrap_or((None, None));
        let state = FetchState::decode(bytes.as_deref());
        if state.version == self.fetched.borrow().version {
            return state;
        }
        let published = hostcalls::get_shared_data(&remote.shared_key("keys"))
            .ok()
            .and_then(|(body, _)| body)
            .map(|body| remote::parse_body(&body));
        if let Some(Ok(parsed)) = published {
            self.install(KeySet::new(parsed.keys), state.version);
        }
        state
    }

    fn install(&self, keys: KeySet, version: u64) {
        if let Some(id) = self.metrics.jwks_keys {
            let _ = hostcalls::record_metric(id, keys.len() as u64);
        }
        let mut fetched = self.fetched.borrow_mut();
        fetched.cache.clear();
        fetched.keys = Rc::new(keys);
        fetched.version = version;
        fetched.loaded = true;
    }

    /// Updates the shared fetch state with `change`, retrying on a lost race. Returns
    /// the state written, or `None` when `change` declined.
    fn update_state(
        &self,
        remote: &RemoteJwks,
        mut change: impl FnMut(&FetchState) -> Option<FetchState>,
    ) -> Option<FetchState> {
        let key = remote.shared_key("state");
        for _ in 0..8 {
            let (bytes, cas) = hostcalls::get_shared_data(&key).ok()?;
            let next = change(&FetchState::decode(bytes.as_deref()))?;
            if hostcalls::set_shared_data(&key, Some(&next.encode()), cas).is_ok() {
                return Some(next);
            }
        }
        None
    }

    /// Starts a fetch for `reason` if no worker is fetching and the reason allows one
    /// now. Must run in the root context, which receives the response.
    fn try_fetch(&self, remote: &RemoteJwks, reason: Reason) {
        let now = now_ms();
        if self
            .update_state(remote, |state| state.begin(now, reason, remote))
            .is_none()
        {
            return;
        }
        if reason == Reason::UnknownKid {
            increment(self.metrics.kid_refetch);
        }
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(remote.timeout_ms);
        if let Err(status) =
            hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout)
        {
            let error = format!(
                "cannot dispatch to cluster '{}': {status:?}",
                remote.cluster
            );
            self.fetch_failed(remote, &error);
        }
    }

    fn fetch_failed(&self, remote: &RemoteJwks, error: &str) {
        increment(self.metrics.fetch_failed);
        let now = now_ms();
        let state = self.update_state(remote, |state| Some(state.failed(now, remote)));
        let failures = state.map_or(1, |s| s.failures);
        if failures == 1 {
            log::warn!(
                "jwt-guard: JWKS fetch from cluster '{}' failed: {error}; keeping the last good \
                 keys (further failures in this streak are logged at debug)",
                remote.cluster
            );
        } else {
            log::debug!("jwt-guard: JWKS fetch failed again ({failures} in a row): {error}");
        }
    }

    fn fetch_done(&self, remote: &RemoteJwks, body_size: usize) {
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let checked = if body_size > remote::MAX_JWKS_BYTES {
            Err(remote::FetchError::TooLarge)
        } else {
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            remote::check_response(status.as_deref(), &body).map(|parsed| (parsed, body))
        };
        let (parsed, body) = match checked {
            Ok(fetched) => fetched,
            Err(error) => return self.fetch_failed(remote, &error.to_string()),
        };

        let _ = hostcalls::set_shared_data(&remote.shared_key("keys"), Some(&body), None);
        let now = now_ms();
        let mut failures_before = 0;
        let state = self.update_state(remote, |state| {
            failures_before = state.failures;
            Some(state.succeeded(now, remote))
        });
        increment(self.metrics.fetch_ok);
        if failures_before > 0 {
            log::info!("jwt-guard: JWKS fetch recovered after {failures_before} failure(s)");
        }
        for note in &parsed.skipped {
            log::debug!("jwt-guard: fetched JWKS: {note}: skipped");
        }
        log::info!("jwt-guard: JWKS loaded with {} key(s)", parsed.keys.len());
        // Without a published version, the next sync loads the keys from shared data.
        let version = state.map_or(u64::MAX, |s| s.version);
        self.install(KeySet::new(parsed.keys), version);
    }

    /// Decides the waiting requests that can be decided: keys changed, no fetch is
    /// under way any more, or their deadline passed.
    fn resolve_waiting(&self, state: &FetchState, keys_changed: bool) {
        let now = now_ms();
        let waiting = std::mem::take(&mut self.fetched.borrow_mut().waiting);
        let mut still = Vec::new();
        for request in waiting {
            if !keys_changed && state.fetching(now) && now < request.deadline {
                still.push(request);
                continue;
            }
            if hostcalls::set_effective_context(request.context_id).is_err() {
                continue; // the stream is gone
            }
            if self.apply(self.decide(&request.facts.seen().request(), false)) {
                let _ = hostcalls::resume_http_request();
            }
        }
        let mut fetched = self.fetched.borrow_mut();
        still.append(&mut fetched.waiting);
        fetched.waiting = still;
        let period = if fetched.waiting.is_empty() {
            SLOW_TICK
        } else {
            FAST_TICK
        };
        drop(fetched);
        let _ = hostcalls::set_tick_period(period);
    }
}

/// One per VM (worker): parses the configuration and drives the JWKS fetches.
struct Root {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body: usize, _: usize) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(remote) = shared.settings.remote.as_ref() else {
            return;
        };
        shared.fetch_done(remote, body);
        let state = shared.sync(remote);
        shared.resolve_waiting(&state, true);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Format and send only what Envoy's wasm log level will print: a debug line per
        // request costs a host call even when Envoy then drops it.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log::error!("jwt-guard: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        let settings = match config::parse(&bytes, &env) {
            Ok(settings) => settings,
            Err(error) => {
                log::error!("jwt-guard: {error}");
                return false;
            }
        };
        for warning in &settings.warnings {
            log::warn!("jwt-guard: {warning}");
        }
        match &settings.remote {
            Some(remote) => log::info!(
                "jwt-guard: configured with {} key(s) and a JWKS from cluster '{}'",
                settings.guard.keys.len(),
                remote.cluster
            ),
            None => log::info!(
                "jwt-guard: configured with {} key(s)",
                settings.guard.keys.len()
            ),
        }
        if let Some(remote) = &settings.remote {
            // Envoy's compare-and-swap cannot guard the creation of a key, so every
            // worker creates the fetch state here, before any takes the fetch lock;
            // from then on all updates are compare-and-swap.
            let key = remote.shared_key("state");
            if let Ok((None, _)) = hostcalls::get_shared_data(&key) {
                let initial = FetchState::default().encode();
                let _ = hostcalls::set_shared_data(&key, Some(&initial), None);
            }
            // The first tick fetches the keys; requests that need them wait for it.
            let _ = hostcalls::set_tick_period(FAST_TICK);
        }
        let metrics = Metrics::define(settings.remote.is_some());
        let fetched = Fetched {
            cache: TokenCache::new(settings.token_cache_entries),
            ..Fetched::default()
        };
        self.shared = Some(Rc::new(Shared {
            settings,
            metrics,
            fetched: RefCell::new(fetched),
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(remote) = shared.settings.remote.as_ref() else {
            return;
        };
        let _ = hostcalls::set_effective_context(self.id);

        let version = shared.fetched.borrow().version;
        shared.try_fetch(remote, Reason::Scheduled);
        let wants_refetch = shared
            .fetched
            .borrow()
            .waiting
            .iter()
            .any(|w| w.reason == Reason::UnknownKid);
        if wants_refetch {
            shared.try_fetch(remote, Reason::UnknownKid);
        }
        let state = shared.sync(remote);
        let changed = shared.fetched.borrow().version != version;
        shared.resolve_waiting(&state, changed);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream {
            id: context_id,
            shared,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per request.
struct Stream {
    id: u32,
    shared: Rc<Shared>,
}

impl Context for Stream {}

// Envoy deletes the context when the stream ends, however it ends; the module does not
// export `proxy_on_done` (Makefile, `CALLBACKS`), so a request still waiting for keys
// is forgotten here.
impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(mut fetched) = self.shared.fetched.try_borrow_mut() {
            fetched.waiting.retain(|w| w.context_id != self.id);
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;

        let Some(buffer) = request_headers() else {
            return self.finish(Decision::Deny(Denial::InvalidAuthorization));
        };
        let Ok(headers) = header_map::pairs(&buffer) else {
            return self.finish(Decision::Deny(Denial::InvalidAuthorization));
        };
        // The upstream must only ever see the user header this filter sets.
        if headers
            .iter()
            .any(|(name, _)| *name == settings.user_header.as_bytes())
            && hostcalls::set_map_value(MapType::HttpRequestHeaders, &settings.user_header, None)
                .is_err()
        {
            return self.finish(Decision::Deny(Denial::InvalidAuthorization));
        }

        let seen = Seen::read(&headers);
        match shared.decide(&seen.request(), true) {
            Decision::Wait(reason) => {
                let Some(remote) = settings.remote.as_ref() else {
                    return self.finish(Decision::Deny(Denial::KeysUnavailable));
                };
                let version = shared.fetched.borrow().version;
                shared.sync(remote);
                if shared.fetched.borrow().version != version {
                    // Another worker published new keys meanwhile: decide with them.
                    return self.finish(shared.decide(&seen.request(), false));
                }
                let deadline = now_ms().saturating_add(remote.timeout_ms + 200);
                let waiting = Waiting {
                    context_id: self.id,
                    facts: Facts::own(&seen),
                    reason,
                    deadline,
                };
                shared.fetched.borrow_mut().waiting.push(waiting);
                let _ = hostcalls::set_tick_period(FAST_TICK);
                Action::Pause
            }
            decision => self.finish(decision),
        }
    }

    // While the headers wait for keys, body and trailers stay in Envoy's buffer too:
    // nothing of the request may move on before the decision.
    fn on_http_request_body(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        if self.is_waiting() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if self.is_waiting() {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

impl Stream {
    /// Whether this request is parked until keys arrive.
    fn is_waiting(&self) -> bool {
        self.shared.fetched.try_borrow().map_or(true, |fetched| {
            fetched.waiting.iter().any(|w| w.context_id == self.id)
        })
    }

    fn finish(&self, decision: Decision) -> Action {
        if self.shared.apply(decision) {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}
