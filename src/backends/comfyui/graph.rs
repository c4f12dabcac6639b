//! One job's graph: the profile's workflow with the job's settings put into its nodes (where
//! `config::workflow` says each key goes), the seed into the `KSampler`, then `[comfyui.set]`
//! laid over it with `{prompt}` replaced by the job's prompt; and the upload's name put into
//! the `LoadImage` node when it is known. A key with nowhere to go refuses the job.

use crate::config::workflow::Spot;
use crate::config::{Settings, Workflow};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The placeholder in `[comfyui.set]` values replaced by the job's prompt.
pub(crate) const PROMPT_PLACEHOLDER: &str = "{prompt}";

/// The job's graph and the settings it carries (for `jobs.jsonl`, in the profile's names).
pub(crate) fn fill(
    workflow: &Workflow,
    settings: &Settings,
    seed: u32,
) -> Result<(Workflow, Map<String, Value>), String> {
    let problems = workflow.problems(settings);
    if !problems.is_empty() {
        return Err(format!(
            "the settings do not fit the workflow {}: {}",
            workflow.name(),
            problems.join("; ")
        ));
    }
    let mut graph = (*workflow.graph).clone();
    let mut sent = Map::new();
    sent.insert("workflow".to_owned(), Value::from(workflow.name()));
    for (key, spot, value) in workflow.placed(settings).0 {
        put(&mut graph, &spot, value.clone());
        sent.insert(key.to_owned(), value);
    }
    // The seed is always drawdrop's (picked when the profile leaves it), so the result
    // records the one that made it — when the workflow has a sampler to take it.
    if let Ok(spot) = workflow.spot("seed") {
        put(&mut graph, &spot, Value::from(seed));
        sent.insert("seed".to_owned(), Value::from(seed));
    }
    let prompt = settings.prompt.as_deref().unwrap_or_default();
    let mut set = Map::new();
    for (key, value) in &settings.comfyui_set {
        let value = match value {
            Value::String(text) => Value::from(text.replace(PROMPT_PLACEHOLDER, prompt)),
            other => other.clone(),
        };
        let spot = workflow.set_spot(key)?;
        put(&mut graph, &spot, value.clone());
        set.insert(key.clone(), value);
    }
    if !set.is_empty() {
        sent.insert("comfyui.set".to_owned(), Value::Object(set));
    }
    let filled = Workflow {
        file: workflow.file.clone(),
        graph: Arc::new(graph),
    };
    Ok((filled, sent))
}

/// The graph with the uploaded picture's name in its `LoadImage` node.
pub(crate) fn with_picture(workflow: &Workflow, uploaded: &str) -> Result<Value, String> {
    let node = workflow.image_node()?;
    let mut graph = (*workflow.graph).clone();
    put(
        &mut graph,
        &Spot {
            node: node.to_owned(),
            input: "image".to_owned(),
        },
        Value::from(uploaded),
    );
    Ok(Value::Object(graph))
}

/// Sets one node input (the node exists: spots come from the workflow).
fn put(graph: &mut Map<String, Value>, spot: &Spot, value: Value) {
    if let Some(Value::Object(inputs)) = graph
        .get_mut(&spot.node)
        .and_then(|node| node.get_mut("inputs"))
    {
        inputs.insert(spot.input.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::workflow::tests::txt2img;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn the_profile_keys_and_the_set_land_in_their_nodes() {
        let workflow = Workflow::parse(&txt2img().to_string(), Path::new("/p/w.json")).unwrap();
        let settings = Settings {
            prompt: Some("a cat".into()),
            negative_prompt: Some("blurry".into()),
            steps: Some(4),
            strength: Some(0.6),
            guidance_scale: Some(7.0),
            sampler: Some("dpmpp_2m".into()),
            model: Some("sd_xl_base_1.0.safetensors".into()),
            comfyui_set: [
                ("3.scheduler".into(), json!("karras")),
                ("6.text".into(), json!("{prompt}, detailed")),
            ]
            .into_iter()
            .collect(),
            ..Settings::default()
        };
        let (filled, sent) = fill(&workflow, &settings, 42).unwrap();
        let graph = with_picture(&filled, "drawdrop-1.png").unwrap();
        assert_eq!(graph["3"]["inputs"]["seed"], 42);
        assert_eq!(graph["3"]["inputs"]["steps"], 4);
        assert_eq!(graph["3"]["inputs"]["cfg"], 7.0);
        assert_eq!(graph["3"]["inputs"]["denoise"], 0.6);
        assert_eq!(graph["3"]["inputs"]["sampler_name"], "dpmpp_2m");
        assert_eq!(graph["3"]["inputs"]["scheduler"], "karras");
        assert_eq!(graph["6"]["inputs"]["text"], "a cat, detailed");
        assert_eq!(graph["7"]["inputs"]["text"], "blurry");
        assert_eq!(
            graph["4"]["inputs"]["ckpt_name"],
            "sd_xl_base_1.0.safetensors"
        );
        assert_eq!(graph["10"]["inputs"]["image"], "drawdrop-1.png");
        assert_eq!(graph["3"]["inputs"]["positive"], json!(["6", 0]));
        assert_eq!(sent["seed"], 42);
        assert_eq!(sent["workflow"], "w.json");
        assert_eq!(sent["comfyui.set"]["6.text"], "a cat, detailed");
        // The profile's workflow itself is untouched.
        assert_eq!(workflow.graph["3"]["inputs"]["seed"], 1);
    }

    #[test]
    fn a_key_with_nowhere_to_go_refuses_the_job() {
        let graph = json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}
        });
        let workflow = Workflow::parse(&graph.to_string(), Path::new("/p/w.json")).unwrap();
        let settings = Settings {
            steps: Some(4),
            ..Settings::default()
        };
        let error = fill(&workflow, &settings, 1).unwrap_err();
        assert!(error.contains("`steps` has nowhere to go"), "{error}");
        let (filled, sent) = fill(&workflow, &Settings::default(), 1).unwrap();
        assert_eq!(sent.get("seed"), None);
        assert_eq!(
            with_picture(&filled, "x.png").unwrap()["1"]["inputs"]["image"],
            "x.png"
        );
    }
}
