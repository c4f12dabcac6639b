//! Draw Things' HTTP API as a backend: its API server in HTTP mode takes the profile's own
//! names (`strength`, `guidance_scale`, `loras` ...) at `POST /sdapi/v1/img2img`, refuses
//! any key it does not know (`known`), answers `GET /` with its current settings (the
//! probe), and tells no progress while it works.

pub mod known;

use super::sdapi::{self, request};
use super::{Backend, BoxFuture, Generation, Init, Offer, Probe, Request, Trouble, Unusable, http};
use crate::config::{Lora, Server, Settings};
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// A Draw Things app (or server) speaking HTTP.
#[derive(Debug, Clone)]
pub struct DrawThingsHttp {
    client: http::Client,
}

impl DrawThingsHttp {
    pub fn new(server: &Server) -> Result<DrawThingsHttp, Unusable> {
        Ok(DrawThingsHttp {
            client: http::Client::new(server)?,
        })
    }
}

impl Backend for DrawThingsHttp {
    fn server(&self) -> &Server {
        self.client.server()
    }

    fn product(&self) -> &'static str {
        "Draw Things"
    }

    fn hint_when_down(&self) -> &'static str {
        " — is Draw Things open, with its API server switched on (HTTP, same port)?"
    }

    fn probe(&self) -> BoxFuture<'_, Probe> {
        Box::pin(async {
            match self.client.probe("").await {
                Ok(settings) => Probe::Up(settings.as_ref().map(describe).unwrap_or_default()),
                Err(reason) => Probe::Down(reason),
            }
        })
    }

    fn offer(&self, _answers: bool) -> BoxFuture<'_, Offer> {
        let names = |list: &[&str]| Some(list.iter().map(|name| (*name).to_owned()).collect());
        let offer = Offer {
            samplers: names(known::SAMPLERS),
            keys: names(known::KNOWN_KEYS).map(|keys| (keys, "Unrecognized keys")),
            known_by_kind: true,
            ..Offer::default()
        };
        Box::pin(async move { offer })
    }

    fn request(&self, settings: &Settings, size: (u32, u32), seed: u32) -> Result<Request, String> {
        request::refuse_workflow(settings)?;
        Ok(request::request(keys(settings), settings, size, seed))
    }

    fn encode(&self, request: &Request, init: Init<'_>) -> Result<Bytes, String> {
        request::encode(request, init)
    }

    fn generate<'a>(&'a self, job: Generation<'a>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, Trouble>> {
        Box::pin(async move {
            let expected = job.request.expected_images;
            self.client
                .img2img(sdapi::IMG2IMG, job.body, expected, false, job.limits)
                .await
        })
    }
}

/// The request keys: the profile's names, as Draw Things takes them (over HTTP, and as
/// recorded for its gRPC API).
pub(crate) fn keys(settings: &Settings) -> request::RequestSettings {
    let mut out = Map::new();
    let put = |out: &mut Map<String, Value>, key, value| request::put(out, key, value);
    put(&mut out, "prompt", settings.prompt.clone().map(Value::from));
    put(
        &mut out,
        "negative_prompt",
        settings.negative_prompt.clone().map(Value::from),
    );
    put(&mut out, "steps", settings.steps.map(Value::from));
    put(&mut out, "strength", settings.strength.map(Value::from));
    put(
        &mut out,
        "guidance_scale",
        settings.guidance_scale.map(Value::from),
    );
    put(
        &mut out,
        "sampler",
        settings.sampler.clone().map(Value::from),
    );
    put(&mut out, "model", settings.model.clone().map(Value::from));
    put(
        &mut out,
        "batch_count",
        settings.batch_count.map(Value::from),
    );
    put(&mut out, "loras", settings.loras.as_deref().map(loras));
    out
}

fn loras(loras: &[Lora]) -> Value {
    Value::Array(
        loras
            .iter()
            .map(|lora| json!({ "file": lora.file, "weight": lora.weight }))
            .collect(),
    )
}

/// Draw Things' current model and size, from its `GET /` answer.
fn describe(settings: &Value) -> String {
    let model = settings.get("model").and_then(|m| m.as_str());
    let width = settings.get("width").and_then(|w| w.as_u64());
    let height = settings.get("height").and_then(|h| h.as_u64());
    match (model, width, height) {
        (Some(model), Some(w), Some(h)) => format!(": its current model is {model}, size {w}x{h}"),
        (Some(model), _, _) => format!(": its current model is {model}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_things_keys_are_the_profile_keys() {
        let sent = request::request(
            keys(&request::watercolor()),
            &request::watercolor(),
            (1024, 768),
            42,
        )
        .settings;
        assert_eq!(
            Value::Object(sent),
            json!({
                "prompt": "a watercolor painting", "negative_prompt": "blurry", "steps": 4,
                "strength": 0.6, "guidance_scale": 7.0, "sampler": "DPM++ 2M Karras",
                "model": "sd_xl_base_1.0_f16.ckpt", "batch_count": 2,
                "loras": [{"file": "dmd2_lora_f16.ckpt", "weight": 1.0}],
                "seed": 42, "width": 1024, "height": 768, "sharpness": 2
            })
        );
    }

    #[test]
    fn an_empty_profile_sends_no_key_of_its_own() {
        assert!(keys(&Settings::default()).is_empty());
    }

    #[test]
    fn the_probe_tells_the_current_model_and_size() {
        let answer = json!({"model": "sd_xl_base_1.0_f16.ckpt", "width": 1024, "height": 768});
        assert_eq!(
            describe(&answer),
            ": its current model is sd_xl_base_1.0_f16.ckpt, size 1024x768"
        );
        assert_eq!(describe(&json!({})), "");
    }
}
