//! Names in profiles that the server would refuse: a sampler or request key Draw Things does
//! not know, or (when an A1111 server lists them) a model, sampler or LoRA it does not have.

use crate::backends::Client;
use crate::backends::drawthings_http::known::{KNOWN_KEYS, SAMPLERS};
use crate::config::{Api, Config, Profile};
use crate::image::parameters::lora_name;
use serde_json::Value;

/// One finding per line, each naming the profile, for the profiles server `index` takes;
/// empty when nothing is wrong.
pub async fn findings(
    config: &Config,
    index: usize,
    client: &Client,
    server_answers: bool,
) -> Vec<String> {
    let profiles = || {
        config
            .profiles
            .values()
            .filter(move |profile| crate::pipeline::pool::accepts(config, index, profile))
    };
    match client.server().api {
        Api::DrawThings => profiles().flat_map(draw_things_findings).collect(),
        Api::A1111 if server_answers => {
            let lists = A1111Lists::fetch(client).await;
            profiles()
                .flat_map(|profile| lists.findings(profile))
                .collect()
        }
        Api::A1111 => Vec::new(),
    }
}

fn draw_things_findings(profile: &Profile) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(sampler) = &profile.settings.sampler
        && !SAMPLERS.contains(&sampler.as_str())
    {
        found.push(format!(
            "profile {}: Draw Things has no sampler \"{sampler}\" (it has: {})",
            profile.name,
            SAMPLERS.join(", ")
        ));
    }
    for key in profile.settings.extra.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            found.push(format!(
                "profile {}: `{key}` in [extra] is not a Draw Things key: every request would fail with \"Unrecognized keys\"",
                profile.name
            ));
        }
    }
    found
}

/// What an A1111 server says it has; `None` where it does not say.
struct A1111Lists {
    models: Option<Vec<String>>,
    samplers: Option<Vec<String>>,
    loras: Option<Vec<String>>,
}

impl A1111Lists {
    async fn fetch(client: &Client) -> A1111Lists {
        let names = |value: Result<Value, String>, keys: &[&str]| -> Option<Vec<String>> {
            let list = value.ok()?;
            Some(
                list.as_array()?
                    .iter()
                    .flat_map(|item| {
                        keys.iter()
                            .filter_map(|key| item[*key].as_str().map(str::to_owned))
                    })
                    .collect(),
            )
        };
        A1111Lists {
            models: names(
                client.get_json("sdapi/v1/sd-models").await,
                &["title", "model_name"],
            ),
            samplers: names(client.get_json("sdapi/v1/samplers").await, &["name"]),
            loras: names(client.get_json("sdapi/v1/loras").await, &["name"]),
        }
    }

    fn findings(&self, profile: &Profile) -> Vec<String> {
        let settings = &profile.settings;
        let mut found = Vec::new();
        let mut check = |what: &str, name: &str, list: &Option<Vec<String>>| {
            if let Some(list) = list
                && !list
                    .iter()
                    .any(|known| known == name || known.starts_with(&format!("{name} [")))
            {
                found.push(format!(
                    "profile {}: the server has no {what} \"{name}\"",
                    profile.name
                ));
            }
        };
        if let Some(model) = &settings.model {
            check("model", model, &self.models);
        }
        if let Some(sampler) = &settings.sampler {
            check("sampler", sampler, &self.samplers);
        }
        for lora in settings.loras.iter().flatten() {
            check("LoRA", lora_name(&lora.file), &self.loras);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Lora, Settings};

    fn profile(settings: Settings) -> Profile {
        Profile {
            name: "p".into(),
            file: None,
            settings,
            servers: None,
        }
    }

    #[test]
    fn draw_things_flags_unknown_samplers_and_extra_keys() {
        let mut settings = Settings {
            sampler: Some("Euler Ancestral".into()),
            ..Settings::default()
        };
        settings.extra.insert("sharpness".into(), Value::from(2));
        settings.extra.insert("hr_scale".into(), Value::from(2));
        let found = draw_things_findings(&profile(settings));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("no sampler \"Euler Ancestral\""));
        assert!(found[1].contains("`hr_scale`"));
        let good = Settings {
            sampler: Some("LCM".into()),
            ..Settings::default()
        };
        assert!(draw_things_findings(&profile(good)).is_empty());
    }

    #[test]
    fn a1111_flags_what_its_lists_lack() {
        let lists = A1111Lists {
            models: Some(vec!["sdxl.safetensors [31e35c80fc]".into(), "sdxl".into()]),
            samplers: Some(vec!["Euler a".into()]),
            loras: None,
        };
        let settings = Settings {
            model: Some("sdxl.safetensors".into()),
            sampler: Some("LCM".into()),
            loras: Some(vec![Lora {
                file: "x.safetensors".into(),
                weight: 1.0,
            }]),
            ..Settings::default()
        };
        assert_eq!(
            lists.findings(&profile(settings)),
            ["profile p: the server has no sampler \"LCM\""]
        );
    }
}
