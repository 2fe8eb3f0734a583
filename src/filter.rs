//! The Envoy shell: adapts proxy-wasm host calls to the guard and back. It makes no
//! decision of its own and never logs a header value, a claim or a key.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use crate::config::{self, Settings};
use crate::denial::{self, Denial};
use crate::guard::{Allowed, Request};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counter ids, defined once per VM; Envoy shows them under `wasmcustom.`.
struct Metrics {
    allowed: Option<u32>,
    denied: Vec<(Denial, Option<u32>)>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            allowed: counter("jwt_guard.allowed"),
            denied: denial::ALL
                .iter()
                .map(|d| (*d, counter(&format!("jwt_guard.denied.{}", d.code()))))
                .collect(),
        }
    }

    fn count_allowed(&self) {
        increment(self.allowed);
    }

    fn count_denied(&self, denial: Denial) {
        let id = self
            .denied
            .iter()
            .find(|(d, _)| *d == denial)
            .and_then(|(_, id)| *id);
        increment(id);
    }
}

fn increment(id: Option<u32>) {
    if let Some(id) = id {
        // A lost count is not worth failing a request over.
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// One per VM (worker): holds the parsed settings all requests share.
#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

struct Shared {
    settings: Settings,
    metrics: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log::error!("jwt-guard: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let env = |name: &str| std::env::var(name).ok();
        match config::parse(&bytes, &env) {
            Ok(settings) => {
                for warning in &settings.warnings {
                    log::warn!("jwt-guard: {warning}");
                }
                log::info!(
                    "jwt-guard: configured with {} key(s)",
                    settings.guard.keys.len()
                );
                self.shared = Some(Rc::new(Shared {
                    settings,
                    metrics: Metrics::define(),
                }));
                true
            }
            Err(error) => {
                log::error!("jwt-guard: {error}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream { shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per request.
struct Stream {
    shared: Rc<Shared>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let shared = Rc::clone(&self.shared);
        let settings = &shared.settings;

        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(headers) => headers,
            Err(_) => return self.deny(Denial::InvalidAuthorization),
        };
        // The upstream must only ever see the user header this filter sets.
        if headers
            .iter()
            .any(|(name, _)| *name == settings.user_header)
            && hostcalls::set_map_value(MapType::HttpRequestHeaders, &settings.user_header, None)
                .is_err()
        {
            return self.deny(Denial::InvalidAuthorization);
        }

        let header = |wanted: &str| headers.iter().find(|(n, _)| n == wanted).map(|(_, v)| v);
        let authorization: Vec<&[u8]> = headers
            .iter()
            .filter(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_slice())
            .collect();
        let request = Request {
            method: header(":method").map_or(&[][..], |v| v.as_slice()),
            path: header(":path").map_or(&[][..], |v| v.as_slice()),
            authorization: &authorization,
            has_origin: header("origin").is_some(),
            has_cors_request_method: header("access-control-request-method").is_some(),
        };

        match settings.guard.check(&request, self.now()) {
            Ok(Allowed::Anonymous) => {
                shared.metrics.count_allowed();
                Action::Continue
            }
            Ok(Allowed::User(identity)) => {
                let set = hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    &settings.user_header,
                    Some(&identity.user),
                );
                if set.is_err() {
                    return self.deny(Denial::MissingUser);
                }
                shared.metrics.count_allowed();
                Action::Continue
            }
            Err(denial) => self.deny(denial),
        }
    }
}

impl Stream {
    /// Seconds since the epoch; if the host clock fails, a time at which every token
    /// with an expiry has expired.
    fn now(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |d| d.as_secs())
    }

    fn deny(&self, denial: Denial) -> Action {
        log::debug!("jwt-guard: denied: {}", denial.code());
        self.shared.metrics.count_denied(denial);
        let reply = denial::reply(denial, &self.shared.settings.realm);
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        if let Err(status) =
            hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()))
        {
            log::error!("jwt-guard: could not send the local reply: {status:?}");
        }
        Action::Pause
    }
}
