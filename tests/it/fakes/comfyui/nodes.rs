//! The node types the fake ComfyUI knows: their declarations (as `GET /object_info` shows them
//! and validation reads them, taken from ComfyUI's `nodes.py`) and what running each does.
//!
//! The image nodes really compute, in `f32` like ComfyUI's tensors: `LoadImage` decodes the
//! uploaded PNG (EXIF orientation applied, alpha dropped into a MASK), `ImageInvert` is
//! `1.0 - x`, `ImageScale` resamples (nearest-exact, bilinear and area as PyTorch computes them;
//! bicubic and lanczos are done as bilinear), `SaveImage`/`PreviewImage` write 8-bit RGB PNGs
//! named and numbered like ComfyUI's with the `prompt` (and `extra_pnginfo`) text chunks. The
//! model nodes are stand-ins that carry what they were given: `VAEEncode` keeps the pixels (cut
//! to multiples of 8, centred, as ComfyUI's VAE does), `KSampler` passes its latent through,
//! and `VAEDecode` gives the pixels back — so an img2img graph returns its input picture.

use std::io::Cursor;
use std::sync::Arc;

use image::ImageDecoder as _;
use serde_json::{Map, Value, json};

use super::python;

/// Every node type the fake knows, in the order `/object_info` lists them.
pub const CLASSES: &[&str] = &[
    "KSampler",
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "VAEDecode",
    "VAEEncode",
    "EmptyLatentImage",
    "SaveImage",
    "PreviewImage",
    "LoadImage",
    "ImageScale",
    "ImageInvert",
];

/// `comfy.samplers.KSampler.SAMPLERS` (0.3.64).
pub const SAMPLERS: &[&str] = &[
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
];

/// `comfy.samplers.KSampler.SCHEDULERS` (0.3.64).
pub const SCHEDULERS: &[&str] = &[
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
];

/// `ImageScale.upscale_methods`.
pub const UPSCALE_METHODS: &[&str] = &["nearest-exact", "bilinear", "area", "bicubic", "lanczos"];
/// `ImageScale.crop_methods`.
const CROP_METHODS: &[&str] = &["disabled", "center"];
/// `nodes.MAX_RESOLUTION`.
const MAX_RESOLUTION: u32 = 16384;

/// The type of an input: a named type (`INT`, `IMAGE`, ...) or a list of allowed values.
#[derive(Clone, Debug)]
pub enum Kind {
    Type(&'static str),
    Combo(Vec<String>),
}

impl Kind {
    /// How `INPUT_TYPES` writes it: the name, or the list.
    pub fn to_json(&self) -> Value {
        match self {
            Kind::Type(name) => json!(name),
            Kind::Combo(values) => json!(values),
        }
    }
}

/// One declared input.
#[derive(Clone, Debug)]
pub struct Input {
    pub name: &'static str,
    pub kind: Kind,
    /// The options dict (`default`, `min`, `max`, `tooltip`, ...); `None`: a 1-tuple.
    pub extra: Option<Value>,
    pub required: bool,
}

impl Input {
    /// `(input_type, extra_info)` as validation errors quote it (`input_config`).
    pub fn config(&self) -> Value {
        json!([
            self.kind.to_json(),
            self.extra.clone().unwrap_or_else(|| json!({}))
        ])
    }

    /// A number bound (`min`/`max`) of the options.
    pub fn bound(&self, key: &str) -> Option<&Value> {
        self.extra.as_ref()?.get(key)
    }
}

/// One node type.
#[derive(Clone, Debug)]
pub struct Definition {
    pub class: &'static str,
    pub display_name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub inputs: Vec<Input>,
    pub hidden: &'static [(&'static str, &'static str)],
    pub outputs: &'static [&'static str],
    pub output_tooltips: &'static [&'static str],
    pub output_node: bool,
    /// Whether the type has a `VALIDATE_INPUTS` (LoadImage: the file must exist).
    pub validates_image: bool,
}

impl Definition {
    /// `GET /object_info` for this type (`node_info` in ComfyUI's server.py).
    pub fn info(&self) -> Value {
        let section = |required: bool| {
            let mut map = Map::new();
            for input in self.inputs.iter().filter(|i| i.required == required) {
                let mut declared = vec![input.kind.to_json()];
                declared.extend(input.extra.clone());
                map.insert(input.name.to_string(), Value::Array(declared));
            }
            map
        };
        let names = |required: bool| {
            self.inputs
                .iter()
                .filter(|i| i.required == required)
                .map(|i| i.name)
                .collect::<Vec<_>>()
        };
        let mut input = Map::new();
        let mut order = Map::new();
        input.insert("required".into(), Value::Object(section(true)));
        order.insert("required".into(), json!(names(true)));
        if self.inputs.iter().any(|i| !i.required) {
            input.insert("optional".into(), Value::Object(section(false)));
            order.insert("optional".into(), json!(names(false)));
        }
        if !self.hidden.is_empty() {
            let hidden: Map<String, Value> = self
                .hidden
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            order.insert("hidden".into(), json!(hidden.keys().collect::<Vec<_>>()));
            input.insert("hidden".into(), Value::Object(hidden));
        }
        let mut info = json!({
            "input": input,
            "input_order": order,
            "output": self.outputs,
            "output_is_list": vec![false; self.outputs.len()],
            "output_name": self.outputs,
            "name": self.class,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": "nodes",
            "category": self.category,
            "output_node": self.output_node,
        });
        if !self.output_tooltips.is_empty() {
            info["output_tooltips"] = json!(self.output_tooltips);
        }
        info
    }
}

/// What the declarations depend on: the server's model files and its input folder.
pub struct Catalog {
    pub checkpoints: Vec<String>,
    /// Sorted names of the image files at the top of the input folder.
    pub input_images: Vec<String>,
}

fn required(name: &'static str, kind: Kind, extra: Option<Value>) -> Input {
    Input {
        name,
        kind,
        extra,
        required: true,
    }
}

fn of(name: &'static str) -> Kind {
    Kind::Type(name)
}

fn combo(values: &[&str]) -> Kind {
    Kind::Combo(values.iter().map(|v| v.to_string()).collect())
}

/// The declaration of `class`, if the fake knows it.
pub fn definition(class: &str, catalog: &Catalog) -> Option<Definition> {
    let blank = Definition {
        class: "",
        display_name: "",
        category: "",
        description: "",
        inputs: Vec::new(),
        hidden: &[],
        outputs: &[],
        output_tooltips: &[],
        output_node: false,
        validates_image: false,
    };
    let save_hidden: &'static [(&str, &str)] =
        &[("prompt", "PROMPT"), ("extra_pnginfo", "EXTRA_PNGINFO")];
    let def = match class {
        "CheckpointLoaderSimple" => Definition {
            class: "CheckpointLoaderSimple",
            display_name: "Load Checkpoint",
            category: "loaders",
            description: "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            inputs: vec![required(
                "ckpt_name",
                Kind::Combo(catalog.checkpoints.clone()),
                Some(json!({"tooltip": "The name of the checkpoint (model) to load."})),
            )],
            outputs: &["MODEL", "CLIP", "VAE"],
            output_tooltips: &[
                "The model used for denoising latents.",
                "The CLIP model used for encoding text prompts.",
                "The VAE model used for encoding and decoding images to and from latent space.",
            ],
            ..blank
        },
        "CLIPTextEncode" => Definition {
            class: "CLIPTextEncode",
            display_name: "CLIP Text Encode (Prompt)",
            category: "conditioning",
            description: "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.",
            inputs: vec![
                required(
                    "text",
                    of("STRING"),
                    Some(
                        json!({"multiline": true, "dynamicPrompts": true, "tooltip": "The text to be encoded."}),
                    ),
                ),
                required(
                    "clip",
                    of("CLIP"),
                    Some(json!({"tooltip": "The CLIP model used for encoding the text."})),
                ),
            ],
            outputs: &["CONDITIONING"],
            output_tooltips: &[
                "A conditioning containing the embedded text used to guide the diffusion model.",
            ],
            ..blank
        },
        "KSampler" => Definition {
            class: "KSampler",
            display_name: "KSampler",
            category: "sampling",
            description: "Uses the provided model, positive and negative conditioning to denoise the latent image.",
            inputs: vec![
                required(
                    "model",
                    of("MODEL"),
                    Some(json!({"tooltip": "The model used for denoising the input latent."})),
                ),
                required(
                    "seed",
                    of("INT"),
                    Some(
                        json!({"default": 0, "min": 0, "max": u64::MAX, "control_after_generate": true, "tooltip": "The random seed used for creating the noise."}),
                    ),
                ),
                required(
                    "steps",
                    of("INT"),
                    Some(
                        json!({"default": 20, "min": 1, "max": 10000, "tooltip": "The number of steps used in the denoising process."}),
                    ),
                ),
                required(
                    "cfg",
                    of("FLOAT"),
                    Some(
                        json!({"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01, "tooltip": "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality."}),
                    ),
                ),
                required(
                    "sampler_name",
                    combo(SAMPLERS),
                    Some(
                        json!({"tooltip": "The algorithm used when sampling, this can affect the quality, speed, and style of the generated output."}),
                    ),
                ),
                required(
                    "scheduler",
                    combo(SCHEDULERS),
                    Some(
                        json!({"tooltip": "The scheduler controls how noise is gradually removed to form the image."}),
                    ),
                ),
                required(
                    "positive",
                    of("CONDITIONING"),
                    Some(
                        json!({"tooltip": "The conditioning describing the attributes you want to include in the image."}),
                    ),
                ),
                required(
                    "negative",
                    of("CONDITIONING"),
                    Some(
                        json!({"tooltip": "The conditioning describing the attributes you want to exclude from the image."}),
                    ),
                ),
                required(
                    "latent_image",
                    of("LATENT"),
                    Some(json!({"tooltip": "The latent image to denoise."})),
                ),
                required(
                    "denoise",
                    of("FLOAT"),
                    Some(
                        json!({"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling."}),
                    ),
                ),
            ],
            outputs: &["LATENT"],
            output_tooltips: &["The denoised latent."],
            ..blank
        },
        "VAEDecode" => Definition {
            class: "VAEDecode",
            display_name: "VAE Decode",
            category: "latent",
            description: "Decodes latent images back into pixel space images.",
            inputs: vec![
                required(
                    "samples",
                    of("LATENT"),
                    Some(json!({"tooltip": "The latent to be decoded."})),
                ),
                required(
                    "vae",
                    of("VAE"),
                    Some(json!({"tooltip": "The VAE model used for decoding the latent."})),
                ),
            ],
            outputs: &["IMAGE"],
            output_tooltips: &["The decoded image."],
            ..blank
        },
        "VAEEncode" => Definition {
            class: "VAEEncode",
            display_name: "VAE Encode",
            category: "latent",
            inputs: vec![
                required("pixels", of("IMAGE"), None),
                required("vae", of("VAE"), None),
            ],
            outputs: &["LATENT"],
            ..blank
        },
        "EmptyLatentImage" => Definition {
            class: "EmptyLatentImage",
            display_name: "Empty Latent Image",
            category: "latent",
            description: "Create a new batch of empty latent images to be denoised via sampling.",
            inputs: vec![
                required(
                    "width",
                    of("INT"),
                    Some(
                        json!({"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8, "tooltip": "The width of the latent images in pixels."}),
                    ),
                ),
                required(
                    "height",
                    of("INT"),
                    Some(
                        json!({"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8, "tooltip": "The height of the latent images in pixels."}),
                    ),
                ),
                required(
                    "batch_size",
                    of("INT"),
                    Some(
                        json!({"default": 1, "min": 1, "max": 4096, "tooltip": "The number of latent images in the batch."}),
                    ),
                ),
            ],
            outputs: &["LATENT"],
            output_tooltips: &["The empty latent image batch."],
            ..blank
        },
        "SaveImage" => Definition {
            class: "SaveImage",
            display_name: "Save Image",
            category: "image",
            description: "Saves the input images to your ComfyUI output directory.",
            inputs: vec![
                required(
                    "images",
                    of("IMAGE"),
                    Some(json!({"tooltip": "The images to save."})),
                ),
                required(
                    "filename_prefix",
                    of("STRING"),
                    Some(
                        json!({"default": "ComfyUI", "tooltip": "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."}),
                    ),
                ),
            ],
            hidden: save_hidden,
            output_node: true,
            ..blank
        },
        "PreviewImage" => Definition {
            class: "PreviewImage",
            display_name: "Preview Image",
            category: "image",
            description: "Saves the input images to your ComfyUI output directory.",
            inputs: vec![required("images", of("IMAGE"), None)],
            hidden: save_hidden,
            output_node: true,
            ..blank
        },
        "LoadImage" => Definition {
            class: "LoadImage",
            display_name: "Load Image",
            category: "image",
            inputs: vec![required(
                "image",
                Kind::Combo(catalog.input_images.clone()),
                Some(json!({"image_upload": true})),
            )],
            outputs: &["IMAGE", "MASK"],
            validates_image: true,
            ..blank
        },
        "ImageScale" => Definition {
            class: "ImageScale",
            display_name: "Upscale Image",
            category: "image/upscaling",
            inputs: vec![
                required("image", of("IMAGE"), None),
                required("upscale_method", combo(UPSCALE_METHODS), None),
                required(
                    "width",
                    of("INT"),
                    Some(json!({"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1})),
                ),
                required(
                    "height",
                    of("INT"),
                    Some(json!({"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1})),
                ),
                required("crop", combo(CROP_METHODS), None),
            ],
            outputs: &["IMAGE"],
            ..blank
        },
        "ImageInvert" => Definition {
            class: "ImageInvert",
            display_name: "Invert Image",
            category: "image",
            inputs: vec![required("image", of("IMAGE"), None)],
            outputs: &["IMAGE"],
            ..blank
        },
        _ => return None,
    };
    Some(def)
}

/// Whether a file name is an image by its extension (`filter_files_content_types`).
pub fn is_image_name(name: &str) -> bool {
    let extension = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(
        extension.as_str(),
        "png"
            | "jpg"
            | "jpeg"
            | "webp"
            | "gif"
            | "bmp"
            | "tif"
            | "tiff"
            | "avif"
            | "heic"
            | "heif"
            | "ico"
    )
}

// ---------------------------------------------------------------------------------------------
// Values flowing between nodes
// ---------------------------------------------------------------------------------------------

/// One picture: `height x width x 3` channels in `[0, 1]`, row-major (a ComfyUI IMAGE row).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<f32>,
}

/// A MASK: `height x width` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// A LATENT: the stand-in keeps the pixels it was encoded from (none from EmptyLatentImage).
#[derive(Clone, Debug)]
pub struct Latent {
    pub pixels: Option<Arc<Vec<Frame>>>,
    pub width: usize,
    pub height: usize,
    pub batch_size: usize,
    /// The seed of the KSampler that sampled it (for a picture from an empty latent).
    pub seed: Option<u64>,
}

/// A value on a node's output slot.
#[derive(Clone, Debug)]
pub enum Data {
    Image(Arc<Vec<Frame>>),
    Mask(Arc<Vec<Mask>>),
    Latent(Arc<Latent>),
    /// MODEL, CLIP, VAE, CONDITIONING: what made it (checkpoint name, text).
    Token(&'static str, Arc<Value>),
}

impl Data {
    /// `format_value` in an execution error's `current_inputs`: the tensor's `str()`, shortened.
    pub fn describe(&self) -> String {
        match self {
            Data::Image(frames) => {
                let (w, h) = frames.first().map_or((0, 0), |f| (f.width, f.height));
                format!("tensor(<IMAGE {}x{h}x{w}x3>)", frames.len())
            }
            Data::Mask(masks) => format!("tensor(<MASK {}>)", masks.len()),
            Data::Latent(latent) => {
                format!("{{'samples': tensor(<LATENT {}>)}}", latent.batch_size)
            }
            Data::Token(kind, value) => format!("<{kind} {value}>"),
        }
    }
}

/// A node's inputs as it receives them, by name.
pub type Inputs = std::collections::BTreeMap<String, Given>;

/// An input as a node receives it.
#[derive(Clone, Debug)]
pub enum Given {
    Value(Value),
    Data(Data),
}

/// What a node raised: Python's exception type and `str(exception)`.
#[derive(Clone, Debug)]
pub struct Raised {
    pub exception_type: String,
    pub message: String,
}

impl Raised {
    fn new(exception_type: &str, message: impl Into<String>) -> Raised {
        Raised {
            exception_type: exception_type.into(),
            message: message.into(),
        }
    }
}

/// Which folder a file is in (`type` of uploads and results).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Folder {
    Input,
    Temp,
    Output,
}

impl Folder {
    pub fn parse(name: &str) -> Option<Folder> {
        match name {
            "input" => Some(Folder::Input),
            "temp" => Some(Folder::Temp),
            "output" => Some(Folder::Output),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Folder::Input => "input",
            Folder::Temp => "temp",
            Folder::Output => "output",
        }
    }
}

/// The server's folders, as the nodes see them.
pub trait Files {
    fn read(&self, folder: Folder, subfolder: &str, name: &str) -> Option<Arc<Vec<u8>>>;
    /// Names of the files directly in `subfolder`.
    fn list(&self, folder: Folder, subfolder: &str) -> Vec<String>;
    fn write(&self, folder: Folder, subfolder: &str, name: &str, bytes: Vec<u8>);
}

/// `folder_paths.annotated_filepath` + `get_annotated_filepath`: `"sub/x.png [output]"` to
/// its folder, subfolder and name.
pub fn annotated_path(value: &str) -> (Folder, String, String) {
    let (rest, folder) = [
        (" [output]", Folder::Output),
        (" [input]", Folder::Input),
        (" [temp]", Folder::Temp),
    ]
    .iter()
    .find_map(|(suffix, folder)| value.strip_suffix(suffix).map(|r| (r, *folder)))
    .unwrap_or((value, Folder::Input));
    match rest.rsplit_once('/') {
        Some((sub, name)) => (folder, sub.to_string(), name.to_string()),
        None => (folder, String::new(), rest.to_string()),
    }
}

/// What a run needs besides the inputs.
pub struct Context<'a> {
    pub files: &'a dyn Files,
    /// The prompt as it was validated (the `prompt` text chunk).
    pub prompt: &'a Value,
    /// `extra_data.extra_pnginfo`: one text chunk per key.
    pub extra_pnginfo: Option<&'a Map<String, Value>>,
}

/// A node's result: its output slots and its `ui` part (what SaveImage saved).
#[derive(Clone, Debug, Default)]
pub struct Ran {
    pub outputs: Vec<Data>,
    pub ui: Option<Value>,
}

fn value<'a>(inputs: &'a Inputs, name: &str) -> Result<&'a Value, Raised> {
    match inputs.get(name) {
        Some(Given::Value(v)) => Ok(v),
        _ => Err(Raised::new(
            "TypeError",
            format!("missing required positional argument: '{name}'"),
        )),
    }
}

fn data<'a>(inputs: &'a Inputs, name: &str) -> Result<&'a Data, Raised> {
    match inputs.get(name) {
        Some(Given::Data(d)) => Ok(d),
        _ => Err(Raised::new(
            "TypeError",
            format!("missing required positional argument: '{name}'"),
        )),
    }
}

fn images<'a>(inputs: &'a Inputs, name: &str) -> Result<&'a Arc<Vec<Frame>>, Raised> {
    match data(inputs, name)? {
        Data::Image(frames) => Ok(frames),
        other => Err(Raised::new(
            "AttributeError",
            format!("'{}' object has no attribute 'movedim'", other.describe()),
        )),
    }
}

fn token(inputs: &Inputs, name: &str) -> Result<Arc<Value>, Raised> {
    match data(inputs, name)? {
        Data::Token(_, v) => Ok(v.clone()),
        other => Ok(Arc::new(json!(other.describe()))),
    }
}

fn latent(inputs: &Inputs, name: &str) -> Result<Arc<Latent>, Raised> {
    match data(inputs, name)? {
        Data::Latent(l) => Ok(l.clone()),
        other => Err(Raised::new(
            "TypeError",
            format!("'{}' object is not subscriptable", other.describe()),
        )),
    }
}

fn text(inputs: &Inputs, name: &str) -> Result<String, Raised> {
    Ok(python::str(value(inputs, name)?))
}

fn integer(inputs: &Inputs, name: &str) -> Result<i64, Raised> {
    value(inputs, name)?
        .as_i64()
        .or_else(|| value(inputs, name).ok()?.as_u64().map(|u| u as i64))
        .ok_or_else(|| Raised::new("TypeError", format!("{name} is not an integer")))
}

/// Runs one node (KSampler's steps are paced by the executor before this).
pub fn run(class: &str, inputs: &Inputs, ctx: &Context<'_>) -> Result<Ran, Raised> {
    let outputs = match class {
        "CheckpointLoaderSimple" => {
            let name = text(inputs, "ckpt_name")?;
            let made = |kind: &'static str| {
                Data::Token(kind, Arc::new(json!({"ckpt_name": name, "kind": kind})))
            };
            vec![made("MODEL"), made("CLIP"), made("VAE")]
        }
        "CLIPTextEncode" => {
            let clip = token(inputs, "clip")?;
            let encoded = json!({"text": text(inputs, "text")?, "clip": *clip});
            vec![Data::Token("CONDITIONING", Arc::new(encoded))]
        }
        "KSampler" => {
            let input = latent(inputs, "latent_image")?;
            let seed = value(inputs, "seed")?.as_u64();
            vec![Data::Latent(Arc::new(Latent {
                seed,
                ..(*input).clone()
            }))]
        }
        "VAEEncode" => {
            let frames = images(inputs, "pixels")?;
            let cropped: Vec<Frame> = frames.iter().map(crop_to_multiple_of_8).collect();
            let (width, height) = cropped.first().map_or((0, 0), |f| (f.width, f.height));
            vec![Data::Latent(Arc::new(Latent {
                batch_size: cropped.len(),
                pixels: Some(Arc::new(cropped)),
                width,
                height,
                seed: None,
            }))]
        }
        "VAEDecode" => {
            let samples = latent(inputs, "samples")?;
            let frames = match &samples.pixels {
                Some(pixels) => pixels.clone(),
                None => Arc::new(vec![flat_frame(&samples); samples.batch_size.max(1)]),
            };
            vec![Data::Image(frames)]
        }
        "EmptyLatentImage" => {
            let width = integer(inputs, "width")? as usize;
            let height = integer(inputs, "height")? as usize;
            let batch_size = integer(inputs, "batch_size")? as usize;
            vec![Data::Latent(Arc::new(Latent {
                pixels: None,
                width: width / 8 * 8,
                height: height / 8 * 8,
                batch_size,
                seed: None,
            }))]
        }
        "LoadImage" => {
            let (image, mask) = load_image(&text(inputs, "image")?, ctx.files)?;
            vec![
                Data::Image(Arc::new(vec![image])),
                Data::Mask(Arc::new(vec![mask])),
            ]
        }
        "ImageInvert" => {
            let frames = images(inputs, "image")?;
            let inverted = frames
                .iter()
                .map(|f| Frame {
                    rgb: f.rgb.iter().map(|v| 1.0f32 - v).collect(),
                    ..f.clone()
                })
                .collect();
            vec![Data::Image(Arc::new(inverted))]
        }
        "ImageScale" => {
            let frames = images(inputs, "image")?;
            let method = text(inputs, "upscale_method")?;
            let crop = text(inputs, "crop")?;
            let width = integer(inputs, "width")?.max(0) as usize;
            let height = integer(inputs, "height")?.max(0) as usize;
            let scaled = frames
                .iter()
                .map(|f| scale(f, &method, width, height, crop == "center"))
                .collect();
            vec![Data::Image(Arc::new(scaled))]
        }
        "SaveImage" | "PreviewImage" => {
            let frames = images(inputs, "images")?;
            let (folder, prefix) = if class == "SaveImage" {
                (Folder::Output, text(inputs, "filename_prefix")?)
            } else {
                let tag: String = (0..5)
                    .map(|_| char::from(b'a' + fastrand::u8(0..26)))
                    .collect();
                (Folder::Temp, format!("ComfyUI_temp_{tag}"))
            };
            let saved = save_images(frames, &prefix, folder, ctx)?;
            return Ok(Ran {
                outputs: Vec::new(),
                ui: Some(json!({"images": saved})),
            });
        }
        other => return Err(Raised::new("KeyError", format!("'{other}'"))),
    };
    Ok(Ran { outputs, ui: None })
}

/// A picture for a latent that was never encoded from one: flat grey, its shade from the seed.
fn flat_frame(latent: &Latent) -> Frame {
    let shade = (latent.seed.unwrap_or(0) % 256) as f32 / 255.0;
    Frame {
        width: latent.width,
        height: latent.height,
        rgb: vec![shade; latent.width * latent.height * 3],
    }
}

/// `vae_encode_crop_pixels`: each side cut down to a multiple of 8, centred.
fn crop_to_multiple_of_8(frame: &Frame) -> Frame {
    let (w, h) = (frame.width / 8 * 8, frame.height / 8 * 8);
    let (x0, y0) = ((frame.width % 8) / 2, (frame.height % 8) / 2);
    crop(frame, x0, y0, w, h)
}

fn crop(frame: &Frame, x0: usize, y0: usize, w: usize, h: usize) -> Frame {
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in y0..y0 + h {
        let start = (y * frame.width + x0) * 3;
        rgb.extend_from_slice(&frame.rgb[start..start + w * 3]);
    }
    Frame {
        width: w,
        height: h,
        rgb,
    }
}

/// LoadImage: decode (the format from the bytes), EXIF orientation applied, RGB in `[0, 1]`,
/// and the mask `1 - alpha` (64 x 64 zeros without alpha).
fn load_image(annotated: &str, files: &dyn Files) -> Result<(Frame, Mask), Raised> {
    let (folder, subfolder, name) = annotated_path(annotated);
    let path = format!("/ComfyUI/{}/{annotated}", folder.name());
    let bytes = files.read(folder, &subfolder, &name).ok_or_else(|| {
        Raised::new(
            "FileNotFoundError",
            format!("[Errno 2] No such file or directory: '{path}'"),
        )
    })?;
    let unidentified = || {
        Raised::new(
            "PIL.UnidentifiedImageError",
            format!("cannot identify image file '{path}'"),
        )
    };
    let reader = image::ImageReader::new(Cursor::new(bytes.as_slice()))
        .with_guessed_format()
        .map_err(|_| unidentified())?;
    let mut decoder = reader.into_decoder().map_err(|_| unidentified())?;
    let orientation = decoder.orientation().ok();
    let mut picture = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| Raised::new("OSError", format!("image file is truncated ({e})")))?;
    if let Some(orientation) = orientation {
        picture.apply_orientation(orientation);
    }
    let rgb = picture.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let frame = Frame {
        width,
        height,
        rgb: rgb
            .as_raw()
            .iter()
            .map(|&b| f32::from(b) / 255.0f32)
            .collect(),
    };
    let mask = if picture.color().has_alpha() {
        let rgba = picture.to_rgba8();
        Mask {
            width,
            height,
            values: rgba
                .pixels()
                .map(|p| 1.0f32 - f32::from(p.0[3]) / 255.0f32)
                .collect(),
        }
    } else {
        Mask {
            width: 64,
            height: 64,
            values: vec![0.0; 64 * 64],
        }
    };
    Ok((frame, mask))
}

/// `ImageScale.upscale` through `comfy.utils.common_upscale`.
pub fn scale(frame: &Frame, method: &str, width: usize, height: usize, center: bool) -> Frame {
    if width == 0 && height == 0 {
        return frame.clone();
    }
    let (old_w, old_h) = (frame.width, frame.height);
    // Python's round() rounds halves to even.
    let (width, height) = if width == 0 {
        let w = (old_w as f64 * height as f64 / old_h as f64).round_ties_even() as usize;
        (w.max(1), height)
    } else if height == 0 {
        let h = (old_h as f64 * width as f64 / old_w as f64).round_ties_even() as usize;
        (width, h.max(1))
    } else {
        (width, height)
    };
    let source = if center {
        let old_aspect = old_w as f64 / old_h as f64;
        let new_aspect = width as f64 / height as f64;
        let (mut x, mut y) = (0, 0);
        if old_aspect > new_aspect {
            x = ((old_w as f64 - old_w as f64 * (new_aspect / old_aspect)) / 2.0).round_ties_even()
                as usize;
        } else if old_aspect < new_aspect {
            y = ((old_h as f64 - old_h as f64 * (old_aspect / new_aspect)) / 2.0).round_ties_even()
                as usize;
        }
        crop(frame, x, y, old_w - 2 * x, old_h - 2 * y)
    } else {
        frame.clone()
    };
    match method {
        "nearest-exact" => nearest_exact(&source, width, height),
        "area" => area(&source, width, height),
        _ => bilinear(&source, width, height),
    }
}

/// PyTorch's `nearest-exact`: source index `min(floor((dst + 0.5) * in / out), in - 1)`.
fn nearest_exact(src: &Frame, width: usize, height: usize) -> Frame {
    let index = |dst: usize, input: usize, output: usize| {
        let scale = input as f32 / output as f32;
        (((dst as f32 + 0.5) * scale).floor() as usize).min(input - 1)
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let sy = index(y, src.height, height);
        for x in 0..width {
            let sx = index(x, src.width, width);
            let at = (sy * src.width + sx) * 3;
            rgb.extend_from_slice(&src.rgb[at..at + 3]);
        }
    }
    Frame { width, height, rgb }
}

/// PyTorch's `bilinear` with `align_corners=False` and no antialiasing.
fn bilinear(src: &Frame, width: usize, height: usize) -> Frame {
    let taps = |dst: usize, input: usize, output: usize| {
        let scale = input as f32 / output as f32;
        let real = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
        let i0 = real as usize;
        let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
        let l1 = real - i0 as f32;
        (i0, i1, 1.0f32 - l1, l1)
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let (y0, y1, h0, h1) = taps(y, src.height, height);
        for x in 0..width {
            let (x0, x1, w0, w1) = taps(x, src.width, width);
            for c in 0..3 {
                let at = |yy: usize, xx: usize| src.rgb[(yy * src.width + xx) * 3 + c];
                let v = h0 * (w0 * at(y0, x0) + w1 * at(y0, x1))
                    + h1 * (w0 * at(y1, x0) + w1 * at(y1, x1));
                rgb.push(v);
            }
        }
    }
    Frame { width, height, rgb }
}

/// PyTorch's `area` (adaptive average pooling): the mean over `[floor(i*in/out), ceil((i+1)*in/out))`.
fn area(src: &Frame, width: usize, height: usize) -> Frame {
    let window = |dst: usize, input: usize, output: usize| {
        (dst * input / output, ((dst + 1) * input).div_ceil(output))
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let (ya, yb) = window(y, src.height, height);
        for x in 0..width {
            let (xa, xb) = window(x, src.width, width);
            let count = ((yb - ya) * (xb - xa)) as f32;
            for c in 0..3 {
                let mut sum = 0.0f32;
                for yy in ya..yb {
                    for xx in xa..xb {
                        sum += src.rgb[(yy * src.width + xx) * 3 + c];
                    }
                }
                rgb.push(sum / count);
            }
        }
    }
    Frame { width, height, rgb }
}

/// `SaveImage.save_images`: each frame as a PNG under the names [`save_names`] gives.
fn save_images(
    frames: &[Frame],
    prefix: &str,
    folder: Folder,
    ctx: &Context<'_>,
) -> Result<Vec<Value>, Raised> {
    let first = frames.first().map_or((0, 0), |f| (f.width, f.height));
    let (subfolder, names) = save_names(prefix, first, frames.len(), folder, ctx.files)?;
    let texts = text_chunks(ctx);
    let mut saved = Vec::new();
    for (frame, name) in frames.iter().zip(names) {
        let png = encode_png(frame, &texts)?;
        ctx.files.write(folder, &subfolder, &name, png);
        saved.push(json!({"filename": name, "subfolder": subfolder, "type": folder.name()}));
    }
    Ok(saved)
}

/// `folder_paths.get_save_image_path`: the subfolder and the names of `count` images saved
/// with `prefix` (its `%width%`... filled from the first image's `size`), `prefix_00001_.png`,
/// the counter one past the highest already in the folder for that prefix.
pub fn save_names(
    prefix: &str,
    size: (usize, usize),
    count: usize,
    folder: Folder,
    files: &dyn Files,
) -> Result<(String, Vec<String>), Raised> {
    let prefix = if prefix.contains('%') {
        let now = jiff::ZonedDateTime::now();
        prefix
            .replace("%width%", &size.0.to_string())
            .replace("%height%", &size.1.to_string())
            .replace("%year%", &now.year().to_string())
            .replace("%month%", &format!("{:02}", now.month()))
            .replace("%day%", &format!("{:02}", now.day()))
            .replace("%hour%", &format!("{:02}", now.hour()))
            .replace("%minute%", &format!("{:02}", now.minute()))
            .replace("%second%", &format!("{:02}", now.second()))
    } else {
        prefix.to_string()
    };
    let parts: Vec<&str> = prefix
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") || prefix.starts_with('/') {
        return Err(Raised::new(
            "Exception",
            "**** ERROR: Saving image outside the output folder is not allowed.",
        ));
    }
    let (subfolder, filename) = match parts.split_last() {
        Some((name, dirs)) => (dirs.join("/"), name.to_string()),
        None => (String::new(), String::new()),
    };
    let counter = files
        .list(folder, &subfolder)
        .iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(filename.as_str())?.strip_prefix('_')?;
            Some(rest.split('_').next()?.parse::<u64>().unwrap_or(0))
        })
        .max()
        .map_or(1, |highest| highest + 1);
    let names = (0..count)
        .map(|batch_number| {
            format!(
                "{}_{:05}_.png",
                filename.replace("%batch_num%", &batch_number.to_string()),
                counter + batch_number as u64
            )
        })
        .collect();
    Ok((subfolder, names))
}

/// Width and height from a PNG's `IHDR` (zeros when it is none).
pub fn png_size(png: &[u8]) -> (usize, usize) {
    let field = |at: usize| {
        png.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_be_bytes(b) as usize)
    };
    (field(16), field(20))
}

/// The picture of a preview frame: 8 x 8 mid grey.
pub fn preview_png() -> Vec<u8> {
    let frame = Frame {
        width: 8,
        height: 8,
        rgb: vec![0.5; 8 * 8 * 3],
    };
    encode_png(&frame, &[]).unwrap_or_default()
}

/// The text chunks SaveImage writes: `prompt`, then one per `extra_pnginfo` key (as JSON).
fn text_chunks(ctx: &Context<'_>) -> Vec<(String, String)> {
    let mut chunks = vec![("prompt".to_string(), python::json_dumps(ctx.prompt))];
    for (key, value) in ctx.extra_pnginfo.into_iter().flatten() {
        chunks.push((key.clone(), python::json_dumps(value)));
    }
    chunks
}

/// An 8-bit RGB PNG of `clip(255 * x)` truncated, with these text chunks.
fn encode_png(frame: &Frame, texts: &[(String, String)]) -> Result<Vec<u8>, Raised> {
    let bytes: Vec<u8> = frame
        .rgb
        .iter()
        .map(|v| (255.0f32 * v).clamp(0.0, 255.0) as u8)
        .collect();
    let mut out = Vec::new();
    let failed = |e: png::EncodingError| Raised::new("OSError", e.to_string());
    let mut encoder = png::Encoder::new(&mut out, frame.width as u32, frame.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // ComfyUI uses zlib level 4; the fast level keeps the fake quick for benchmarks.
    encoder.set_compression(png::Compression::Fast);
    for (key, text) in texts {
        encoder
            .add_text_chunk(key.clone(), text.clone())
            .map_err(failed)?;
    }
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&bytes).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}
