//! Why a job failed, typed: each variant's text is exactly what `.error.txt`, the log and the
//! desktop say, and its [`Failure::kind`] is the `error_kind` of its `jobs.jsonl` line, so a
//! script can sort failures without parsing sentences.

use crate::backends::Trouble;
use crate::image::PictureProblem;

/// Why a job ends in `failed/`.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum Failure {
    /// The picture is in an inbox folder named like one of the outbox's own.
    #[error(
        "the inbox folder `{0}` has the name of an outbox folder drawdrop uses itself; rename the folder"
    )]
    ReservedFolder(String),
    /// Its `cat.toml` or `cat.txt` cannot be read or is not valid (the text says where).
    #[error("{0}")]
    Sidecar(String),
    /// Its settings cannot go to its server (a key with nowhere to go in a workflow ...).
    #[error("{0}")]
    Settings(String),
    /// The file cannot be read.
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// The file is larger than `max_file_mb`.
    #[error(
        "the file is {megabytes} MB, above the limit of {limit} MB (max_file_mb in the config)"
    )]
    TooLarge { megabytes: u64, limit: u64 },
    /// Not a picture drawdrop can send: another format, damaged, absurdly large ...
    #[error(transparent)]
    Picture(#[from] PictureProblem),
    /// The server refused the request itself; `hint` names what to fix (the model sent, the
    /// files whose settings were sent).
    #[error("{product} refused the request ({status}): {detail} ({hint})")]
    Refused {
        product: &'static str,
        /// The refusal's status: `HTTP 422`, `gRPC INVALID_ARGUMENT`.
        status: String,
        detail: String,
        hint: String,
    },
    /// Every attempt failed in a way that might have passed.
    #[error(
        "gave up after {attempts} attempt{}; the last one: {last}",
        if *.attempts == 1 { "" } else { "s" }
    )]
    GaveUp { attempts: u32, last: Trouble },
    /// In a pool, no server could do it: each one's reason.
    #[error("no server could do it: {0}")]
    NoServer(String),
    /// drawdrop stopped again and again while this file was being processed.
    #[error(
        "drawdrop stopped {0} times while this file was being processed; it is set aside so it cannot stop drawdrop again"
    )]
    Restarts(u32),
    /// drawdrop's own work on it broke (a task panicked).
    #[error("internal error while preparing the image: {0}")]
    Internal(String),
}

impl Failure {
    /// The `error_kind` in `jobs.jsonl`.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Failure::ReservedFolder(_) => "reserved_folder",
            Failure::Sidecar(_) => "sidecar",
            Failure::Settings(_) => "settings",
            Failure::Unreadable(_) => "unreadable",
            Failure::TooLarge { .. } => "too_large",
            Failure::Picture(_) => "not_a_picture",
            Failure::Refused { .. } => "refused",
            Failure::GaveUp { .. } => "gave_up",
            Failure::NoServer(_) => "no_server",
            Failure::Restarts(_) => "restarts",
            Failure::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_texts_are_those_of_error_txt() {
        let gave_up = Failure::GaveUp {
            attempts: 3,
            last: Trouble::TimedOut(Duration::from_secs(2)),
        };
        assert_eq!(
            gave_up.to_string(),
            "gave up after 3 attempts; the last one: no answer within 2 s"
        );
        let once = Failure::GaveUp {
            attempts: 1,
            last: Trouble::BadAnswer("the answer holds no images".into()),
        };
        assert_eq!(
            once.to_string(),
            "gave up after 1 attempt; the last one: the answer holds no images"
        );
        let refused = Failure::Refused {
            product: "Draw Things",
            status: "HTTP 422".into(),
            detail: "Unrecognized keys: hr_scale".into(),
            hint: "settings from p.toml".into(),
        };
        assert_eq!(
            refused.to_string(),
            "Draw Things refused the request (HTTP 422): Unrecognized keys: hr_scale (settings from p.toml)"
        );
        assert_eq!(refused.kind(), "refused");
        let large = Failure::TooLarge {
            megabytes: 70,
            limit: 64,
        };
        assert_eq!(
            large.to_string(),
            "the file is 70 MB, above the limit of 64 MB (max_file_mb in the config)"
        );
    }
}
