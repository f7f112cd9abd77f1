//! Checks in the shared test kit's style: a failed check is a
//! [`wharf_testkit::Failure`] naming the scenario's own source line
//! (`#[track_caller]`), never a panic.

use wharf_testkit::Failure;

/// A failure at the caller's location.
#[track_caller]
pub fn failure(what: &'static str) -> Failure {
    let at = core::panic::Location::caller();
    Failure {
        file: at.file(),
        line: at.line(),
        what,
    }
}

/// `ensure!(cond)`: fail with the condition's text at this line.
macro_rules! ensure {
    ($c:expr) => {
        if !$c {
            return Err($crate::check::failure(stringify!($c)));
        }
    };
}

/// `fail!("what")`: fail at this line.
macro_rules! fail {
    ($what:expr) => {
        return Err($crate::check::failure($what))
    };
}

/// `ok!(result)`: the `Ok` value, or fail at this line.
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(_) => return Err($crate::check::failure(concat!("Ok: ", stringify!($e)))),
        }
    };
}

/// `some!(option)`: the `Some` value, or fail at this line.
macro_rules! some {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Err($crate::check::failure(concat!("Some: ", stringify!($e)))),
        }
    };
}

pub(crate) use {ensure, fail, ok, some};
