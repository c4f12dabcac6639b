//! A profile's ComfyUI workflow (`workflow = "x.json"` beside the profile, in ComfyUI's API
//! format: Workflow > Export (API)): the file read and parsed (a broken one is a broken
//! profile, with the line and column), and where each profile key goes in it — the
//! picture into the `LoadImage` node (the one titled `drawdrop` when there are several),
//! `prompt` / `negative_prompt` into the text of the `CLIPTextEncode` feeding the
//! `KSampler`'s positive / negative input, `seed`, `steps`, `guidance_scale` (cfg), `sampler`
//! (sampler_name) and `strength` (denoise) into the `KSampler`, `model` into
//! `CheckpointLoaderSimple`'s ckpt_name. Results are what its `SaveImage` nodes save.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ConfigError, Settings};

/// The title that picks one node among several of a kind.
pub const DRAWDROP_TITLE: &str = "drawdrop";
/// The node the picture goes to.
pub const IMAGE_NODE: &str = "LoadImage";
/// The nodes whose images are the results.
pub const OUTPUT_NODE: &str = "SaveImage";
const SAMPLER_NODE: &str = "KSampler";
const TEXT_NODE: &str = "CLIPTextEncode";
const CHECKPOINT_NODE: &str = "CheckpointLoaderSimple";

/// A workflow in ComfyUI's API format: node id -> `{"class_type", "inputs", "_meta"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// The file it was read from (absolute when the profile's was).
    pub file: PathBuf,
    pub graph: Arc<Map<String, Value>>,
}

/// Where a value goes: node id and input name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub node: String,
    pub input: String,
}

impl Workflow {
    /// Reads `name` (relative to `beside`, the profile's folder). Errors name the workflow
    /// file, with the line and column of a JSON error.
    pub fn read(name: &str, beside: &Path) -> Result<Workflow, ConfigError> {
        let file = beside.join(name);
        let text = match super::files::read_text(&file)? {
            Some(text) => text,
            None => {
                return Err(super::diagnostic::error_in_file(
                    &file,
                    "the profile's workflow file is missing: export it from ComfyUI with \
                     Workflow > Export (API) and save it beside the profile",
                ));
            }
        };
        Workflow::parse(&text, &file)
    }

    /// A workflow's JSON text; `file` is named in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Workflow, ConfigError> {
        let error = |position, message: String| ConfigError {
            file: file.to_path_buf(),
            position,
            message,
            more: Vec::new(),
        };
        let value: Value = serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line").next().unwrap_or(&message);
            error(
                Some((e.line(), e.column())),
                format!("not valid JSON: {message}"),
            )
        })?;
        let Value::Object(graph) = value else {
            return Err(error(
                None,
                "a workflow in ComfyUI's API format is a JSON object of nodes".to_owned(),
            ));
        };
        if graph.contains_key("nodes") && graph.contains_key("links") {
            return Err(error(
                None,
                "this is ComfyUI's workflow format for its editor, not the API format: \
                 export it with Workflow > Export (API)"
                    .to_owned(),
            ));
        }
        if graph.is_empty() {
            return Err(error(None, "the workflow has no nodes".to_owned()));
        }
        for (id, node) in &graph {
            let class = node.get("class_type").and_then(Value::as_str);
            let inputs = node.get("inputs").map(Value::is_object);
            if class.is_none() || inputs != Some(true) {
                return Err(error(
                    None,
                    format!(
                        "node {id} is not a node of ComfyUI's API format (it needs \
                         \"class_type\" and \"inputs\"): export with Workflow > Export (API)"
                    ),
                ));
            }
        }
        Ok(Workflow {
            file: file.to_path_buf(),
            graph: Arc::new(graph),
        })
    }

    /// The file's name, for messages and `jobs.jsonl`.
    pub fn name(&self) -> String {
        self.file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    /// A node's type.
    pub fn class(&self, id: &str) -> Option<&str> {
        self.graph.get(id)?.get("class_type")?.as_str()
    }

    /// A node's title (`_meta.title`), if it has one.
    pub fn title(&self, id: &str) -> Option<&str> {
        self.graph.get(id)?.get("_meta")?.get("title")?.as_str()
    }

    /// A node as messages name it: `node 6 (CLIPTextEncode, "Positive")`.
    pub fn describe(&self, id: &str) -> String {
        let class = self.class(id).unwrap_or("?");
        match self.title(id).filter(|title| *title != class) {
            Some(title) => format!("node {id} ({class}, \"{title}\")"),
            None => format!("node {id} ({class})"),
        }
    }

    /// The ids of the nodes of type `class`, in id order (numbers by value).
    pub fn nodes_of(&self, class: &str) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .graph
            .keys()
            .map(String::as_str)
            .filter(|id| self.class(id) == Some(class))
            .collect();
        ids.sort_by(|a, b| by_id(a, b));
        ids
    }

    /// The one node of type `class`: the only one, or the one titled `drawdrop`.
    fn the_node(&self, class: &str) -> Result<&str, String> {
        let ids = self.nodes_of(class);
        match ids.as_slice() {
            [] => Err(format!("{} has no {class} node", self.name())),
            [one] => Ok(one),
            several => {
                let titled: Vec<&str> = several
                    .iter()
                    .copied()
                    .filter(|id| {
                        self.title(id)
                            .is_some_and(|t| t.trim().eq_ignore_ascii_case(DRAWDROP_TITLE))
                    })
                    .collect();
                match titled.as_slice() {
                    [one] => Ok(one),
                    _ => Err(format!(
                        "{} has {} {class} nodes ({}): title the one drawdrop should use \
                         \"{DRAWDROP_TITLE}\"",
                        self.name(),
                        several.len(),
                        several.join(", ")
                    )),
                }
            }
        }
    }

    /// The `LoadImage` node the picture goes to.
    pub fn image_node(&self) -> Result<&str, String> {
        self.the_node(IMAGE_NODE)
            .map_err(|why| format!("{why}: drawdrop gives the picture to a LoadImage node"))
    }

    /// The `SaveImage` nodes, in id order: their images are the results, numbered so.
    pub fn output_nodes(&self) -> Vec<&str> {
        self.nodes_of(OUTPUT_NODE)
    }

    /// The node a link input (`["6", 0]`) of node `id` comes from.
    fn linked(&self, id: &str, input: &str) -> Option<&str> {
        let link = self.graph.get(id)?.get("inputs")?.get(input)?;
        link.as_array()?.first()?.as_str()
    }

    /// Where profile key `key` goes; `Err`: why it has nowhere to go.
    pub fn spot(&self, key: &str) -> Result<Spot, String> {
        let at = |node: &str, input: &str| Spot {
            node: node.to_owned(),
            input: input.to_owned(),
        };
        let sampler = || {
            self.the_node(SAMPLER_NODE)
                .map_err(|why| format!("`{key}` has nowhere to go: {why}, which takes it"))
        };
        match key {
            "seed" => Ok(at(sampler()?, "seed")),
            "steps" => Ok(at(sampler()?, "steps")),
            "guidance_scale" => Ok(at(sampler()?, "cfg")),
            "sampler" => Ok(at(sampler()?, "sampler_name")),
            "strength" => Ok(at(sampler()?, "denoise")),
            "prompt" | "negative_prompt" => {
                let sampler = sampler()?;
                let side = if key == "prompt" {
                    "positive"
                } else {
                    "negative"
                };
                match self.linked(sampler, side) {
                    Some(text) if self.class(text) == Some(TEXT_NODE) => Ok(at(text, "text")),
                    Some(other) => Err(format!(
                        "`{key}` has nowhere to go: the {side} input of {} comes from {}, \
                         not from a {TEXT_NODE}; set its text with [comfyui.set]",
                        self.describe(sampler),
                        self.describe(other)
                    )),
                    None => Err(format!(
                        "`{key}` has nowhere to go: {} has no {side} input linked",
                        self.describe(sampler)
                    )),
                }
            }
            "model" => self
                .the_node(CHECKPOINT_NODE)
                .map(|node| at(node, "ckpt_name"))
                .map_err(|why| format!("`model` has nowhere to go: {why}, which takes it")),
            _ => Err(format!(
                "`{key}` has nowhere to go in a ComfyUI workflow: set the node input it \
                 stands for with [comfyui.set] (\"<node id>.<input>\" = value)"
            )),
        }
    }

    /// Every profile key `settings` sets, with where it goes in this workflow, and the keys
    /// that have nowhere to go with why. `width`, `height` and `max_megapixels` size the
    /// picture before it is sent, so they go nowhere in the graph.
    pub fn placed(&self, settings: &Settings) -> (Vec<(&'static str, Spot, Value)>, Vec<String>) {
        let mut placed = Vec::new();
        let mut unplaced = Vec::new();
        let mut place = |key: &'static str, value: Option<Value>| {
            if let Some(value) = value {
                match self.spot(key) {
                    Ok(spot) => placed.push((key, spot, value)),
                    Err(why) => unplaced.push(why),
                }
            }
        };
        place("prompt", settings.prompt.clone().map(Value::from));
        place(
            "negative_prompt",
            settings.negative_prompt.clone().map(Value::from),
        );
        place("steps", settings.steps.map(Value::from));
        place("guidance_scale", settings.guidance_scale.map(Value::from));
        place("sampler", settings.sampler.clone().map(Value::from));
        place("strength", settings.strength.map(Value::from));
        place("model", settings.model.clone().map(Value::from));
        place("seed", settings.seed.filter(|&s| s >= 0).map(Value::from));
        if settings.batch_count.is_some()
            && let Err(why) = self.spot("batch_count")
        {
            unplaced.push(why);
        }
        if settings.loras.as_ref().is_some_and(|l| !l.is_empty()) {
            unplaced.push(format!(
                "`loras` have nowhere to go in a ComfyUI workflow: put LoraLoader nodes in \
                 {} and set them with [comfyui.set]",
                self.name()
            ));
        }
        if let Some(key) = settings.extra.keys().next() {
            unplaced.push(format!(
                "[extra] (`{key}`) has nowhere to go in a ComfyUI workflow: use [comfyui.set] \
                 (\"<node id>.<input>\" = value)"
            ));
        }
        (placed, unplaced)
    }

    /// Why `settings` cannot run in this workflow: its keys with nowhere to go, and its
    /// `[comfyui.set]` keys that name no node. Empty when they can.
    pub fn problems(&self, settings: &Settings) -> Vec<String> {
        let mut problems = self.placed(settings).1;
        problems.extend(
            settings
                .comfyui_set
                .keys()
                .filter_map(|key| self.set_spot(key).err()),
        );
        problems
    }

    /// Where a `[comfyui.set]` key (`"<node id>.<input>"`) goes.
    pub fn set_spot(&self, key: &str) -> Result<Spot, String> {
        let Some((node, input)) = key
            .rsplit_once('.')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
        else {
            return Err(format!(
                "[comfyui.set] key \"{key}\" is not \"<node id>.<input>\" (such as \"6.text\")"
            ));
        };
        if !self.graph.contains_key(node) {
            return Err(format!(
                "[comfyui.set] \"{key}\": {} has no node {node} (its nodes: {})",
                self.name(),
                self.node_list()
            ));
        }
        Ok(Spot {
            node: node.to_owned(),
            input: input.to_owned(),
        })
    }

    /// `3 (KSampler), 6 (CLIPTextEncode) ...`, for messages.
    fn node_list(&self) -> String {
        let mut ids: Vec<&String> = self.graph.keys().collect();
        ids.sort_by(|a, b| by_id(a, b));
        ids.iter()
            .map(|id| format!("{id} ({})", self.class(id).unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What makes this workflow unusable for drawdrop whatever the profile says: no node to
    /// take the picture, or none to save a result.
    pub fn shape_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(why) = self.image_node() {
            problems.push(why);
        }
        if self.output_nodes().is_empty() {
            problems.push(format!(
                "{} has no {OUTPUT_NODE} node, so nothing would come back: end it with one",
                self.name()
            ));
        }
        problems
    }
}

/// Node ids in order: numbers by value (`2` before `10`), others after, by text.
fn by_id(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// `[comfyui.set]`: "<node id>.<input>" -> value.
pub type NodeInputs = BTreeMap<String, Value>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A txt2img-style graph: checkpoint, two prompts, a sampler, a picture in, one out.
    pub(crate) fn txt2img() -> Value {
        json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 8.0,
                "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                "latent_image": ["12", 0]}, "_meta": {"title": "KSampler"}},
            "4": {"class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]},
                "_meta": {"title": "Positive"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0],
                "filename_prefix": "ComfyUI"}},
            "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
            "12": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        })
    }

    fn workflow(value: Value) -> Workflow {
        Workflow::parse(&value.to_string(), Path::new("/p/w.json")).unwrap()
    }

    #[test]
    fn keys_go_where_a_comfyui_user_expects_them() {
        let w = workflow(txt2img());
        let spot = |key| {
            let Spot { node, input } = w.spot(key).unwrap();
            format!("{node}.{input}")
        };
        assert_eq!(spot("prompt"), "6.text");
        assert_eq!(spot("negative_prompt"), "7.text");
        assert_eq!(spot("seed"), "3.seed");
        assert_eq!(spot("steps"), "3.steps");
        assert_eq!(spot("guidance_scale"), "3.cfg");
        assert_eq!(spot("sampler"), "3.sampler_name");
        assert_eq!(spot("strength"), "3.denoise");
        assert_eq!(spot("model"), "4.ckpt_name");
        assert_eq!(w.image_node().unwrap(), "10");
        assert_eq!(w.output_nodes(), ["9"]);
        assert_eq!(w.describe("6"), "node 6 (CLIPTextEncode, \"Positive\")");
        assert_eq!(w.describe("3"), "node 3 (KSampler)");
    }

    #[test]
    fn a_key_with_nowhere_to_go_says_why() {
        let w = workflow(json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}}
        }));
        let settings = Settings {
            prompt: Some("x".into()),
            batch_count: Some(2),
            comfyui_set: NodeInputs::from([("9.text".into(), json!("y"))]),
            ..Settings::default()
        };
        assert!(w.placed(&settings).0.is_empty());
        let unplaced = w.problems(&settings);
        assert_eq!(unplaced.len(), 3, "{unplaced:?}");
        assert!(
            unplaced[0].contains("w.json has no KSampler node"),
            "{unplaced:?}"
        );
        assert!(unplaced[1].contains("`batch_count` has nowhere to go"));
        assert!(unplaced[2].contains("has no node 9 (its nodes: 1 (LoadImage)"));
        assert!(w.shape_problems().is_empty());
    }

    #[test]
    fn several_nodes_of_a_kind_need_a_title() {
        let mut graph = txt2img();
        graph["11"] = json!({"class_type": "LoadImage", "inputs": {"image": "b.png"}});
        let w = workflow(graph.clone());
        assert!(
            w.image_node()
                .unwrap_err()
                .contains("title the one drawdrop")
        );
        graph["11"]["_meta"] = json!({"title": "drawdrop"});
        assert_eq!(workflow(graph).image_node().unwrap(), "11");
    }

    #[test]
    fn broken_files_name_the_spot() {
        let error = Workflow::parse("{\n  \"3\": {,\n}", Path::new("/p/w.json")).unwrap_err();
        assert_eq!(error.position, Some((2, 9)));
        assert!(error.message.starts_with("not valid JSON"), "{error}");
        let ui = json!({"nodes": [], "links": [], "version": 0.4}).to_string();
        let error = Workflow::parse(&ui, Path::new("/p/w.json")).unwrap_err();
        assert!(error.message.contains("Export (API)"), "{error}");
        let error = Workflow::parse("{\"1\": {\"inputs\": {}}}", Path::new("/p/w.json"));
        assert!(error.unwrap_err().message.contains("class_type"));
        let no_output = workflow(json!({"1": {"class_type": "LoadImage", "inputs": {}}}));
        assert!(no_output.shape_problems()[0].contains("no SaveImage node"));
    }
}
