//! The settings a result was made with, written into the result PNG as a `parameters` text
//! chunk in AUTOMATIC1111's "infotext" format, which A1111, Draw Things and image browsers
//! read back:
//!
//! ```text
//! a watercolor painting <lora:dmd2:1>
//! Negative prompt: blurry
//! Steps: 4, Sampler: LCM, CFG scale: 1, Seed: 1234, Size: 1024x768, Model: sd_xl_base_1.0_f16.ckpt, Denoising strength: 0.6, Version: drawdrop 0.1.0
//! ```
//! Only what drawdrop knows goes in: a key the profile left to the server is left out. An
//! image that already carries a `parameters` chunk (A1111 writes its own, with exact seeds)
//! keeps the server's, and every other chunk the server wrote is kept byte for byte.

use crate::config::Settings;
use crate::image::{insert_text_chunk, text_chunks};

/// The chunk keyword A1111 and its readers use.
pub(crate) const KEYWORD: &str = "parameters";

/// The infotext for an image made with `settings` at `size` with `seed` (`None`: the request
/// carried none, as a ComfyUI workflow without a sampler node for it).
pub(crate) fn infotext(settings: &Settings, size: (u32, u32), seed: Option<u32>) -> String {
    let mut prompt = settings.prompt.clone().unwrap_or_default();
    for lora in settings.loras.iter().flatten() {
        let name = lora_name(&lora.file);
        if !prompt.is_empty() {
            prompt.push(' ');
        }
        prompt.push_str(&format!("<lora:{name}:{}>", lora.weight));
    }
    // No prompt: no line for it (A1111's readers strip leading blank lines anyway).
    let mut lines = Vec::new();
    if !prompt.is_empty() {
        lines.push(prompt);
    }
    if let Some(negative) = &settings.negative_prompt {
        lines.push(format!("Negative prompt: {negative}"));
    }
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(steps) = settings.steps {
        fields.push(("Steps", steps.to_string()));
    }
    if let Some(sampler) = &settings.sampler {
        fields.push(("Sampler", sampler.clone()));
    }
    if let Some(scale) = settings.guidance_scale {
        fields.push(("CFG scale", scale.to_string()));
    }
    if let Some(seed) = seed {
        fields.push(("Seed", seed.to_string()));
    }
    fields.push(("Size", format!("{}x{}", size.0, size.1)));
    if let Some(model) = &settings.model {
        fields.push(("Model", model.clone()));
    }
    if let Some(strength) = settings.strength {
        fields.push(("Denoising strength", strength.to_string()));
    }
    if let Some(count) = settings.batch_count.filter(|&count| count > 1) {
        fields.push(("Batch count", count.to_string()));
    }
    fields.push(("Version", format!("drawdrop {}", env!("CARGO_PKG_VERSION"))));
    let line: Vec<String> = fields
        .into_iter()
        .map(|(key, value)| format!("{key}: {}", quote(&value)))
        .collect();
    lines.push(line.join(", "));
    lines.join("\n")
}

/// Adds the infotext to `png` in place, unless the server already wrote a `parameters`
/// chunk. A PNG that cannot take the chunk stays unchanged (it was checked before).
pub(crate) fn add_infotext(png: &mut Vec<u8>, infotext: &str) {
    if text_chunks(png)
        .iter()
        .any(|(keyword, _)| keyword == KEYWORD)
    {
        return;
    }
    let _ = insert_text_chunk(png, KEYWORD, infotext);
}

/// A1111 quotes a value that holds a comma, colon or newline as a JSON string.
fn quote(value: &str) -> String {
    if value.contains([',', ':', '\n']) {
        serde_json::to_string(value).unwrap_or_else(|_| value.to_owned())
    } else {
        value.to_owned()
    }
}

/// A LoRA as A1111 names it: the file name without its extension.
pub(crate) fn lora_name(file: &str) -> &str {
    for extension in [".safetensors", ".ckpt", ".pt", ".bin"] {
        if let Some(name) = file.strip_suffix(extension) {
            return name;
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Lora;

    #[test]
    fn full_infotext_in_a1111_format() {
        let settings = Settings {
            prompt: Some("a watercolor painting".into()),
            negative_prompt: Some("blurry".into()),
            steps: Some(4),
            strength: Some(0.6),
            guidance_scale: Some(1.0),
            sampler: Some("LCM".into()),
            model: Some("sd_xl_base_1.0_f16.ckpt".into()),
            loras: Some(vec![Lora {
                file: "dmd2_lora.safetensors".into(),
                weight: 0.8,
            }]),
            ..Settings::default()
        };
        assert_eq!(
            infotext(&settings, (1024, 768), Some(1234)),
            format!(
                "a watercolor painting <lora:dmd2_lora:0.8>\nNegative prompt: blurry\n\
                 Steps: 4, Sampler: LCM, CFG scale: 1, Seed: 1234, Size: 1024x768, \
                 Model: sd_xl_base_1.0_f16.ckpt, Denoising strength: 0.6, Version: drawdrop {}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn what_the_server_decided_is_left_out_and_odd_values_are_quoted() {
        let settings = Settings {
            model: Some("a, b: c".into()),
            ..Settings::default()
        };
        let text = infotext(&settings, (512, 512), Some(7));
        assert!(
            text.starts_with("Seed: 7, Size: 512x512, Model: \"a, b: c\", Version: "),
            "no prompt, no empty line for it: {text:?}"
        );
        assert!(!text.contains("Steps"));
        assert!(!text.contains('\n'), "{text:?}");
    }

    #[test]
    fn a_seed_the_request_did_not_carry_is_not_claimed() {
        let text = infotext(&Settings::default(), (512, 512), None);
        assert!(text.starts_with("Size: 512x512, Version: "), "{text:?}");
    }

    #[test]
    fn a_negative_prompt_alone_comes_first() {
        let settings = Settings {
            negative_prompt: Some("blurry".into()),
            ..Settings::default()
        };
        let text = infotext(&settings, (512, 512), Some(7));
        assert!(
            text.starts_with("Negative prompt: blurry\nSeed: 7, Size: 512x512"),
            "{text:?}"
        );
    }

    #[test]
    fn the_servers_own_parameters_are_kept() {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(2, 2)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        let plain = out.into_inner();
        let mut ours = plain.clone();
        add_infotext(&mut ours, "drawdrop's");
        assert_eq!(
            text_chunks(&ours),
            [(KEYWORD.to_owned(), "drawdrop's".to_owned())]
        );
        let server = crate::image::with_text_chunk(&plain, KEYWORD, "the server's").unwrap();
        let mut kept = server.clone();
        add_infotext(&mut kept, "drawdrop's");
        assert_eq!(kept, server);
    }
}
