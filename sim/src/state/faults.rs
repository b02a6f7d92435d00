//! Injected failures of the portal's REST endpoint: a share of requests answers 500 or 503
//! (as an nginx page or a JSON error) or answers late. A failed request changes nothing.
//! What a fault looks like on the wire is `endpoint::fault_response`.

use std::time::Duration;

use rand::Rng;

/// Shares (0.0..=1.0) of REST requests (not OAuth, not the driver) that fail or are slow.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer 500 `{"error":"INTERNAL_SERVER_ERROR",…}`.
    pub error_500: f64,
    /// Answer 503 "service unavailable" (half as an HTML page, half as a JSON error).
    pub error_503: f64,
    /// Wait `slow_delay`, then handle the request normally.
    pub slow: f64,
    pub slow_delay: Duration,
}

pub(crate) enum Fault {
    None,
    Error500,
    Error503Html,
    Error503Json,
    Slow(Duration),
}

impl Faults {
    pub(crate) fn roll(&self) -> Fault {
        let mut rng = rand::thread_rng();
        let r: f64 = rng.gen();
        if r < self.error_500 {
            Fault::Error500
        } else if r < self.error_500 + self.error_503 {
            if rng.gen_bool(0.5) {
                Fault::Error503Html
            } else {
                Fault::Error503Json
            }
        } else if r < self.error_500 + self.error_503 + self.slow {
            Fault::Slow(self.slow_delay)
        } else {
            Fault::None
        }
    }
}
