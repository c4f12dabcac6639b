//! One card of the gallery: the facts of a finished job, read from its `jobs.jsonl` line,
//! with the thumbnails made for it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// A finished job as the gallery shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The job id (`jobs.jsonl`'s `job`): a job is shown once, however often its line is read.
    pub key: String,
    /// When it finished, as written in `jobs.jsonl` (local time with its offset).
    pub time: String,
    pub failed: bool,
    /// The input's path in the inbox (`watercolor/cat.png`).
    pub input: String,
    pub profile: String,
    pub prompt: Option<String>,
    pub seed: Option<i64>,
    pub model: Option<String>,
    pub server: String,
    pub total_ms: u64,
    /// The results, relative to the outbox.
    pub outputs: Vec<PathBuf>,
    /// `originals/...` (done) or `failed/...` (failed); none when the original was deleted.
    pub original: Option<PathBuf>,
    /// Why it failed.
    pub error: Option<String>,
    /// The thumbnail of the original, relative to `gallery/thumbs/`, when one could be made.
    pub original_thumb: Option<String>,
    /// One per output, in order.
    pub output_thumbs: Vec<Option<String>>,
}

impl Entry {
    /// The entry for one `jobs.jsonl` line; `None` for a line that is not a job record.
    /// Paths that would lead outside the outbox are dropped.
    pub fn from_record(record: &Value) -> Option<Entry> {
        let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        let key = text("job")?;
        let settings = record.get("settings").unwrap_or(&Value::Null);
        let setting = |key: &str| settings.get(key).and_then(Value::as_str).map(str::to_owned);
        let model = setting("model").or_else(|| {
            settings
                .pointer("/override_settings/sd_model_checkpoint")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let failed = record.get("outcome").and_then(Value::as_str) == Some("failed");
        let outputs: Vec<PathBuf> = record
            .get("outputs")
            .and_then(Value::as_array)
            .map(|outputs| {
                outputs
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(inside_outbox)
                    .collect()
            })
            .unwrap_or_default();
        let original = text(if failed { "failed_as" } else { "original" })
            .as_deref()
            .and_then(inside_outbox);
        Some(Entry {
            key,
            time: text("time").unwrap_or_default(),
            failed,
            input: text("input").unwrap_or_default(),
            profile: text("profile").unwrap_or_default(),
            prompt: setting("prompt"),
            seed: settings.get("seed").and_then(Value::as_i64),
            model,
            server: text("server").unwrap_or_default(),
            total_ms: record.get("total_ms").and_then(Value::as_u64).unwrap_or(0),
            output_thumbs: vec![None; outputs.len()],
            outputs,
            original,
            error: text("error"),
            original_thumb: None,
        })
    }
}

/// `path` when it names a place inside the outbox (relative, no `..`), else `None`.
pub(super) fn inside_outbox(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_done_record_gives_its_card() {
        let record = json!({"time": "2026-11-25T22:15:03.123+01:00", "job": "1-2-3",
            "input": "w/cat.png", "outcome": "done", "profile": "w", "server": "mini",
            "settings": {"prompt": "a cat", "seed": 42, "override_settings": {"sd_model_checkpoint": "sdxl"}},
            "outputs": ["w/cat.png", "/etc/passwd", "../up.png"], "original": "originals/w/cat.png",
            "total_ms": 3200});
        let entry = Entry::from_record(&record).unwrap();
        assert_eq!(entry.key, "1-2-3");
        assert_eq!(entry.prompt.as_deref(), Some("a cat"));
        assert_eq!(entry.seed, Some(42));
        assert_eq!(entry.model.as_deref(), Some("sdxl"));
        assert_eq!(entry.outputs, [PathBuf::from("w/cat.png")]);
        assert_eq!(entry.original, Some(PathBuf::from("originals/w/cat.png")));
        assert!(!entry.failed);
    }

    #[test]
    fn a_failed_record_keeps_its_reason_and_its_file_in_failed() {
        let record = json!({"job": "9", "outcome": "failed", "failed_as": "failed/bad.png",
            "error": "not a PNG", "outputs": []});
        let entry = Entry::from_record(&record).unwrap();
        assert!(entry.failed);
        assert_eq!(entry.original, Some(PathBuf::from("failed/bad.png")));
        assert_eq!(entry.error.as_deref(), Some("not a PNG"));
        assert!(Entry::from_record(&json!({"no": "job"})).is_none());
    }
}
