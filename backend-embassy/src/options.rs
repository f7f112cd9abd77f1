//! Options: of one lease request, and of the backend.

use wharf_core::{CancelPolicy, Duration, Tag};

/// Options of one lease request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LeaseOptions {
    /// State to match (see [`Tag`]): prefer a connection with this tag, else an
    /// untagged one.
    pub tag: Option<Tag>,
    /// Give up with [`Error::Timeout`](crate::Error::Timeout) after this
    /// long (`None`: wait as long as it takes). Zero means "do not wait": a
    /// ready idle connection (no validation due) is granted, otherwise the
    /// lease fails at once with [`Error::Timeout`](crate::Error::Timeout),
    /// without queueing or connecting.
    pub timeout: Option<Duration>,
}

/// Socket settings of the backend (the pool's behaviour is in [`Config`](crate::Config)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options {
    /// How long a close may wait for its FIN to be acknowledged (or its RST to
    /// be sent) before the socket is freed anyway (default 2 s).
    pub close_timeout: embassy_time::Duration,
    /// TCP keep-alive interval set on every socket (default none).
    pub keep_alive: Option<embassy_time::Duration>,
    /// smoltcp's socket timeout: a connection whose peer stops answering for
    /// this long is reset (default none).
    pub socket_timeout: Option<embassy_time::Duration>,
    /// What dropping a waiting lease future does beyond withdrawing it
    /// (default [`CancelPolicy::Default`]; [`CancelPolicy::CloseExcess`] also
    /// aborts a connect the remaining requests no longer need).
    pub cancel_policy: CancelPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            close_timeout: embassy_time::Duration::from_secs(2),
            keep_alive: None,
            socket_timeout: None,
            cancel_policy: CancelPolicy::Default,
        }
    }
}
