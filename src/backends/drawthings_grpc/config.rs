//! Draw Things' `GenerationConfiguration`, the FlatBuffer in a request's `configuration`: written
//! with the `flatbuffers` builder, and read back by slot.
//!
//! The buffer is a plain root table (no size prefix; the schema declares no file identifier).
//! A field's slot is its declaration index in the schema, deprecated fields included, and its
//! vtable entry sits at byte `4 + 2 * slot`; a field left out takes the schema's default on the
//! server. [`FIELDS`] lists all 88 slots with their types and defaults. Sizes are in 64-pixel
//! units (`start_width = width / 64`); the sampler is a byte enum in the schema's order
//! ([`SAMPLER_TYPES`], `DPMPP2MKarras` = 0); `loras` is a vector of `LoRA` tables (file,
//! weight (default 0.6), mode). A profile's `[extra]` keys name other fields by their schema
//! name and are checked against [`FIELDS`]: type, range, and enum names.

use std::collections::BTreeMap;

use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, Vector, Verifiable, Verifier};

use crate::backends::drawthings_http::known::SAMPLERS;

/// The `SamplerType` enum's names in the schema's order: the index is the byte sent.
pub const SAMPLER_TYPES: &[&str] = &[
    "DPMPP2MKarras",
    "EulerA",
    "DDIM",
    "PLMS",
    "DPMPPSDEKarras",
    "UniPC",
    "LCM",
    "EulerASubstep",
    "DPMPPSDESubstep",
    "TCD",
    "EulerATrailing",
    "DPMPPSDETrailing",
    "DPMPP2MAYS",
    "EulerAAYS",
    "DPMPPSDEAYS",
    "DPMPP2MTrailing",
    "DDIMTrailing",
    "UniPCTrailing",
    "UniPCAYS",
    "TCDTrailing",
];
const SEED_MODES: &[&str] = &[
    "Legacy",
    "TorchCpuCompatible",
    "ScaleAlike",
    "NvidiaGpuCompatible",
];
const COMPRESSION_METHODS: &[&str] = &["Disabled", "H264", "H265", "Jpeg"];
const COLOR_CALIBRATIONS: &[&str] = &["Disabled", "Lab"];

/// A field's type in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Bool,
    UByte,
    UShort,
    Int,
    UInt,
    Long,
    Float,
    Text,
    /// A byte enum, by its names in order.
    Enum(&'static [&'static str]),
    /// `[Control]`: not settable through `[extra]`.
    Controls,
    /// `[LoRA]`: the profile's `[[loras]]`.
    Loras,
}

/// One slot of `GenerationConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    /// The schema's default for scalars (booleans as 0 or 1, enums by index).
    pub default: f64,
    pub deprecated: bool,
}

const fn field(name: &'static str, kind: FieldKind, default: f64, deprecated: bool) -> Field {
    Field {
        name,
        kind,
        default,
        deprecated,
    }
}

use FieldKind::{Bool, Controls, Enum, Float, Int, Long, Loras, Text, UByte, UInt, UShort};

/// Every slot of `GenerationConfiguration`, in slot order.
pub const FIELDS: &[Field] = &[
    field("id", Long, 0.0, false),                              // 0
    field("start_width", UShort, 0.0, false),                   // 1
    field("start_height", UShort, 0.0, false),                  // 2
    field("seed", UInt, 0.0, false),                            // 3
    field("steps", UInt, 0.0, false),                           // 4
    field("guidance_scale", Float, 0.0, false),                 // 5
    field("strength", Float, 0.0, false),                       // 6
    field("model", Text, 0.0, false),                           // 7
    field("sampler", Enum(SAMPLER_TYPES), 0.0, false),          // 8
    field("batch_count", UInt, 1.0, false),                     // 9
    field("batch_size", UInt, 1.0, false),                      // 10
    field("hires_fix", Bool, 0.0, false),                       // 11
    field("hires_fix_start_width", UShort, 0.0, false),         // 12
    field("hires_fix_start_height", UShort, 0.0, false),        // 13
    field("hires_fix_strength", Float, 0.7, false),             // 14
    field("upscaler", Text, 0.0, false),                        // 15
    field("image_guidance_scale", Float, 1.5, false),           // 16
    field("seed_mode", Enum(SEED_MODES), 0.0, false),           // 17
    field("clip_skip", UInt, 1.0, false),                       // 18
    field("controls", Controls, 0.0, false),                    // 19
    field("loras", Loras, 0.0, false),                          // 20
    field("mask_blur", Float, 0.0, false),                      // 21
    field("face_restoration", Text, 0.0, false),                // 22
    field("decode_with_attention", Bool, 1.0, true),            // 23
    field("hires_fix_decode_with_attention", Bool, 1.0, true),  // 24
    field("clip_weight", Float, 1.0, false),                    // 25
    field("negative_prompt_for_image_prior", Bool, 1.0, false), // 26
    field("image_prior_steps", UInt, 5.0, false),               // 27
    field("refiner_model", Text, 0.0, false),                   // 28
    field("original_image_height", UInt, 0.0, false),           // 29
    field("original_image_width", UInt, 0.0, false),            // 30
    field("crop_top", Int, 0.0, false),                         // 31
    field("crop_left", Int, 0.0, false),                        // 32
    field("target_image_height", UInt, 0.0, false),             // 33
    field("target_image_width", UInt, 0.0, false),              // 34
    field("aesthetic_score", Float, 6.0, false),                // 35
    field("negative_aesthetic_score", Float, 2.5, false),       // 36
    field("zero_negative_prompt", Bool, 0.0, false),            // 37
    field("refiner_start", Float, 0.7, false),                  // 38
    field("negative_original_image_height", UInt, 0.0, false),  // 39
    field("negative_original_image_width", UInt, 0.0, false),   // 40
    field("name", Text, 0.0, false),                            // 41
    field("fps_id", UInt, 5.0, false),                          // 42
    field("motion_bucket_id", UInt, 127.0, false),              // 43
    field("cond_aug", Float, 0.02, false),                      // 44
    field("start_frame_cfg", Float, 1.0, false),                // 45
    field("num_frames", UInt, 14.0, false),                     // 46
    field("mask_blur_outset", Int, 0.0, false),                 // 47
    field("sharpness", Float, 0.0, false),                      // 48
    field("shift", Float, 1.0, false),                          // 49
    field("stage_2_steps", UInt, 10.0, false),                  // 50
    field("stage_2_cfg", Float, 1.0, false),                    // 51
    field("stage_2_shift", Float, 1.0, false),                  // 52
    field("tiled_decoding", Bool, 0.0, false),                  // 53
    field("decoding_tile_width", UShort, 10.0, false),          // 54
    field("decoding_tile_height", UShort, 10.0, false),         // 55
    field("decoding_tile_overlap", UShort, 2.0, false),         // 56
    field("stochastic_sampling_gamma", Float, 0.3, false),      // 57
    field("preserve_original_after_inpaint", Bool, 1.0, false), // 58
    field("tiled_diffusion", Bool, 0.0, false),                 // 59
    field("diffusion_tile_width", UShort, 16.0, false),         // 60
    field("diffusion_tile_height", UShort, 16.0, false),        // 61
    field("diffusion_tile_overlap", UShort, 2.0, false),        // 62
    field("upscaler_scale_factor", UByte, 0.0, false),          // 63
    field("t5_text_encoder", Bool, 1.0, false),                 // 64
    field("separate_clip_l", Bool, 0.0, false),                 // 65
    field("clip_l_text", Text, 0.0, false),                     // 66
    field("separate_open_clip_g", Bool, 0.0, false),            // 67
    field("open_clip_g_text", Text, 0.0, false),                // 68
    field("speed_up_with_guidance_embed", Bool, 1.0, false),    // 69
    field("guidance_embed", Float, 3.5, false),                 // 70
    field("resolution_dependent_shift", Bool, 1.0, false),      // 71
    field("tea_cache_start", Int, 5.0, false),                  // 72
    field("tea_cache_end", Int, -1.0, false),                   // 73
    field("tea_cache_threshold", Float, 0.06, false),           // 74
    field("tea_cache", Bool, 0.0, false),                       // 75
    field("separate_t5", Bool, 0.0, false),                     // 76
    field("t5_text", Text, 0.0, false),                         // 77
    field("tea_cache_max_skip_steps", Int, 3.0, false),         // 78
    field("causal_inference_enabled", Bool, 0.0, false),        // 79
    field("causal_inference", Int, 3.0, false),                 // 80
    field("causal_inference_pad", Int, 0.0, false),             // 81
    field("cfg_zero_star", Bool, 0.0, false),                   // 82
    field("cfg_zero_init_steps", Int, 0.0, false),              // 83
    field(
        "compression_artifacts",
        Enum(COMPRESSION_METHODS),
        0.0,
        false,
    ), // 84
    field("compression_artifacts_quality", Float, 43.1, false), // 85
    field("color_calibration", Enum(COLOR_CALIBRATIONS), 0.0, false), // 86
    field("expand_prompt_to_json", Bool, 0.0, false),           // 87
];

/// Fields drawdrop fills in from the profile's own keys (and the picture's size).
const SET_FROM_PROFILE: &[(&str, &str)] = &[
    ("start_width", "width"),
    ("start_height", "height"),
    ("seed", "seed"),
    ("steps", "steps"),
    ("guidance_scale", "guidance_scale"),
    ("strength", "strength"),
    ("model", "model"),
    ("sampler", "sampler"),
    ("batch_count", "batch_count"),
    ("batch_size", "batch_size"),
    ("loras", "[[loras]]"),
];

/// The vtable byte offset of a slot.
fn voffset(slot: usize) -> flatbuffers::VOffsetT {
    (4 + 2 * slot) as flatbuffers::VOffsetT
}

fn slot_of(name: &str) -> Result<usize, ConfigError> {
    FIELDS
        .iter()
        .position(|field| field.name == name)
        .ok_or_else(|| ConfigError::UnknownField {
            name: name.to_string(),
            known: FIELDS
                .iter()
                .filter(|field| !field.deprecated)
                .map(|field| field.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The byte sent for a sampler, by drawdrop's (Draw Things' display) name, e.g.
/// "DPM++ 2M Karras", or by its schema name, e.g. "DPMPP2MKarras".
pub fn sampler_index(name: &str) -> Option<u8> {
    SAMPLERS
        .iter()
        .position(|&shown| shown == name)
        .or_else(|| SAMPLER_TYPES.iter().position(|&schema| schema == name))
        .and_then(|index| u8::try_from(index).ok())
}

/// `LoRAMode`: which model of a pair a LoRA applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraMode {
    #[default]
    All = 0,
    Base = 1,
    Refiner = 2,
}

/// One entry of `loras`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lora {
    pub file: String,
    pub weight: f32,
    pub mode: LoraMode,
}

/// What drawdrop puts into a generation's configuration. `None` leaves the field out, so the
/// schema's default applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationConfig {
    /// The picture's size in pixels: multiples of 64.
    pub width: u32,
    pub height: u32,
    pub seed: u32,
    pub steps: Option<u32>,
    pub guidance_scale: Option<f32>,
    pub strength: Option<f32>,
    pub model: Option<String>,
    /// A sampler name as [`sampler_index`] takes it.
    pub sampler: Option<String>,
    pub batch_count: Option<u32>,
    pub batch_size: Option<u32>,
    pub loras: Vec<Lora>,
    /// The profile's `[extra]`: schema field name -> value.
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A scalar or string of the configuration, typed as its slot is.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    UByte(u8),
    UShort(u16),
    Int(i32),
    UInt(u32),
    Long(i64),
    Float(f32),
    Text(String),
}

/// Why a configuration cannot be written or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "`{name}` is not a field of Draw Things' generation configuration; its fields are: {known}"
    )]
    UnknownField { name: String, known: String },
    #[error("`{name}` cannot be set in [extra]: {reason}")]
    NotSettable { name: String, reason: String },
    #[error("`{name}` must be {expected}, not {got}")]
    WrongValue {
        name: String,
        expected: String,
        got: String,
    },
    #[error("unknown sampler \"{name}\"; Draw Things' samplers are: {known}")]
    UnknownSampler { name: String, known: String },
    #[error(
        "the size {width}x{height} cannot be sent: both sides must be multiples of 64, from 64 to 4194240"
    )]
    BadSize { width: u32, height: u32 },
    #[error("not a generation configuration FlatBuffer: {0}")]
    Unreadable(String),
}

fn wrong(name: &str, expected: impl Into<String>, got: &serde_json::Value) -> ConfigError {
    ConfigError::WrongValue {
        name: name.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

/// Checks an `[extra]` entry against the schema and gives the value its slot's type.
pub fn check_extra(
    name: &str,
    value: &serde_json::Value,
) -> Result<(usize, FieldValue), ConfigError> {
    let slot = slot_of(name)?;
    let field = FIELDS[slot];
    let not_settable = |reason: String| ConfigError::NotSettable {
        name: name.to_string(),
        reason,
    };
    if field.deprecated {
        return Err(not_settable("the field is deprecated and ignored".into()));
    }
    if let Some((_, key)) = SET_FROM_PROFILE.iter().find(|(schema, _)| *schema == name) {
        return Err(not_settable(format!(
            "drawdrop sets it from the profile's `{key}`"
        )));
    }
    let integer = |low: i64, high: i64| {
        value
            .as_i64()
            .filter(|number| (low..=high).contains(number))
            .ok_or_else(|| wrong(name, format!("an integer from {low} to {high}"), value))
    };
    let typed = match field.kind {
        Bool => FieldValue::Bool(
            value
                .as_bool()
                .ok_or_else(|| wrong(name, "true or false", value))?,
        ),
        UByte => FieldValue::UByte(integer(0, 255)? as u8),
        UShort => FieldValue::UShort(integer(0, 65535)? as u16),
        Int => FieldValue::Int(integer(i32::MIN.into(), i32::MAX.into())? as i32),
        UInt => FieldValue::UInt(integer(0, u32::MAX.into())? as u32),
        Long => FieldValue::Long(integer(i64::MIN, i64::MAX)?),
        Float => FieldValue::Float(
            value
                .as_f64()
                .map(|number| number as f32)
                .filter(|number| number.is_finite())
                .ok_or_else(|| wrong(name, "a number", value))?,
        ),
        Text => FieldValue::Text(
            value
                .as_str()
                .ok_or_else(|| wrong(name, "a string", value))?
                .to_string(),
        ),
        Enum(names) => {
            let expected = || format!("one of {}", names.join(", "));
            let index = match value {
                serde_json::Value::String(text) => names.iter().position(|known| known == text),
                serde_json::Value::Number(number) => number
                    .as_u64()
                    .and_then(|index| usize::try_from(index).ok())
                    .filter(|&index| index < names.len()),
                _ => None,
            };
            FieldValue::UByte(index.ok_or_else(|| wrong(name, expected(), value))? as u8)
        }
        Controls | Loras => {
            return Err(not_settable("it is a list of tables".into()));
        }
    };
    Ok((slot, typed))
}

/// Writes `config` as the FlatBuffer sent in a request's `configuration`.
pub fn encode(config: &GenerationConfig) -> Result<Vec<u8>, ConfigError> {
    let units = |pixels: u32| {
        pixels
            .is_multiple_of(64)
            .then_some(pixels / 64)
            .and_then(|units| u16::try_from(units).ok())
            .filter(|&units| units > 0)
    };
    let (Some(width), Some(height)) = (units(config.width), units(config.height)) else {
        return Err(ConfigError::BadSize {
            width: config.width,
            height: config.height,
        });
    };
    let sampler = match &config.sampler {
        Some(name) => Some(
            sampler_index(name).ok_or_else(|| ConfigError::UnknownSampler {
                name: name.clone(),
                known: SAMPLERS.join(", "),
            })?,
        ),
        None => None,
    };
    let extras = config
        .extra
        .iter()
        .map(|(name, value)| check_extra(name, value))
        .collect::<Result<Vec<_>, _>>()?;

    let mut builder = FlatBufferBuilder::new();
    // Strings and tables first: a table's fields point back at them.
    let model = config
        .model
        .as_deref()
        .map(|model| builder.create_string(model));
    let lora_tables: Vec<_> = config
        .loras
        .iter()
        .map(|lora| {
            let file = builder.create_string(&lora.file);
            let table = builder.start_table();
            builder.push_slot_always(voffset(0), file);
            builder.push_slot_always(voffset(1), lora.weight);
            builder.push_slot_always(voffset(2), lora.mode as u8);
            builder.end_table(table)
        })
        .collect();
    let loras = (!lora_tables.is_empty()).then(|| builder.create_vector(&lora_tables));
    let extra_texts: Vec<_> = extras
        .iter()
        .filter_map(|(slot, value)| match value {
            FieldValue::Text(text) => Some((*slot, builder.create_string(text))),
            _ => None,
        })
        .collect();

    let table = builder.start_table();
    builder.push_slot_always(voffset(slot::START_WIDTH), width);
    builder.push_slot_always(voffset(slot::START_HEIGHT), height);
    builder.push_slot_always(voffset(slot::SEED), config.seed);
    let optional_uints = [
        (slot::STEPS, config.steps),
        (slot::BATCH_COUNT, config.batch_count),
        (slot::BATCH_SIZE, config.batch_size),
    ];
    for (at, value) in optional_uints {
        if let Some(value) = value {
            builder.push_slot_always(voffset(at), value);
        }
    }
    let optional_floats = [
        (slot::GUIDANCE_SCALE, config.guidance_scale),
        (slot::STRENGTH, config.strength),
    ];
    for (at, value) in optional_floats {
        if let Some(value) = value {
            builder.push_slot_always(voffset(at), value);
        }
    }
    if let Some(model) = model {
        builder.push_slot_always(voffset(slot::MODEL), model);
    }
    if let Some(sampler) = sampler {
        builder.push_slot_always(voffset(slot::SAMPLER), sampler);
    }
    if let Some(loras) = loras {
        builder.push_slot_always(voffset(slot::LORAS), loras);
    }
    for (slot, value) in &extras {
        let at = voffset(*slot);
        match *value {
            FieldValue::Bool(value) => builder.push_slot_always(at, value),
            FieldValue::UByte(value) => builder.push_slot_always(at, value),
            FieldValue::UShort(value) => builder.push_slot_always(at, value),
            FieldValue::Int(value) => builder.push_slot_always(at, value),
            FieldValue::UInt(value) => builder.push_slot_always(at, value),
            FieldValue::Long(value) => builder.push_slot_always(at, value),
            FieldValue::Float(value) => builder.push_slot_always(at, value),
            FieldValue::Text(_) => {}
        }
    }
    for (slot, text) in extra_texts {
        builder.push_slot_always(voffset(slot), text);
    }
    let root = builder.end_table(table);
    builder.finish(root, None);
    Ok(builder.finished_data().to_vec())
}

/// The slots drawdrop writes itself (a test checks them against [`FIELDS`]).
mod slot {
    pub(super) const START_WIDTH: usize = 1;
    pub(super) const START_HEIGHT: usize = 2;
    pub(super) const SEED: usize = 3;
    pub(super) const STEPS: usize = 4;
    pub(super) const GUIDANCE_SCALE: usize = 5;
    pub(super) const STRENGTH: usize = 6;
    pub(super) const MODEL: usize = 7;
    pub(super) const SAMPLER: usize = 8;
    pub(super) const BATCH_COUNT: usize = 9;
    pub(super) const BATCH_SIZE: usize = 10;
    pub(super) const LORAS: usize = 20;
}

/// A `GenerationConfiguration` table, verified, for reading fields by slot.
#[derive(Clone, Copy)]
pub struct ConfigReader<'a> {
    table: flatbuffers::Table<'a>,
}

/// A `LoRA` table inside a verified configuration.
#[derive(Clone, Copy)]
struct LoraTable<'a> {
    table: flatbuffers::Table<'a>,
}

impl<'a> Follow<'a> for ConfigReader<'a> {
    type Inner = ConfigReader<'a>;
    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        // SAFETY: the caller (flatbuffers, after verification) gives a table's location.
        ConfigReader {
            table: unsafe { flatbuffers::Table::new(buf, loc) },
        }
    }
}

impl<'a> Follow<'a> for LoraTable<'a> {
    type Inner = LoraTable<'a>;
    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        // SAFETY: as for `ConfigReader`.
        LoraTable {
            table: unsafe { flatbuffers::Table::new(buf, loc) },
        }
    }
}

impl Verifiable for LoraTable<'_> {
    fn run_verifier(
        verifier: &mut Verifier<'_, '_>,
        at: usize,
    ) -> Result<(), flatbuffers::InvalidFlatbuffer> {
        verifier
            .visit_table(at)?
            .visit_field::<ForwardsUOffset<&str>>("file", voffset(0), false)?
            .visit_field::<f32>("weight", voffset(1), false)?
            .visit_field::<u8>("mode", voffset(2), false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for ConfigReader<'_> {
    fn run_verifier(
        verifier: &mut Verifier<'_, '_>,
        at: usize,
    ) -> Result<(), flatbuffers::InvalidFlatbuffer> {
        let mut table = verifier.visit_table(at)?;
        for (slot, field) in FIELDS.iter().enumerate() {
            let (name, at) = (field.name, voffset(slot));
            table = match field.kind {
                Bool => table.visit_field::<bool>(name, at, false)?,
                UByte | Enum(_) => table.visit_field::<u8>(name, at, false)?,
                UShort => table.visit_field::<u16>(name, at, false)?,
                Int => table.visit_field::<i32>(name, at, false)?,
                UInt => table.visit_field::<u32>(name, at, false)?,
                Long => table.visit_field::<i64>(name, at, false)?,
                Float => table.visit_field::<f32>(name, at, false)?,
                Text => table.visit_field::<ForwardsUOffset<&str>>(name, at, false)?,
                Loras => table
                    .visit_field::<ForwardsUOffset<Vector<'_, ForwardsUOffset<LoraTable<'_>>>>>(
                        name, at, false,
                    )?,
                // Never read, so never followed: nothing to verify.
                Controls => table,
            };
        }
        table.finish();
        Ok(())
    }
}

impl<'a> ConfigReader<'a> {
    /// Verifies `buffer` as a `GenerationConfiguration` root table.
    pub fn new(buffer: &'a [u8]) -> Result<ConfigReader<'a>, ConfigError> {
        flatbuffers::root::<ConfigReader<'a>>(buffer)
            .map_err(|failure| ConfigError::Unreadable(failure.to_string()))
    }

    /// The field `name` as the buffer holds it, or `None` when it is left out.
    pub fn get(&self, name: &str) -> Result<Option<FieldValue>, ConfigError> {
        let slot = slot_of(name)?;
        let at = voffset(slot);
        let table = &self.table;
        // SAFETY: `new` verified every field read here with this very type.
        let value = unsafe {
            match FIELDS[slot].kind {
                Bool => table.get::<bool>(at, None).map(FieldValue::Bool),
                UByte | Enum(_) => table.get::<u8>(at, None).map(FieldValue::UByte),
                UShort => table.get::<u16>(at, None).map(FieldValue::UShort),
                Int => table.get::<i32>(at, None).map(FieldValue::Int),
                UInt => table.get::<u32>(at, None).map(FieldValue::UInt),
                Long => table.get::<i64>(at, None).map(FieldValue::Long),
                Float => table.get::<f32>(at, None).map(FieldValue::Float),
                Text => table
                    .get::<ForwardsUOffset<&str>>(at, None)
                    .map(|text| FieldValue::Text(text.to_string())),
                Controls | Loras => {
                    return Err(ConfigError::NotSettable {
                        name: name.to_string(),
                        reason: "it is a list of tables".into(),
                    });
                }
            }
        };
        Ok(value)
    }

    /// The `loras` entries (none when left out).
    pub fn loras(&self) -> Vec<Lora> {
        let at = voffset(slot::LORAS);
        // SAFETY: `new` verified `loras` as a vector of `LoRA` tables and their fields.
        unsafe {
            let Some(loras) = self
                .table
                .get::<ForwardsUOffset<Vector<'a, ForwardsUOffset<LoraTable<'a>>>>>(at, None)
            else {
                return Vec::new();
            };
            loras
                .iter()
                .map(|lora| {
                    let file = lora
                        .table
                        .get::<ForwardsUOffset<&str>>(voffset(0), Some(""));
                    let mode = lora.table.get::<u8>(voffset(2), Some(0)).unwrap_or(0);
                    Lora {
                        file: file.unwrap_or("").to_string(),
                        weight: lora.table.get::<f32>(voffset(1), Some(0.6)).unwrap_or(0.6),
                        mode: match mode {
                            1 => LoraMode::Base,
                            2 => LoraMode::Refiner,
                            _ => LoraMode::All,
                        },
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn basic() -> GenerationConfig {
        GenerationConfig {
            width: 1024,
            height: 768,
            seed: 42,
            ..Default::default()
        }
    }

    /// A field's bytes found by hand: root offset -> table -> vtable -> field, no reader.
    fn raw_field(buffer: &[u8], slot: usize, len: usize) -> Option<&[u8]> {
        let u32_at = |at: usize| u32::from_le_bytes(buffer[at..at + 4].try_into().unwrap());
        let table = u32_at(0) as usize;
        let vtable = (table as i64 - i64::from(u32_at(table) as i32)) as usize;
        let vtable_len = u16::from_le_bytes([buffer[vtable], buffer[vtable + 1]]) as usize;
        let entry = 4 + 2 * slot;
        if entry + 2 > vtable_len {
            return None;
        }
        let offset =
            u16::from_le_bytes([buffer[vtable + entry], buffer[vtable + entry + 1]]) as usize;
        (offset != 0).then(|| &buffer[table + offset..table + offset + len])
    }

    #[test]
    fn the_table_has_the_schemas_88_slots_with_drawdrops_where_it_writes_them() {
        assert_eq!(FIELDS.len(), 88);
        assert_eq!(FIELDS[87].name, "expand_prompt_to_json");
        let deprecated: Vec<_> = FIELDS
            .iter()
            .enumerate()
            .filter(|(_, f)| f.deprecated)
            .map(|(at, _)| at)
            .collect();
        assert_eq!(deprecated, vec![23, 24]);
        let ours = [
            (slot::START_WIDTH, "start_width", UShort),
            (slot::START_HEIGHT, "start_height", UShort),
            (slot::SEED, "seed", UInt),
            (slot::STEPS, "steps", UInt),
            (slot::GUIDANCE_SCALE, "guidance_scale", Float),
            (slot::STRENGTH, "strength", Float),
            (slot::MODEL, "model", Text),
            (slot::SAMPLER, "sampler", Enum(SAMPLER_TYPES)),
            (slot::BATCH_COUNT, "batch_count", UInt),
            (slot::BATCH_SIZE, "batch_size", UInt),
            (slot::LORAS, "loras", Loras),
        ];
        for (at, name, kind) in ours {
            assert_eq!((FIELDS[at].name, FIELDS[at].kind), (name, kind));
        }
        assert_eq!(FIELDS[slot::BATCH_COUNT].default, 1.0);
    }

    #[test]
    fn drawdrops_sampler_names_map_onto_the_schema_order() {
        assert_eq!(SAMPLERS.len(), SAMPLER_TYPES.len());
        let pairs = [
            ("DPM++ 2M Karras", 0),
            ("Euler a", 1),
            ("DDIM", 2),
            ("UniPC", 5),
            ("Euler A Trailing", 10),
            ("DPM++ 2M AYS", 12),
            ("DDIM Trailing", 16),
            ("TCD Trailing", 19),
            ("EulerAAYS", 13),
        ];
        for (name, index) in pairs {
            assert_eq!(sampler_index(name), Some(index), "{name}");
        }
        assert_eq!(sampler_index("Euler"), None);
    }

    #[test]
    fn sizes_go_in_64_pixel_units_at_their_slots_in_a_plain_root_buffer() {
        let buffer = encode(&basic()).unwrap();
        assert_eq!(raw_field(&buffer, 1, 2), Some(&16u16.to_le_bytes()[..]));
        assert_eq!(raw_field(&buffer, 2, 2), Some(&12u16.to_le_bytes()[..]));
        assert_eq!(raw_field(&buffer, 3, 4), Some(&42u32.to_le_bytes()[..]));
        // Left out: the server's schema default applies.
        assert_eq!(raw_field(&buffer, slot::STEPS, 4), None);
    }

    #[test]
    fn everything_written_reads_back_by_slot() {
        let config = GenerationConfig {
            steps: Some(30),
            guidance_scale: Some(7.5),
            strength: Some(0.6),
            model: Some("sd_xl_base_1.0_f16.ckpt".into()),
            sampler: Some("Euler A Trailing".into()),
            batch_count: Some(2),
            batch_size: Some(3),
            loras: vec![
                Lora {
                    file: "a.ckpt".into(),
                    weight: 1.0,
                    mode: LoraMode::All,
                },
                Lora {
                    file: "b.ckpt".into(),
                    weight: 0.25,
                    mode: LoraMode::Refiner,
                },
            ],
            extra: BTreeMap::from([
                ("sharpness".to_string(), json!(2)),
                ("seed_mode".to_string(), json!("ScaleAlike")),
                ("tiled_decoding".to_string(), json!(true)),
                ("t5_text".to_string(), json!("a long prompt")),
                ("tea_cache_end".to_string(), json!(-1)),
                ("decoding_tile_width".to_string(), json!(12)),
                ("color_calibration".to_string(), json!(1)),
            ]),
            ..basic()
        };
        let buffer = encode(&config).unwrap();
        let reader = ConfigReader::new(&buffer).unwrap();
        let expect = [
            ("start_width", FieldValue::UShort(16)),
            ("start_height", FieldValue::UShort(12)),
            ("seed", FieldValue::UInt(42)),
            ("steps", FieldValue::UInt(30)),
            ("guidance_scale", FieldValue::Float(7.5)),
            ("strength", FieldValue::Float(0.6)),
            ("model", FieldValue::Text("sd_xl_base_1.0_f16.ckpt".into())),
            ("sampler", FieldValue::UByte(10)),
            ("batch_count", FieldValue::UInt(2)),
            ("batch_size", FieldValue::UInt(3)),
            ("sharpness", FieldValue::Float(2.0)),
            ("seed_mode", FieldValue::UByte(2)),
            ("tiled_decoding", FieldValue::Bool(true)),
            ("t5_text", FieldValue::Text("a long prompt".into())),
            ("tea_cache_end", FieldValue::Int(-1)),
            ("decoding_tile_width", FieldValue::UShort(12)),
            ("color_calibration", FieldValue::UByte(1)),
        ];
        for (name, value) in expect {
            assert_eq!(reader.get(name).unwrap(), Some(value), "{name}");
        }
        assert_eq!(reader.get("shift").unwrap(), None);
        assert_eq!(reader.loras(), config.loras);
    }

    #[test]
    fn extra_names_outside_the_schema_are_refused_with_the_list() {
        let message = check_extra("sharpnes", &json!(2)).unwrap_err().to_string();
        assert!(message.contains("`sharpnes` is not a field"), "{message}");
        assert!(message.contains("sharpness, shift"), "{message}");
        assert!(!message.contains("decode_with_attention"), "{message}");
    }

    #[test]
    fn extra_values_are_checked_against_the_slot_type() {
        let refused = [
            ("steps", json!(4), "from the profile's `steps`"),
            ("start_width", json!(4), "from the profile's `width`"),
            ("loras", json!([]), "`[[loras]]`"),
            ("decode_with_attention", json!(true), "deprecated"),
            ("controls", json!([]), "a list of tables"),
            (
                "upscaler_scale_factor",
                json!(300),
                "an integer from 0 to 255",
            ),
            ("tea_cache_start", json!(1.5), "an integer"),
            (
                "seed_mode",
                json!("Bogus"),
                "one of Legacy, TorchCpuCompatible, ScaleAlike, NvidiaGpuCompatible",
            ),
            ("seed_mode", json!(4), "one of Legacy"),
            ("tiled_decoding", json!("yes"), "true or false"),
            ("upscaler", json!(3), "a string"),
            ("sharpness", json!("2"), "a number"),
        ];
        for (name, value, wanted) in refused {
            let message = check_extra(name, &value).unwrap_err().to_string();
            assert!(message.contains(wanted), "{name}: {message}");
        }
        let config = GenerationConfig {
            extra: BTreeMap::from([("clip_skip".to_string(), json!(-2))]),
            ..basic()
        };
        assert!(matches!(
            encode(&config),
            Err(ConfigError::WrongValue { .. })
        ));
    }

    #[test]
    fn sizes_off_the_64_grid_and_unknown_samplers_are_refused() {
        for (width, height) in [(1000, 1024), (0, 64), (64, 64 * 65536)] {
            let config = GenerationConfig {
                width,
                height,
                ..basic()
            };
            assert_eq!(encode(&config), Err(ConfigError::BadSize { width, height }));
        }
        let config = GenerationConfig {
            sampler: Some("Euler".into()),
            ..basic()
        };
        let message = encode(&config).unwrap_err().to_string();
        assert!(
            message.contains("\"Euler\"") && message.contains("DPM++ 2M Karras, Euler a"),
            "{message}"
        );
    }

    #[test]
    fn damaged_buffers_are_refused_or_read_never_overrun() {
        let config = GenerationConfig {
            model: Some("m.ckpt".into()),
            loras: vec![Lora {
                file: "l.ckpt".into(),
                weight: 0.5,
                mode: LoraMode::Base,
            }],
            extra: BTreeMap::from([("t5_text".to_string(), json!("words"))]),
            ..basic()
        };
        let good = encode(&config).unwrap();
        for at in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = good.clone();
                damaged[at] ^= flip;
                if let Ok(reader) = ConfigReader::new(&damaged) {
                    for field in FIELDS
                        .iter()
                        .filter(|f| !matches!(f.kind, Controls | Loras))
                    {
                        let _ = reader.get(field.name).unwrap();
                    }
                    let _ = reader.loras();
                }
            }
        }
        for len in 0..good.len() {
            if let Ok(reader) = ConfigReader::new(&good[..len]) {
                let _ = reader.get("model").unwrap();
                let _ = reader.loras();
            }
        }
    }

    #[test]
    fn the_reader_refuses_what_is_not_a_configuration() {
        assert!(matches!(
            ConfigReader::new(&[1, 2, 3]),
            Err(ConfigError::Unreadable(_))
        ));
        let mut damaged = encode(&basic()).unwrap();
        damaged[0] = 0xff;
        assert!(ConfigReader::new(&damaged).is_err());
        let reader_error = ConfigReader::new(&encode(&basic()).unwrap())
            .unwrap()
            .get("nope")
            .unwrap_err();
        assert!(matches!(reader_error, ConfigError::UnknownField { .. }));
    }
}
