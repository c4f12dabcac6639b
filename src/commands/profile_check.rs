//! Names in profiles that a server would refuse, from what its backend says it offers: a
//! sampler or request key Draw Things does not know, or (when an A1111 server lists them) a
//! model, sampler or LoRA it does not have.

use crate::backends::{Backend, Offer};
use crate::config::{Config, Profile};
use crate::image::parameters::lora_name;

/// One finding per line, each naming the profile, for the profiles server `index` takes;
/// empty when nothing is wrong. `answers`: the server answered its probe.
pub(super) async fn findings(
    config: &Config,
    index: usize,
    backend: &dyn Backend,
    answers: bool,
) -> Vec<String> {
    let offer = backend.offer(answers).await;
    config
        .profiles
        .values()
        .filter(|profile| crate::pipeline::pool::accepts(config, index, profile))
        .flat_map(|profile| {
            let own = backend
                .check_settings(&profile.settings, &offer)
                .into_iter()
                .map(|problem| format!("profile {}: {problem}", profile.name));
            profile_findings(&offer, backend.product(), profile)
                .into_iter()
                .chain(own)
        })
        .collect()
}

/// In a pool of servers of both kinds (those that run workflows and those that take the
/// profile's keys), which profiles server `index` takes; `None` when every server takes any.
pub(super) fn takes(config: &Config, index: usize) -> Option<String> {
    let servers = &config.servers;
    let runs = |workflows: bool| servers.iter().any(|s| s.api.runs_workflows() == workflows);
    if !(runs(true) && runs(false)) {
        return None;
    }
    let server = servers.get(index)?;
    let names: Vec<&str> = config
        .profiles
        .values()
        .filter(|profile| crate::pipeline::pool::accepts(config, index, profile))
        .map(|profile| profile.name.as_str())
        .collect();
    let which = if server.api.runs_workflows() {
        "the profiles with a workflow"
    } else {
        "the profiles without a workflow"
    };
    Some(format!(
        "{} takes {which}: {}",
        server.name,
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ))
}

/// What in `profile` the server of kind `product` does not offer.
fn profile_findings(offer: &Offer, product: &str, profile: &Profile) -> Vec<String> {
    let settings = &profile.settings;
    let mut found = Vec::new();
    let mut check = |what: &str, name: &str, list: &Option<Vec<String>>| {
        let Some(list) = list else { return };
        if list
            .iter()
            .any(|known| known == name || known.starts_with(&format!("{name} [")))
        {
            return;
        }
        found.push(if offer.known_by_kind {
            format!(
                "profile {}: {product} has no {what} \"{name}\" (it has: {})",
                profile.name,
                list.join(", ")
            )
        } else {
            format!(
                "profile {}: the server has no {what} \"{name}\"",
                profile.name
            )
        });
    };
    if let Some(model) = &settings.model {
        check("model", model, &offer.models);
    }
    if let Some(sampler) = &settings.sampler {
        check("sampler", sampler, &offer.samplers);
    }
    for lora in settings.loras.iter().flatten() {
        check("LoRA", lora_name(&lora.file), &offer.loras);
    }
    if let Some((keys, answer)) = &offer.keys {
        for key in settings.extra.keys().filter(|key| !keys.contains(key)) {
            found.push(format!(
                "profile {}: `{key}` in [extra] is not a {product} key: every request would fail with \"{answer}\"",
                profile.name
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::drawthings_http::DrawThingsHttp;
    use crate::config::{Lora, Settings};
    use serde_json::Value;

    fn profile(settings: Settings) -> Profile {
        Profile {
            name: "p".into(),
            file: None,
            settings,
            servers: None,
        }
    }

    #[tokio::test]
    async fn draw_things_flags_unknown_samplers_and_extra_keys() {
        let config = Config::defaults(std::path::Path::new("/c/config.toml"));
        let backend = DrawThingsHttp::new(&config.servers[0]).unwrap();
        let offer = backend.offer(false).await;
        let mut settings = Settings {
            sampler: Some("Euler Ancestral".into()),
            ..Settings::default()
        };
        settings.extra.insert("sharpness".into(), Value::from(2));
        settings.extra.insert("hr_scale".into(), Value::from(2));
        let found = profile_findings(&offer, "Draw Things", &profile(settings));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("Draw Things has no sampler \"Euler Ancestral\" (it has: "));
        assert!(found[1].contains(
            "`hr_scale` in [extra] is not a Draw Things key: every request would fail with \"Unrecognized keys\""
        ));
        let good = Settings {
            sampler: Some("LCM".into()),
            ..Settings::default()
        };
        assert!(profile_findings(&offer, "Draw Things", &profile(good)).is_empty());
    }

    #[test]
    fn a1111_flags_what_its_lists_lack() {
        let offer = Offer {
            models: Some(vec!["sdxl.safetensors [31e35c80fc]".into(), "sdxl".into()]),
            samplers: Some(vec!["Euler a".into()]),
            loras: None,
            keys: None,
            known_by_kind: false,
            catalog: None,
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
            profile_findings(&offer, "the A1111 server", &profile(settings)),
            ["profile p: the server has no sampler \"LCM\""]
        );
    }
}
