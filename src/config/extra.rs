//! A profile's `[extra]` table: TOML values turned into the JSON passed through to the server,
//! and the keys refused there because drawdrop sends them itself.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use toml::Spanned;

use super::diagnostic::{Problems, Source};

/// What drawdrop itself sends under a request key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SentFor {
    /// The value of this profile key (in Draw Things' or A1111's name for it).
    ProfileKey(&'static str),
    /// The image dropped into the inbox.
    InputImage,
}

/// Every request key drawdrop sends, in either dialect. Draw Things fails a request that holds a
/// key twice or a key and its alias ("More than one key for ..."), and A1111 would silently use
/// one of two conflicting values, so `[extra]` may hold none of them.
const SENT_KEYS: &[(&str, SentFor)] = &[
    ("prompt", SentFor::ProfileKey("prompt")),
    ("negative_prompt", SentFor::ProfileKey("negative_prompt")),
    ("init_images", SentFor::InputImage),
    ("width", SentFor::ProfileKey("width")),
    ("height", SentFor::ProfileKey("height")),
    ("seed", SentFor::ProfileKey("seed")),
    ("steps", SentFor::ProfileKey("steps")),
    ("strength", SentFor::ProfileKey("strength")),
    ("denoising_strength", SentFor::ProfileKey("strength")),
    ("guidance_scale", SentFor::ProfileKey("guidance_scale")),
    ("cfg_scale", SentFor::ProfileKey("guidance_scale")),
    ("sampler", SentFor::ProfileKey("sampler")),
    ("sampler_name", SentFor::ProfileKey("sampler")),
    ("sampler_index", SentFor::ProfileKey("sampler")),
    ("batch_count", SentFor::ProfileKey("batch_count")),
    ("n_iter", SentFor::ProfileKey("batch_count")),
    ("model", SentFor::ProfileKey("model")),
    ("override_settings", SentFor::ProfileKey("model")),
    ("loras", SentFor::ProfileKey("loras")),
];

/// What drawdrop sends under request key `key`, if it sends that key at all.
pub(crate) fn sent_for(key: &str) -> Option<SentFor> {
    SENT_KEYS
        .iter()
        .find(|(sent, _)| *sent == key)
        .map(|(_, sent_for)| *sent_for)
}

/// Why `key` may not be in `[extra]`, or `None` when it may.
fn refusal(key: &str) -> Option<String> {
    let message = match sent_for(key)? {
        SentFor::InputImage => {
            format!(
                "`{key}` in [extra] is sent by drawdrop itself: it is the image dropped into the inbox"
            )
        }
        SentFor::ProfileKey("loras") => format!(
            "`{key}` in [extra] is sent by drawdrop itself: add [[loras]] tables (file, weight) to the profile instead"
        ),
        SentFor::ProfileKey(profile_key) if profile_key == key => format!(
            "`{key}` in [extra] is sent by drawdrop itself: set `{key}` in the profile, above [extra], instead"
        ),
        SentFor::ProfileKey(profile_key) => format!(
            "`{key}` in [extra] is what drawdrop sends for `{profile_key}`: set `{profile_key}` in the profile instead"
        ),
    };
    Some(message)
}

/// `[extra]` checked and converted to JSON; TOML datetimes become their text. Every refused
/// key goes to `problems`.
pub(crate) fn convert(
    source: &Source<'_>,
    extra: BTreeMap<Spanned<String>, toml::Value>,
    problems: &mut Problems,
) -> serde_json::Map<String, Json> {
    let mut json = serde_json::Map::new();
    for (key, value) in extra {
        if let Some(message) = refusal(key.get_ref()) {
            problems.push(source.error_at(key.span(), message));
            continue;
        }
        match to_json(value) {
            Some(value) => {
                json.insert(key.into_inner(), value);
            }
            None => problems.push(source.error_at(
                key.span(),
                format!(
                    "`{}` in [extra] holds nan or inf, which a JSON request cannot carry: use a finite number",
                    key.get_ref()
                ),
            )),
        }
    }
    json
}

/// `None` when the value holds a float that JSON cannot represent (nan, inf).
pub(crate) fn to_json(value: toml::Value) -> Option<Json> {
    Some(match value {
        toml::Value::String(text) => Json::String(text),
        toml::Value::Integer(number) => Json::from(number),
        toml::Value::Float(number) => Json::Number(serde_json::Number::from_f64(number)?),
        toml::Value::Boolean(flag) => Json::Bool(flag),
        toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Option<_>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .into_iter()
                .map(|(key, value)| Some((key, to_json(value)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::path::Path;

    fn convert_text(text: &str) -> Result<serde_json::Map<String, Json>, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            extra: BTreeMap<Spanned<String>, toml::Value>,
        }
        let doc: Doc = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        let json = convert(
            &Source::new(Path::new("p.toml"), text),
            doc.extra,
            &mut problems,
        );
        problems.finish(json)
    }

    #[test]
    fn values_become_json() {
        let json = convert_text(
            "[extra]\nsharpness = 2\nhires_fix = true\nscale = 1.5\nname = \"x\"\n\
             when = 1979-05-27T07:32:00Z\nlist = [1, \"a\"]\nnested = { a = { b = 1 } }\n",
        )
        .unwrap();
        assert_eq!(
            Json::Object(json),
            serde_json::json!({
                "sharpness": 2, "hires_fix": true, "scale": 1.5, "name": "x",
                "when": "1979-05-27T07:32:00Z", "list": [1, "a"], "nested": {"a": {"b": 1}}
            })
        );
    }

    #[test]
    fn non_finite_floats_are_refused_at_their_key() {
        let error = convert_text("[extra]\nok = 1\nbad = [1.0, nan]\n").unwrap_err();
        assert_eq!(error.position, Some((3, 1)));
        assert!(error.message.contains("nan or inf"), "{error}");
    }

    #[test]
    fn keys_drawdrop_sends_are_refused_with_the_profile_key_to_use() {
        let error = convert_text("[extra]\n  cfg_scale = 3\n").unwrap_err();
        assert_eq!(error.position, Some((2, 3)));
        assert_eq!(
            error.message,
            "`cfg_scale` in [extra] is what drawdrop sends for `guidance_scale`: set `guidance_scale` in the profile instead"
        );
        for (key, _) in SENT_KEYS {
            assert!(
                convert_text(&format!("[extra]\n{key} = 1\n")).is_err(),
                "{key}"
            );
        }
        assert!(convert_text("[extra]\nbatch_size = 2\n").is_ok());
    }
}
