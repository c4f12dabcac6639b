//! Why a request to a server did not give result pictures, sorted by what the pipeline should
//! do about it ([`Disposition`]): wait for the server (it is closed, or refuses our
//! credentials), retry (5xx, timeouts, dropped connections, answers that cannot be used), or
//! fail the file (any other refusal: the request itself is wrong). Every kind of server says
//! its failures in these terms, so the pipeline never looks at a dialect.

use std::time::Duration;

/// Why one request gave no pictures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Trouble {
    /// No connection (refused, no route, DNS): the server is closed or starting.
    #[error("cannot reach the server ({0})")]
    Unreachable(String),
    /// The connection broke before the answer was complete (the server crashed or restarted).
    #[error("the connection was lost before the answer came ({0})")]
    Lost(String),
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// An error status with the reason the server gave.
    #[error("the server answered {code}: {detail}")]
    Status {
        code: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A gRPC status (`code`, its number in gRPC) with the reason the server gave.
    #[error("the server answered {}: {detail}", rpc_name(*.code))]
    Rpc { code: i32, detail: String },
    /// An answer came, but it cannot be used (no pictures, broken ones, too few).
    #[error("{0}")]
    BadAnswer(String),
}

/// gRPC's name of status `code`, as its documentation writes it (`INVALID_ARGUMENT`).
pub fn rpc_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|at| NAMES.get(at))
        .copied()
        .unwrap_or("an unknown status")
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Not the file's fault and not an attempt: wait until the server answers again.
    WaitForServer,
    /// May pass: count an attempt and try again after a pause (at least this long).
    Retry(Option<Duration>),
    /// The request itself is wrong: the file fails now.
    Fail,
}

impl Trouble {
    pub fn disposition(&self) -> Disposition {
        match self {
            Trouble::Unreachable(_) => Disposition::WaitForServer,
            Trouble::Lost(_) | Trouble::TimedOut(_) | Trouble::BadAnswer(_) => {
                Disposition::Retry(None)
            }
            Trouble::Status {
                code, retry_after, ..
            } => Disposition::of_status(*code, *retry_after),
            Trouble::Rpc { code, .. } => Disposition::of_rpc(*code),
        }
    }

    /// Whether the server itself may be gone (it stopped answering mid-request): in a pool,
    /// the job had better go to another one while this one is probed.
    pub fn server_gone(&self) -> bool {
        matches!(self, Trouble::TimedOut(_) | Trouble::Lost(_))
    }
}

impl Disposition {
    /// What an error status (with its `Retry-After`) means for the file.
    pub fn of_status(code: u16, retry_after: Option<Duration>) -> Disposition {
        match code {
            401 | 403 | 407 => Disposition::WaitForServer,
            408 | 425 | 429 | 500..=599 => Disposition::Retry(retry_after),
            _ => Disposition::Fail,
        }
    }

    /// What a gRPC status means for the file: unavailable or refused credentials wait, a
    /// refusal of the request itself (invalid argument, not found, unimplemented ...) fails
    /// it, anything else (deadline exceeded, internal, aborted ...) may pass.
    pub fn of_rpc(code: i32) -> Disposition {
        match code {
            7 | 14 | 16 => Disposition::WaitForServer,
            3 | 5 | 6 | 9 | 11 | 12 => Disposition::Fail,
            _ => Disposition::Retry(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> Trouble {
        Trouble::Status {
            code,
            detail: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            Trouble::Unreachable("x".into()).disposition(),
            Disposition::WaitForServer
        );
        assert_eq!(
            Trouble::Lost("x".into()).disposition(),
            Disposition::Retry(None)
        );
        assert_eq!(
            Trouble::TimedOut(Duration::from_secs(1)).disposition(),
            Disposition::Retry(None)
        );
        assert_eq!(
            Trouble::BadAnswer("x".into()).disposition(),
            Disposition::Retry(None)
        );
        assert_eq!(status(500, None).disposition(), Disposition::Retry(None));
        assert_eq!(
            status(503, Some(7)).disposition(),
            Disposition::Retry(Some(Duration::from_secs(7)))
        );
        assert_eq!(status(429, None).disposition(), Disposition::Retry(None));
        assert_eq!(status(401, None).disposition(), Disposition::WaitForServer);
        assert_eq!(status(422, None).disposition(), Disposition::Fail);
        assert_eq!(status(404, None).disposition(), Disposition::Fail);
    }

    #[test]
    fn grpc_statuses_read_well_and_are_sorted() {
        let rpc = |code: i32| Trouble::Rpc {
            code,
            detail: "unknown model".into(),
        };
        assert_eq!(
            rpc(3).to_string(),
            "the server answered INVALID_ARGUMENT: unknown model"
        );
        assert_eq!(rpc(3).disposition(), Disposition::Fail);
        assert_eq!(rpc(5).disposition(), Disposition::Fail);
        assert_eq!(rpc(4).disposition(), Disposition::Retry(None));
        assert_eq!(rpc(13).disposition(), Disposition::Retry(None));
        assert_eq!(rpc(14).disposition(), Disposition::WaitForServer);
        assert_eq!(rpc(16).disposition(), Disposition::WaitForServer);
        assert_eq!(rpc_name(99), "an unknown status");
    }
}
