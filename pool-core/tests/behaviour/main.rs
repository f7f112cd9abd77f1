//! Behaviour tests of `wharf-core`, one per rule of `docs/SEMANTICS.md` and of
//! the reference behaviours in `shared/reference/pool-semantics.md` (Envoy,
//! HttpClient 5, Go, OkHttp). Every test drives the pool through its public
//! inputs, drains every action after each input, asserts the exact actions,
//! outcomes, gauges and counters, and checks the pool's invariants after
//! every step.

mod support;

mod boundaries;
mod connect;
mod drain;
mod envoy_scenarios;
mod errors;
mod httpclient_scenarios;
mod lease;
mod limits;
mod preconnect;
mod tags;
mod timers;
mod validation;
mod waiters;
