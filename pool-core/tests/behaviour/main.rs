//! Behaviour tests of `wharf-core`, one per rule of `docs/SEMANTICS.md` and of
//! the reference behaviours in `shared/reference/pool-semantics.md` (Envoy,
//! HttpClient 5, Go, OkHttp). Every test drives the pool through its public
//! inputs, drains every action after each input, asserts the exact actions,
//! outcomes, gauges and counters, and checks the pool's invariants after
//! every step.

#[path = "behaviour/support.rs"]
mod support;

#[path = "behaviour/connect.rs"]
mod connect;
#[path = "behaviour/drain.rs"]
mod drain;
#[path = "behaviour/envoy_scenarios.rs"]
mod envoy_scenarios;
#[path = "behaviour/errors.rs"]
mod errors;
#[path = "behaviour/httpclient_scenarios.rs"]
mod httpclient_scenarios;
#[path = "behaviour/lease.rs"]
mod lease;
#[path = "behaviour/limits.rs"]
mod limits;
#[path = "behaviour/preconnect.rs"]
mod preconnect;
#[path = "behaviour/tags.rs"]
mod tags;
#[path = "behaviour/timers.rs"]
mod timers;
#[path = "behaviour/validation.rs"]
mod validation;
#[path = "behaviour/waiters.rs"]
mod waiters;
