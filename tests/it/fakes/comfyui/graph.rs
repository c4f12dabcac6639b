//! A prompt (an API-format graph) before it runs: validation as ComfyUI's `validate_prompt` /
//! `validate_inputs` do it (the same error types, messages, details and `extra_info`, the same
//! value conversions written back into the prompt), the cache signature of each node, and the
//! order nodes run in.
//!
//! Simplified: nodes are visited in the order of their ids as strings, and a node's linked
//! inputs in the order of their names (ComfyUI follows the JSON's order and Python's set
//! order, which is not stable either); a node's errors come in the order its type declares
//! its inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::nodes::{self, Catalog, Definition, Files, Kind};
use super::python;

/// A prompt that passed: the output nodes to run and the errors of the outputs left out.
pub struct Accepted {
    pub outputs: Vec<String>,
    pub node_errors: Value,
}

/// A refusal: `{"error": ..., "node_errors": ...}` with status 400, or a Python exception
/// (aiohttp's 500).
pub enum Refused {
    Invalid { error: Value, node_errors: Value },
    Crash,
}

/// One validation error dict.
fn problem(kind: &str, message: &str, details: String, extra_info: Value) -> Value {
    json!({"type": kind, "message": message, "details": details, "extra_info": extra_info})
}

/// An exception raised while validating (a link to a missing node, a bad slot).
struct Exception {
    kind: &'static str,
    message: String,
}

/// Validates `prompt` in place (converted values are written back), like `validate_prompt`.
pub fn validate(
    prompt: &mut Value,
    catalog: &Catalog,
    files: &dyn Files,
) -> Result<Accepted, Refused> {
    let Some(graph) = prompt.as_object_mut() else {
        return Err(Refused::Crash);
    };
    let mut outputs = Vec::new();
    for (id, node) in graph.iter() {
        let Some(node) = node.as_object() else {
            return Err(Refused::Crash);
        };
        let Some(class) = node.get("class_type") else {
            return Err(invalid(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.".into(),
                format!("Node ID '#{id}'"),
            ));
        };
        let Some(definition) = class.as_str().and_then(|c| nodes::definition(c, catalog)) else {
            return Err(invalid(
                "invalid_prompt",
                format!(
                    "Cannot execute because node {} does not exist.",
                    python::str(class)
                ),
                format!("Node ID '#{id}'"),
            ));
        };
        if definition.output_node {
            outputs.push(id.clone());
        }
    }
    if outputs.is_empty() {
        return Err(invalid(
            "prompt_no_outputs",
            "Prompt has no outputs".into(),
            String::new(),
        ));
    }
    let mut validator = Validator {
        graph,
        catalog,
        files,
        validated: BTreeMap::new(),
    };
    let mut good = Vec::new();
    let mut failed_reasons = Vec::new();
    let mut node_errors = Map::new();
    for output in &outputs {
        let valid = match validator.node(output) {
            Ok(valid) => valid,
            Err(exception) => {
                let reasons = vec![problem(
                    "exception_during_validation",
                    "Exception when validating node",
                    exception.message.clone(),
                    json!({"exception_type": exception.kind, "traceback": traceback()}),
                )];
                validator.validated.insert(output.clone(), (false, reasons));
                false
            }
        };
        if valid {
            good.push(output.clone());
            continue;
        }
        let own = validator.validated.get(output).map(|v| v.1.clone());
        failed_reasons.extend(own.unwrap_or_default());
        for (id, (valid, reasons)) in &validator.validated {
            if *valid || reasons.is_empty() {
                continue;
            }
            let entry = node_errors.entry(id.clone()).or_insert_with(|| {
                json!({
                    "errors": reasons,
                    "dependent_outputs": [],
                    "class_type": validator.graph[id]["class_type"],
                })
            });
            if let Some(list) = entry["dependent_outputs"].as_array_mut() {
                list.push(json!(output));
            }
        }
    }
    if good.is_empty() {
        let details: Vec<String> = failed_reasons
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["message"].as_str().unwrap_or_default(),
                    e["details"].as_str().unwrap_or_default()
                )
            })
            .collect();
        return Err(Refused::Invalid {
            error: problem(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                details.join("\n"),
                json!({}),
            ),
            node_errors: Value::Object(node_errors),
        });
    }
    Ok(Accepted {
        outputs: good,
        node_errors: Value::Object(node_errors),
    })
}

fn invalid(kind: &str, message: String, details: String) -> Refused {
    Refused::Invalid {
        error: problem(kind, &message, details, json!({})),
        node_errors: json!({}),
    }
}

/// A Python traceback as `traceback.format_tb` gives it (a list of frames).
pub fn traceback() -> Value {
    json!([
        "  File \"/ComfyUI/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n",
    ])
}

struct Validator<'a> {
    graph: &'a mut Map<String, Value>,
    catalog: &'a Catalog,
    files: &'a dyn Files,
    /// Node id -> (valid, its own errors).
    validated: BTreeMap<String, (bool, Vec<Value>)>,
}

impl Validator<'_> {
    fn definition(&self, id: &str) -> Option<Definition> {
        let class = self.graph.get(id)?.get("class_type")?.as_str()?;
        nodes::definition(class, self.catalog)
    }

    /// `validate_inputs` for one node (and, through its links, the nodes it depends on).
    fn node(&mut self, id: &str) -> Result<bool, Exception> {
        if let Some((valid, _)) = self.validated.get(id) {
            return Ok(*valid);
        }
        let Some(definition) = self.definition(id) else {
            return Err(Exception {
                kind: "KeyError",
                message: python::string_repr(id),
            });
        };
        let Some(mut inputs) = self.graph[id]
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
        else {
            return Err(Exception {
                kind: "KeyError",
                message: "'inputs'".into(),
            });
        };
        let mut errors = Vec::new();
        let mut valid = true;
        for input in &definition.inputs {
            let name = input.name;
            let Some(given) = inputs.get(name).cloned() else {
                if input.required {
                    errors.push(problem(
                        "required_input_missing",
                        "Required input is missing",
                        name.into(),
                        json!({"input_name": name}),
                    ));
                }
                continue;
            };
            let config = input.config();
            if let Value::Array(link) = &given {
                if link.len() != 2 {
                    errors.push(problem(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name.into(),
                        json!({"input_name": name, "input_config": config, "received_value": given}),
                    ));
                    continue;
                }
                let from = self.linked_type(&link[0], &link[1])?;
                let (from_id, received_type) = from;
                let accepts = match &input.kind {
                    Kind::Type(expected) => {
                        *expected == received_type || *expected == "*" || received_type == "*"
                    }
                    Kind::Combo(_) => received_type == "*",
                };
                if !accepts {
                    errors.push(problem(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        format!(
                            "{name}, received_type({received_type}) mismatch input_type({})",
                            python::str(&input.kind.to_json())
                        ),
                        json!({"input_name": name, "input_config": config, "received_type": received_type, "linked_node": given}),
                    ));
                    continue;
                }
                match self.node(&from_id) {
                    Ok(true) => {}
                    Ok(false) => valid = false,
                    Err(exception) => {
                        valid = false;
                        let reasons = vec![problem(
                            "exception_during_inner_validation",
                            "Exception when validating inner node",
                            exception.message.clone(),
                            json!({
                                "input_name": name,
                                "input_config": config,
                                "exception_message": exception.message,
                                "exception_type": exception.kind,
                                "traceback": traceback(),
                                "linked_node": given,
                            }),
                        )];
                        self.validated.insert(from_id, (false, reasons));
                    }
                }
                continue;
            }
            let mut value = given;
            if let Some(inner) = value.as_object().and_then(|o| o.get("__value__")) {
                value = inner.clone();
                inputs.insert(name.into(), value.clone());
            }
            let converted = match &input.kind {
                Kind::Type("INT") => Some(python::to_int(&value)),
                Kind::Type("FLOAT") => Some(python::to_float(&value)),
                Kind::Type("STRING") => Some(Ok(json!(python::str(&value)))),
                Kind::Type("BOOLEAN") => Some(Ok(python::to_bool(&value))),
                _ => None,
            };
            if let Some(converted) = converted {
                match converted {
                    Ok(v) => {
                        value = v;
                        inputs.insert(name.into(), value.clone());
                    }
                    Err(message) => {
                        let Kind::Type(type_name) = &input.kind else {
                            continue;
                        };
                        errors.push(problem(
                            "invalid_input_type",
                            &format!("Failed to convert an input value to a {type_name} value"),
                            format!("{name}, {}, {message}", python::str(&value)),
                            json!({"input_name": name, "input_config": config, "received_value": value, "exception_message": message}),
                        ));
                        continue;
                    }
                }
            }
            // LoadImage's `image` is checked by its VALIDATE_INPUTS instead.
            if definition.validates_image && name == "image" {
                continue;
            }
            if let Some(error) = bounds_error(input, &value, &config) {
                errors.push(error);
                continue;
            }
            if let Kind::Combo(options) = &input.kind
                && !options.iter().any(|o| value.as_str() == Some(o))
            {
                let (list_info, input_config) = if options.len() > 20 {
                    (format!("(list of length {})", options.len()), Value::Null)
                } else {
                    (python::repr(&json!(options)), config)
                };
                errors.push(problem(
                    "value_not_in_list",
                    "Value not in list",
                    format!("{name}: '{}' not in {list_info}", python::str(&value)),
                    json!({"input_name": name, "input_config": input_config, "received_value": value}),
                ));
                continue;
            }
        }
        if definition.validates_image
            && let Some(image) = inputs.get("image").and_then(Value::as_str)
        {
            let (folder, subfolder, name) = nodes::annotated_path(image);
            if self.files.read(folder, &subfolder, &name).is_none() {
                errors.push(problem(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    format!("image - Invalid image file: {image}"),
                    json!({"input_name": "image"}),
                ));
            }
        }
        if let Some(node) = self.graph.get_mut(id) {
            node["inputs"] = Value::Object(inputs);
        }
        let ok = errors.is_empty() && valid;
        self.validated.insert(id.to_string(), (ok, errors));
        Ok(ok)
    }

    /// The node a link points at and the type of that output slot (`RETURN_TYPES[slot]`).
    fn linked_type(&self, node: &Value, slot: &Value) -> Result<(String, String), Exception> {
        let missing = || Exception {
            kind: "KeyError",
            message: python::repr(node),
        };
        let id = node.as_str().ok_or_else(missing)?;
        let definition = self.definition(id).ok_or_else(missing)?;
        let Some(index) = slot.as_i64() else {
            return Err(Exception {
                kind: "TypeError",
                message: format!(
                    "tuple indices must be integers or slices, not {}",
                    match slot {
                        Value::String(_) => "str",
                        Value::Number(_) => "float",
                        Value::Null => "NoneType",
                        _ => "list",
                    }
                ),
            });
        };
        let count = definition.outputs.len() as i64;
        let index = if index < 0 { index + count } else { index };
        match definition
            .outputs
            .get(usize::try_from(index).unwrap_or(usize::MAX))
        {
            Some(kind) => Ok((id.to_string(), kind.to_string())),
            None => Err(Exception {
                kind: "IndexError",
                message: "tuple index out of range".into(),
            }),
        }
    }
}

/// `min`/`max` of a number input.
fn bounds_error(input: &nodes::Input, value: &Value, config: &Value) -> Option<Value> {
    let number = value.as_f64()?;
    for (key, smaller) in [("min", true), ("max", false)] {
        let Some(bound) = input.bound(key) else {
            continue;
        };
        let limit = bound.as_f64()?;
        let breaks = if smaller {
            number < limit
        } else {
            number > limit
        };
        if breaks {
            let (kind, words) = if smaller {
                ("value_smaller_than_min", "smaller than min of")
            } else {
                ("value_bigger_than_max", "bigger than max of")
            };
            return Some(problem(
                kind,
                &format!(
                    "Value {} {words} {}",
                    python::str(value),
                    python::str(bound)
                ),
                input.name.into(),
                json!({"input_name": input.name, "input_config": config, "received_value": value}),
            ));
        }
    }
    None
}

/// Whether an input value is a link `[node id, slot]`.
pub fn as_link(value: &Value) -> Option<(&str, usize)> {
    let link = value.as_array()?;
    if link.len() != 2 {
        return None;
    }
    Some((link[0].as_str()?, usize::try_from(link[1].as_i64()?).ok()?))
}

/// The cache key of every node (`CacheKeySetInputSignature`): its type, its `IS_CHANGED`
/// (LoadImage: the file's bytes) and its inputs, links replaced by the linked node's key.
/// A node whose key cannot be computed (a missing file, a cycle) gets a key never seen again.
pub fn signatures(prompt: &Value, files: &dyn Files) -> HashMap<String, String> {
    fn key(
        id: &str,
        prompt: &Value,
        files: &dyn Files,
        done: &mut HashMap<String, String>,
        visiting: &mut BTreeSet<String>,
    ) -> String {
        if let Some(known) = done.get(id) {
            return known.clone();
        }
        let unique = || format!("unique:{}", fastrand::u64(..));
        if !visiting.insert(id.to_string()) {
            return unique();
        }
        let node = &prompt[id];
        let class = node["class_type"].as_str().unwrap_or_default();
        let mut changed = Value::Null;
        let mut inputs = Map::new();
        for (name, value) in node["inputs"].as_object().into_iter().flatten() {
            let entry = match as_link(value) {
                Some((from, slot)) => {
                    json!(["link", key(from, prompt, files, done, visiting), slot])
                }
                None => value.clone(),
            };
            inputs.insert(name.clone(), entry);
        }
        if class == "LoadImage" {
            let file = node["inputs"]["image"].as_str().and_then(|image| {
                let (folder, subfolder, name) = nodes::annotated_path(image);
                files.read(folder, &subfolder, &name)
            });
            changed = match file {
                Some(bytes) => json!(content_hash(&bytes)),
                None => json!(unique()),
            };
        }
        visiting.remove(id);
        let signature = json!({"class_type": class, "is_changed": changed, "inputs": inputs});
        let text = signature.to_string();
        done.insert(id.to_string(), text.clone());
        text
    }
    let mut done = HashMap::new();
    let mut visiting = BTreeSet::new();
    for id in prompt.as_object().into_iter().flatten().map(|(id, _)| id) {
        key(id, prompt, files, &mut done, &mut visiting);
    }
    done
}

/// A hash of a file's bytes standing in for LoadImage's sha256 (equal bytes, equal hash).
fn content_hash(bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}-{}", hasher.finish(), bytes.len())
}

/// The nodes to run, dependencies first, from the output nodes: a node whose result is cached
/// is not run and its inputs are not visited, except an output node, which is staged anyway
/// (ComfyUI then reports its cached result with `executed`).
pub fn run_order(prompt: &Value, outputs: &[String], cached: &dyn Fn(&str) -> bool) -> Vec<String> {
    fn visit(
        id: &str,
        explicit: bool,
        prompt: &Value,
        cached: &dyn Fn(&str) -> bool,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(id.to_string()) || prompt.get(id).is_none() {
            return;
        }
        if cached(id) && !explicit {
            return;
        }
        if !cached(id) {
            let definition_order = prompt[id]["inputs"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for value in definition_order.values() {
                if let Some((from, _)) = as_link(value) {
                    visit(from, false, prompt, cached, seen, order);
                }
            }
        }
        order.push(id.to_string());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for output in outputs {
        visit(output, true, prompt, cached, &mut seen, &mut order);
    }
    order
}
