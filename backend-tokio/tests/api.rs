//! The API a Rust user expects (issue 18): a connector's own error type
//! reaches the caller typed; the lease guard's pool functions never shadow
//! the connection's methods.

use std::fmt;
use std::io;
use std::sync::Arc;

use wharf_tokio::{CloseReason, ConnectFailure, Connector, Error, Lease, Pool};

/// A database client's own connect error (not an `io::Error`).
#[derive(Debug)]
struct AuthError {
    user: &'static str,
    /// What it wraps, if anything (the default classification looks at it).
    io: Option<io::Error>,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "login refused for {}", self.user)
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

/// A connection whose methods have the names of the lease's pool functions.
#[derive(Debug)]
struct DbConn {
    session: u32,
}

impl DbConn {
    fn id(&self) -> u32 {
        self.session
    }
    fn discard(&mut self) -> &'static str {
        "the connection's own discard"
    }
    fn route(&self) -> &'static str {
        "the connection's own route"
    }
}

/// Routes: "db" connects; "locked" fails with an `AuthError`; "slow" fails
/// with an `AuthError` wrapping a timed-out `io::Error`.
struct Db {
    classify_remote: bool,
}

impl Connector<&'static str> for Db {
    type Conn = DbConn;
    type Error = AuthError;
    async fn connect(&self, route: &&'static str) -> Result<DbConn, AuthError> {
        match *route {
            "locked" => Err(AuthError {
                user: "bob",
                io: None,
            }),
            "slow" => Err(AuthError {
                user: "carol",
                io: Some(io::Error::new(io::ErrorKind::TimedOut, "handshake")),
            }),
            _ => Ok(DbConn { session: 7 }),
        }
    }
    fn classify(&self, error: &AuthError) -> ConnectFailure {
        if self.classify_remote {
            ConnectFailure::Remote
        } else {
            // The trait's default (through a helper, since this overrides it).
            match &error.io {
                Some(io) => wharf_tokio::classify_io(io),
                None => ConnectFailure::Remote,
            }
        }
    }
}

#[tokio::test]
async fn a_connectors_own_error_reaches_the_caller_typed() {
    let pool = Pool::builder(Db {
        classify_remote: true,
    })
    .build()
    .unwrap();
    let err: Error<AuthError> = pool.lease(&"locked").await.unwrap_err();
    match &err {
        Error::ConnectFailed {
            route,
            reason,
            source: Some(source),
        } => {
            assert_eq!(route, "\"locked\"");
            assert_eq!(*reason, ConnectFailure::Remote);
            let source: &Arc<AuthError> = source;
            assert_eq!(source.user, "bob", "typed, not boxed");
        }
        other => panic!("expected the connector's error, got {other:?}"),
    }
    // Also as the `std::error::Error` source, downcastable.
    let src = std::error::Error::source(&err).expect("a source");
    assert_eq!(src.downcast_ref::<AuthError>().map(|e| e.user), Some("bob"));
    assert_eq!(
        err.to_string(),
        "connect to route \"locked\" failed at the remote end: login refused for bob"
    );
    assert_eq!(
        pool.counters().connect_failures_for(ConnectFailure::Remote),
        1
    );
}

/// The classification stays the connector's: an `AuthError` wrapping a
/// timed-out `io::Error` classified from it counts as a timeout.
#[tokio::test]
async fn the_classification_stays_the_connectors() {
    let pool = Pool::builder(Db {
        classify_remote: false,
    })
    .build()
    .unwrap();
    match pool.lease(&"slow").await.unwrap_err() {
        Error::ConnectFailed {
            reason,
            source: Some(s),
            ..
        } => {
            assert_eq!(reason, ConnectFailure::Timeout);
            assert_eq!(s.user, "carol");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pool.counters()
            .connect_failures_for(ConnectFailure::Timeout),
        1
    );
}

/// The trait's default classification looks through an error's sources for
/// an `io::Error`; without one, remote.
#[tokio::test]
async fn the_default_classification_finds_a_wrapped_io_error() {
    struct Plain;
    impl Connector<&'static str> for Plain {
        type Conn = DbConn;
        type Error = AuthError;
        async fn connect(&self, route: &&'static str) -> Result<DbConn, AuthError> {
            Db {
                classify_remote: true,
            }
            .connect(route)
            .await
        }
    }
    let pool = Pool::builder(Plain).build().unwrap();
    assert!(pool.lease(&"slow").await.is_err());
    assert!(pool.lease(&"locked").await.is_err());
    let c = pool.counters();
    assert_eq!(c.connect_failures_for(ConnectFailure::Timeout), 1);
    assert_eq!(c.connect_failures_for(ConnectFailure::Remote), 1);
}

/// `lease.id()`, `lease.discard()`, `lease.route()` are the connection's;
/// the pool's are `Lease::id(&lease)`, `Lease::discard(&mut lease)`, ...
#[tokio::test]
async fn the_lease_guard_does_not_shadow_the_connections_methods() {
    let pool = Pool::builder(Db {
        classify_remote: true,
    })
    .build()
    .unwrap();
    let mut lease = pool.lease(&"db").await.unwrap();
    assert_eq!(lease.id(), 7);
    assert_eq!(lease.discard(), "the connection's own discard");
    assert_eq!(lease.route(), "the connection's own route");
    assert_eq!(Lease::route(&lease), Some("db"));
    assert_eq!(Lease::id(&lease).conn().index(), 0);
    assert!(
        !Lease::is_discarded(&lease),
        "the connection's discard is not the pool's"
    );
    Lease::discard(&mut lease);
    drop(lease);
    assert_eq!(pool.counters().closes_for(CloseReason::Discarded), 1);
}
