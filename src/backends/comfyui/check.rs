//! A profile's workflow checked against what the server runs (`GET /object_info`), for
//! `drawdrop check`: every node type must exist, every required input be given (a value or a
//! link), a value chosen from a list (checkpoint names, samplers) be one of the server's.
//! Each problem names the node by id, type and title.

use crate::config::Settings;
use serde_json::Value;

/// The list of an enum input's spec: `[["a", "b"], {...}]`, or the newer `["COMBO",
/// {"options": [...]}]`.
fn list_of(spec: &[Value]) -> Option<Vec<String>> {
    let values = match spec.first()? {
        Value::Array(values) => values,
        Value::String(kind) if kind == "COMBO" => spec.get(1)?["options"].as_array()?,
        _ => return None,
    };
    Some(
        values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
    )
}

/// What keeps `settings`' workflow (with its keys put in) from running on a server that
/// runs `info`'s node types.
pub(crate) fn problems(settings: &Settings, info: &Value) -> Vec<String> {
    let Some(workflow) = &settings.workflow else {
        return Vec::new();
    };
    let graph = match super::graph::fill(workflow, settings, 0) {
        Ok((filled, _)) => filled,
        Err(why) => return vec![why],
    };
    let mut problems = Vec::new();
    let image_node = graph.image_node().ok().map(str::to_owned);
    let mut ids: Vec<&String> = graph.graph.keys().collect();
    ids.sort_by_key(|id| {
        (
            id.parse::<u64>().unwrap_or(u64::MAX),
            id.as_str().to_owned(),
        )
    });
    for id in ids {
        let class = graph.class(id).unwrap_or_default();
        let Some(spec) = info.get(class).filter(|spec| spec.is_object()) else {
            problems.push(format!(
                "{}: the server has no node type {class} (a custom node not installed there?)",
                graph.describe(id)
            ));
            continue;
        };
        let inputs = &graph.graph[id.as_str()]["inputs"];
        let required = spec["input"]["required"].as_object();
        for (name, input_spec) in required.into_iter().flatten() {
            let value = &inputs[name.as_str()];
            if value.is_null() {
                problems.push(format!(
                    "{}: the required input `{name}` is missing",
                    graph.describe(id)
                ));
                continue;
            }
            // drawdrop puts the uploaded picture's name there.
            if image_node.as_deref() == Some(id.as_str()) && name == "image" {
                continue;
            }
            let Some(allowed) = input_spec.as_array().and_then(|spec| list_of(spec)) else {
                continue;
            };
            if let Some(text) = value.as_str()
                && !allowed.iter().any(|choice| choice == text)
            {
                problems.push(format!(
                    "{}: `{name}` = \"{text}\" is not one the server has (it has: {})",
                    graph.describe(id),
                    shortened(&allowed)
                ));
            }
        }
    }
    problems
}

/// A list for a message, cut after 12 entries.
fn shortened(list: &[String]) -> String {
    let mut text = list.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
    if list.len() > 12 {
        text.push_str(&format!(" ... ({} in all)", list.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Workflow;
    use crate::config::workflow::tests::txt2img;
    use serde_json::json;
    use std::path::Path;

    fn info() -> Value {
        let text = json!(["STRING", {"multiline": true}]);
        json!({
            "KSampler": {"input": {"required": {"model": ["MODEL"], "seed": ["INT", {}],
                "steps": ["INT", {}], "cfg": ["FLOAT", {}],
                "sampler_name": [["euler", "dpmpp_2m"], {}], "scheduler": [["normal", "karras"]],
                "positive": ["CONDITIONING"], "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"], "denoise": ["FLOAT", {}]}}},
            "CheckpointLoaderSimple": {"input": {"required": {
                "ckpt_name": ["COMBO", {"options": ["sd_xl_base_1.0.safetensors"]}]}}},
            "CLIPTextEncode": {"input": {"required": {"text": text, "clip": ["CLIP"]}}},
            "VAEDecode": {"input": {"required": {"samples": ["LATENT"], "vae": ["VAE"]}}},
            "VAEEncode": {"input": {"required": {"pixels": ["IMAGE"], "vae": ["VAE"]}}},
            "SaveImage": {"input": {"required": {"images": ["IMAGE"],
                "filename_prefix": ["STRING", {}]}}},
            "LoadImage": {"input": {"required": {"image": [["example.png"], {}]}}}
        })
    }

    fn settings(graph: Value, model: Option<&str>) -> Settings {
        Settings {
            workflow: Some(Workflow::parse(&graph.to_string(), Path::new("/p/w.json")).unwrap()),
            model: model.map(str::to_owned),
            ..Settings::default()
        }
    }

    #[test]
    fn a_workflow_the_server_can_run_has_no_problem() {
        let settings = settings(txt2img(), Some("sd_xl_base_1.0.safetensors"));
        assert_eq!(problems(&settings, &info()), Vec::<String>::new());
        let mut settings = settings;
        settings.sampler = Some("DPM++ 2M Karras".into());
        assert_eq!(
            problems(&settings, &info()),
            [
                "node 3 (KSampler): `sampler_name` = \"DPM++ 2M Karras\" is not one the server \
              has (it has: euler, dpmpp_2m)"
            ]
        );
    }

    #[test]
    fn each_problem_names_its_node() {
        let mut graph = txt2img();
        graph["6"]["inputs"].as_object_mut().unwrap().remove("clip");
        graph["13"] = json!({"class_type": "FancyUpscaler", "inputs": {},
            "_meta": {"title": "Upscale"}});
        let found = problems(&settings(graph, None), &info());
        assert_eq!(
            found,
            [
                "node 4 (CheckpointLoaderSimple): `ckpt_name` = \"v1-5-pruned-emaonly.safetensors\" \
                 is not one the server has (it has: sd_xl_base_1.0.safetensors)",
                "node 6 (CLIPTextEncode, \"Positive\"): the required input `clip` is missing",
                "node 13 (FancyUpscaler, \"Upscale\"): the server has no node type FancyUpscaler \
                 (a custom node not installed there?)",
            ]
        );
    }
}
