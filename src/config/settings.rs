//! Generation settings: a profile file's (or per-image sidecar's) text parsed and checked against
//! the ranges the servers enforce, and one set of settings laid over another.

use std::path::Path;

use toml::Spanned;

use super::checks::{integer_in, non_empty, number_in};
use super::diagnostic::{Problems, Source, unknown_key};
use super::extra::{SentFor, sent_for};
use super::raw::{Integer, RawLora, RawSettings};
use super::workflow::NodeInputs;
use super::{ConfigError, Lora, Settings, Workflow};

/// Draw Things generates at multiples of this, so the init image must be sized to one.
const SIZE_STEP: i64 = 64;

/// The TOML of a profile or sidecar into its raw keys; every refused key goes to `problems`,
/// an unknown one with a hint.
fn parse_raw(source: &Source<'_>, problems: &mut Problems) -> Result<RawSettings, ConfigError> {
    source.deserialize_all(problems, |error| {
        let mut config_error = source.toml_error(error);
        // Only the profile's own table allows `extra`, so its list of keys names it.
        let top_level = error.message().contains("`extra`");
        if let Some(hint) = unknown_key(error).and_then(|key| unknown_key_hint(key, top_level)) {
            config_error.message.push_str(&hint);
        }
        config_error
    })
}

impl Settings {
    /// The seed to send: the profile's, or a random one when it says -1 or nothing.
    pub fn seed_to_send(&self) -> u32 {
        match self.seed {
            Some(seed) if seed >= 0 => u32::try_from(seed).unwrap_or(u32::MAX),
            _ => fastrand::u32(..),
        }
    }

    /// Parses a profile file's content (or a per-image `.toml` sidecar's); `file` is named in
    /// errors. Unknown keys, wrong types and values the servers would refuse are errors.
    pub fn parse(text: &str, file: &Path) -> Result<Settings, ConfigError> {
        let source = Source::new(file, text);
        let mut problems = Problems::default();
        let raw = parse_raw(&source, &mut problems)?;
        if let Some(first) = raw.servers.as_ref().and_then(|servers| servers.first()) {
            problems.push(source.error_at(
                first.span(),
                "`servers` belongs in a profile (it picks the servers for all of its pictures), \
                 not beside one picture",
            ));
        }
        if let Some(workflow) = &raw.workflow {
            problems.push(source.error_at(
                workflow.span(),
                "`workflow` belongs in a profile (it is the graph for all of its pictures), \
                 not beside one picture; [comfyui.set] may change its inputs for this one",
            ));
        }
        let settings = Settings::from_raw(&source, raw, &mut problems);
        problems.finish(settings)
    }

    /// A profile file's content: its settings and the servers it prefers, each of which must
    /// be one of `server_names`.
    pub(crate) fn parse_profile(
        text: &str,
        file: &Path,
        server_names: &[String],
    ) -> Result<(Settings, Option<Vec<String>>), ConfigError> {
        let source = Source::new(file, text);
        let mut problems = Problems::default();
        let mut raw = parse_raw(&source, &mut problems)?;
        let servers = raw.servers.take().map(|names| {
            for name in &names {
                if !server_names.contains(name.get_ref()) {
                    problems.push(source.error_at(
                        name.span(),
                        format!(
                            "there is no server \"{}\" (the servers are: {})",
                            name.get_ref(),
                            server_names.join(", ")
                        ),
                    ));
                }
            }
            names.into_iter().map(|name| name.into_inner()).collect()
        });
        let workflow = raw.workflow.take();
        let first_set_key = raw
            .comfyui
            .as_ref()
            .and_then(|comfyui| comfyui.set.as_ref())
            .map(|set| {
                set.keys()
                    .map(|key| (key.get_ref().clone(), key.span()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut settings = Settings::from_raw(&source, raw, &mut problems);
        match workflow {
            Some(name) => {
                let beside = file.parent().unwrap_or(Path::new("."));
                match Workflow::read(name.get_ref(), beside) {
                    Ok(workflow) => {
                        for why in workflow.shape_problems() {
                            problems.push(source.error_at(name.span(), why));
                        }
                        for why in workflow.placed(&settings).1 {
                            problems.push(source.error_at(name.span(), why));
                        }
                        for (key, span) in &first_set_key {
                            if let Err(why) = workflow.set_spot(key) {
                                problems.push(source.error_at(span.clone(), why));
                            }
                        }
                        settings.workflow = Some(workflow);
                    }
                    Err(error) => problems.push(error),
                }
            }
            None => {
                if let Some((_, span)) = first_set_key.first() {
                    problems.push(source.error_at(
                        span.clone(),
                        "[comfyui.set] sets inputs of a ComfyUI workflow, and this profile \
                         names none: add `workflow = \"NAME.json\"`",
                    ));
                }
            }
        }
        problems.finish((settings, servers))
    }

    /// These settings with `other` laid over them: each key `other` sets wins; `extra` is merged
    /// key by key (top-level keys), and `loras`, when `other` sets it, replaces the whole list.
    pub fn overridden_by(&self, other: &Settings) -> Settings {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.as_ref().or(base.as_ref()).cloned()
        }
        let mut extra = self.extra.clone();
        extra.extend(
            other
                .extra
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        Settings {
            prompt: pick(&self.prompt, &other.prompt),
            negative_prompt: pick(&self.negative_prompt, &other.negative_prompt),
            steps: pick(&self.steps, &other.steps),
            strength: pick(&self.strength, &other.strength),
            guidance_scale: pick(&self.guidance_scale, &other.guidance_scale),
            seed: pick(&self.seed, &other.seed),
            sampler: pick(&self.sampler, &other.sampler),
            model: pick(&self.model, &other.model),
            batch_count: pick(&self.batch_count, &other.batch_count),
            width: pick(&self.width, &other.width),
            height: pick(&self.height, &other.height),
            max_megapixels: pick(&self.max_megapixels, &other.max_megapixels),
            loras: pick(&self.loras, &other.loras),
            extra,
            workflow: pick(&self.workflow, &other.workflow),
            comfyui_set: {
                let mut set = self.comfyui_set.clone();
                set.extend(other.comfyui_set.clone());
                set
            },
        }
    }

    /// The settings checked; every problem goes to `problems` (the value is then unused).
    fn from_raw(source: &Source<'_>, raw: RawSettings, problems: &mut Problems) -> Settings {
        let leave_out = |key: &str| format!("leave `{key}` out to use the server's own setting");
        Settings {
            prompt: raw.prompt,
            negative_prompt: raw.negative_prompt,
            steps: problems.keep(optional(raw.steps, |v| {
                integer_in(source, "steps", v, 1..=150)
            })),
            strength: problems.keep(optional(raw.strength, |v| {
                number_in(source, "strength", v, 0.0..=1.0)
            })),
            guidance_scale: problems.keep(optional(raw.guidance_scale, |v| {
                number_in(source, "guidance_scale", v, 0.0..=50.0)
            })),
            seed: problems.keep(optional(raw.seed, |v| {
                integer_in(source, "seed", v, -1..=4_294_967_295)
            })),
            sampler: problems.keep(optional(raw.sampler, |v| {
                non_empty(source, "sampler", v, Some(&leave_out("sampler")))
            })),
            model: problems.keep(optional(raw.model, |v| {
                non_empty(source, "model", v, Some(&leave_out("model")))
            })),
            batch_count: problems.keep(optional(raw.batch_count, |v| {
                integer_in(source, "batch_count", v, 1..=100)
            })),
            width: problems.keep(optional(raw.width, |v| image_size(source, "width", v))),
            height: problems.keep(optional(raw.height, |v| image_size(source, "height", v))),
            max_megapixels: problems.keep(optional(raw.max_megapixels, |v| {
                number_in(source, "max_megapixels", v, 0.05..=64.0)
            })),
            loras: raw.loras.map(|loras| {
                loras
                    .iter()
                    .map(|entry| self::lora(source, entry.get_ref(), problems))
                    .collect()
            }),
            extra: match raw.extra {
                None => serde_json::Map::new(),
                Some(extra) => super::extra::convert(source, extra, problems),
            },
            workflow: None,
            comfyui_set: raw
                .comfyui
                .and_then(|comfyui| comfyui.set)
                .map(|set| node_inputs(source, set, problems))
                .unwrap_or_default(),
        }
    }
}

/// `[comfyui.set]`'s values as JSON.
fn node_inputs(
    source: &Source<'_>,
    set: std::collections::BTreeMap<Spanned<String>, toml::Value>,
    problems: &mut Problems,
) -> NodeInputs {
    let mut inputs = NodeInputs::new();
    for (key, value) in set {
        match super::extra::to_json(value) {
            Some(value) => {
                inputs.insert(key.get_ref().clone(), value);
            }
            None => problems.push(source.error_at(
                key.span(),
                format!(
                    "\"{}\" in [comfyui.set] holds nan or inf, which JSON cannot carry",
                    key.get_ref()
                ),
            )),
        }
    }
    inputs
}

/// Applies `check` to a value that may be absent.
fn optional<R, T>(
    value: Option<R>,
    check: impl FnOnce(&R) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    value.as_ref().map(check).transpose()
}

/// `width` or `height`: within what Draw Things accepts, and a multiple of 64.
fn image_size(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<Integer>,
) -> Result<u32, ConfigError> {
    let size: u32 = integer_in(source, key, value, 128..=8192)?;
    let Integer(number) = *value.get_ref();
    if number % SIZE_STEP != 0 {
        let below = number / SIZE_STEP * SIZE_STEP;
        return Err(source.error_at(
            value.span(),
            format!(
                "`{key}` = {number} is not a multiple of 64 (try {below} or {}): Draw Things \
                 generates at multiples of 64 and the image sent must match that size",
                below + SIZE_STEP
            ),
        ));
    }
    Ok(size)
}

/// A `[[loras]]` entry; `weight` defaults to 1.
fn lora(source: &Source<'_>, raw: &RawLora, problems: &mut Problems) -> Lora {
    Lora {
        file: problems.keep(non_empty(
            source,
            "file",
            &raw.file,
            Some("name the LoRA's file, such as \"x_lora_f16.ckpt\""),
        )),
        weight: problems
            .keep(optional(raw.weight.as_ref(), |v| {
                number_in(source, "weight", v, -10.0..=10.0)
            }))
            .unwrap_or(1.0),
    }
}

/// Advice for an unknown key in a profile: A1111's name for a key, or where server keys go.
/// `top_level` tells a key among the profile's own keys from one in a `[[loras]]` entry.
fn unknown_key_hint(key: &str, top_level: bool) -> Option<String> {
    match sent_for(key) {
        Some(SentFor::ProfileKey(profile_key)) if profile_key != key => Some(format!(
            "; profiles use Draw Things' names: set `{profile_key}` instead"
        )),
        Some(SentFor::InputImage) => Some("; drawdrop sends the dropped image itself".to_owned()),
        _ if top_level => Some("; keys for the server itself go under [extra]".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_are_kept_or_picked() {
        let mut settings = Settings {
            seed: Some(4_294_967_295),
            ..Settings::default()
        };
        assert_eq!(settings.seed_to_send(), u32::MAX);
        settings.seed = Some(-1);
        let picks: std::collections::HashSet<u32> =
            (0..20).map(|_| settings.seed_to_send()).collect();
        assert!(picks.len() > 1, "random seeds should differ");
    }

    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Path::new("/p/style.toml"))
    }

    #[test]
    fn a_full_profile_parses() {
        let settings = parse(
            "prompt = \"a dog\"\nnegative_prompt = \"blur\"\nsteps = 4\nstrength = 0.6\n\
             guidance_scale = 7\nseed = 4294967295\nsampler = \"DPM++ 2M Karras\"\n\
             model = \"m.ckpt\"\nbatch_count = 2\nwidth = 1024\nheight = 128\n\
             max_megapixels = 4\n\
             [[loras]]\nfile = \"a.ckpt\"\n[[loras]]\nfile = \"b.ckpt\"\nweight = -0.5\n\
             [extra]\nsharpness = 2\n",
        )
        .unwrap();
        assert_eq!(settings.prompt.as_deref(), Some("a dog"));
        assert_eq!(settings.steps, Some(4));
        assert_eq!(settings.guidance_scale, Some(7.0));
        assert_eq!(settings.seed, Some(4_294_967_295));
        assert_eq!(settings.width, Some(1024));
        assert_eq!(settings.max_megapixels, Some(4.0));
        assert_eq!(
            settings.loras,
            Some(vec![
                Lora {
                    file: "a.ckpt".into(),
                    weight: 1.0
                },
                Lora {
                    file: "b.ckpt".into(),
                    weight: -0.5
                },
            ])
        );
        assert_eq!(settings.extra.get("sharpness"), Some(&json!(2)));
    }

    #[test]
    fn an_empty_profile_sets_nothing() {
        assert_eq!(parse("# nothing\n").unwrap(), Settings::default());
    }

    #[test]
    fn values_are_checked() {
        let message = |text| parse(text).unwrap_err().message;
        assert!(message("steps = 151").contains("allowed: 1 to 150"));
        assert!(message("strength = nan").contains("finite"));
        assert!(message("guidance_scale = inf").contains("finite"));
        assert!(message("width = 8256").contains("allowed: 128 to 8192"));
        assert!(message("height = 200").contains("try 192 or 256"));
        assert!(message("max_megapixels = 0.01").contains("allowed: 0.05 to 64"));
        assert!(message("max_megapixels = 65").contains("allowed: 0.05 to 64"));
        assert!(message("max_megapixels = \"big\"").contains("expected a number"));
        assert!(message("model = \"\"").contains("must not be empty"));
        assert!(message("[[loras]]\nfile = \"x\"\nweight = 11").contains("allowed: -10 to 10"));
    }

    #[test]
    fn every_problem_is_reported_in_file_order() {
        let error = parse(
            "width = 1000\nsteps = 0\nprompt = \"x\"\n[[loras]]\nfile = \"\"\nweight = 11\n\
             [extra]\nsteps = 3\n",
        )
        .unwrap_err();
        let spots: Vec<_> = error.all().map(|e| e.position).collect();
        assert_eq!(
            spots,
            [
                Some((1, 9)),
                Some((2, 9)),
                Some((5, 8)),
                Some((6, 10)),
                Some((8, 1))
            ],
            "{error}"
        );
        assert!(error.message.contains("not a multiple of 64"), "{error}");
    }

    #[test]
    fn unknown_keys_get_advice() {
        let error = parse("cfg_scale = 7").unwrap_err();
        assert!(
            error
                .message
                .starts_with("unknown key `cfg_scale` (allowed: `prompt`"),
            "{error}"
        );
        assert!(
            error.message.ends_with("set `guidance_scale` instead"),
            "{error}"
        );
        let error = parse("sharpness = 2").unwrap_err();
        assert!(error.message.ends_with("go under [extra]"), "{error}");
        let error = parse("[[loras]]\nfile = \"x\"\nname = \"y\"").unwrap_err();
        assert_eq!(
            error.message,
            "unknown key `name` (allowed: `file`, `weight`)"
        );
    }

    #[test]
    fn overridden_by_lets_the_other_side_win_key_by_key() {
        let base = parse(
            "prompt = \"a\"\nsteps = 4\n[[loras]]\nfile = \"l.ckpt\"\n[extra]\nx = 1\ny = 2\n",
        )
        .unwrap();
        let over = parse(
            "steps = 8\nseed = 3\nmax_megapixels = 0.25\nloras = []\n[extra]\ny = 3\nz = 4\n",
        )
        .unwrap();
        let merged = base.overridden_by(&over);
        assert_eq!(merged.prompt.as_deref(), Some("a"));
        assert_eq!(merged.steps, Some(8));
        assert_eq!(merged.seed, Some(3));
        assert_eq!(merged.max_megapixels, Some(0.25));
        assert_eq!(merged.loras, Some(vec![]));
        assert_eq!(
            serde_json::Value::Object(merged.extra),
            json!({"x": 1, "y": 3, "z": 4})
        );
        assert_eq!(base.overridden_by(&Settings::default()), base);
        assert_eq!(Settings::default().overridden_by(&base), base);
    }
}
