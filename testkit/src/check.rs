//! Checks for scenarios: [`Failure`] carries the scenario's own source line,
//! and nothing here can overflow or panic.

use core::panic::Location;

use wharf_core::{
    Action, CloseReason, ConnId, Index, Lease, LeaseError, LeaseOutcome, Pool, RouteId, WaiterId,
};

/// A failed check: where in the scenario, and what did not hold.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    /// Source file of the check.
    pub file: &'static str,
    /// Source line of the check.
    pub line: u32,
    /// The condition that did not hold.
    pub what: &'static str,
}

impl Failure {
    /// A failure at the caller's location (for `#[track_caller]` helpers).
    #[track_caller]
    pub(crate) fn here(what: &'static str) -> Failure {
        let at = Location::caller();
        Failure {
            file: at.file(),
            line: at.line(),
            what,
        }
    }
}

/// A scenario's result.
pub type Outcome = Result<(), Failure>;

/// `ensure!(cond)`: fail with the condition's text at this line.
macro_rules! ensure {
    ($c:expr) => {
        if !$c {
            return Err($crate::check::Failure::here(stringify!($c)));
        }
    };
}

/// `fail!("what")`: fail at this line.
macro_rules! fail {
    ($what:expr) => {
        return Err($crate::check::Failure::here($what))
    };
}

/// `ok!(result)`: unwraps a `Result`, failing the scenario on `Err`.
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(_) => {
                return Err($crate::check::Failure::here(concat!(
                    "Ok: ",
                    stringify!($e)
                )))
            }
        }
    };
}

/// Room for the actions of one input in a scenario: far more than any
/// scenario's input makes; more is a reported failure, never a panic.
const MAX_ACTS: usize = 32;

/// The actions drained from the pool after one input (the rule after every
/// input). Lookups never go past what was drained.
pub struct Acts<K> {
    a: [Option<Action<K>>; MAX_ACTS],
    /// How many were drained.
    pub n: usize,
}

impl<K: Eq + core::hash::Hash + Clone> Acts<K> {
    /// Drains every action of `p`; more than the buffer holds is a failure at
    /// the caller's line.
    #[track_caller]
    pub fn drain<I: Index>(p: &mut Pool<'_, K, I>) -> Result<Self, Failure> {
        let mut acts = Acts {
            a: [const { None }; MAX_ACTS],
            n: 0,
        };
        while let Some(a) = p.poll_action() {
            match acts.a.get_mut(acts.n) {
                Some(slot) => *slot = Some(a),
                None => return Err(Failure::here("more actions than a scenario expects (32)")),
            }
            acts.n += 1;
        }
        Ok(acts)
    }
    /// The `i`-th action.
    pub fn get(&self, i: usize) -> Option<&Action<K>> {
        self.a.get(i).and_then(|a| a.as_ref())
    }
    /// Every action, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Action<K>> {
        self.a.iter().take(self.n).flatten()
    }
    /// How many satisfy `f`.
    pub fn count(&self, f: impl Fn(&Action<K>) -> bool) -> usize {
        self.iter().filter(|a| f(a)).count()
    }
    /// Whether `want` is among them.
    pub fn has(&self, want: &Action<K>) -> bool
    where
        K: PartialEq,
    {
        self.iter().any(|a| a == want)
    }
    /// How many `Connect`s.
    pub fn connects(&self) -> usize {
        self.count(|a| matches!(a, Action::Connect { .. }))
    }
    /// The first `Connect`.
    pub fn connect(&self) -> Option<(ConnId, RouteId)> {
        self.iter().find_map(|a| match a {
            Action::Connect { conn, route } => Some((*conn, *route)),
            _ => None,
        })
    }
    /// The lease granted to `w`, if any.
    pub fn granted(&self, w: WaiterId) -> Option<Lease> {
        self.iter().find_map(|a| match a {
            Action::Granted { waiter, lease } if *waiter == w => Some(*lease),
            _ => None,
        })
    }
    /// Whether `c` was closed for `reason`.
    pub fn closed(&self, c: ConnId, reason: CloseReason) -> bool {
        self.iter()
            .any(|a| matches!(a, Action::Close { conn, reason: r } if *conn == c && *r == reason))
    }
}

/// The waiter of a lease that must have queued.
#[track_caller]
pub(crate) fn queued(o: Result<LeaseOutcome, LeaseError>) -> Result<WaiterId, Failure> {
    match o {
        Ok(LeaseOutcome::Queued(w)) => Ok(w),
        _ => Err(Failure::here("lease was not queued")),
    }
}

/// The lease of a lease that must have been granted at once.
#[track_caller]
pub(crate) fn granted(o: Result<LeaseOutcome, LeaseError>) -> Result<Lease, Failure> {
    match o {
        Ok(LeaseOutcome::Granted(l)) => Ok(l),
        _ => Err(Failure::here("lease was not granted at once")),
    }
}

/// The pool's invariants hold.
#[track_caller]
pub(crate) fn invariants<K: Eq + core::hash::Hash + Clone, I: Index>(
    p: &Pool<'_, K, I>,
) -> Outcome {
    match p.check_invariants() {
        Ok(()) => Ok(()),
        Err(_) => Err(Failure::here("check_invariants")),
    }
}
