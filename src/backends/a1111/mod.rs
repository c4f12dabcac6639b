//! AUTOMATIC1111-compatible servers (A1111, Forge, SD.Next) as a backend: the profile's names
//! translated (strength -> denoising_strength, guidance_scale -> cfg_scale, sampler ->
//! sampler_name, batch_count -> n_iter, model -> override_settings.sd_model_checkpoint, loras
//! -> `<lora:NAME:WEIGHT>` in the prompt) at `POST /sdapi/v1/img2img`; the probe is
//! `GET /sdapi/v1/options`; `check` asks for its models, samplers and LoRAs; a batch's
//! answer may lead with a grid; progress is asked for while a request runs (`progress`).

pub(crate) mod progress;

use super::sdapi::{self, request};
use super::{Backend, BoxFuture, Generation, Init, Offer, Probe, Request, Trouble, Unusable, http};
use crate::config::{Server, Settings};
use crate::image::parameters::lora_name;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// An AUTOMATIC1111-compatible server.
#[derive(Debug, Clone)]
pub(crate) struct A1111 {
    client: http::Client,
}

impl A1111 {
    pub(crate) fn new(server: &Server) -> Result<A1111, Unusable> {
        Ok(A1111 {
            client: http::Client::new(server)?,
        })
    }

    /// The names one of its lists holds (`keys` of each item); `None` when it does not tell.
    async fn list(&self, path: &str, keys: &[&str]) -> Option<Vec<String>> {
        let list = self.client.get_json(path).await.ok()?;
        Some(
            list.as_array()?
                .iter()
                .flat_map(|item| {
                    keys.iter()
                        .filter_map(|key| item[*key].as_str().map(str::to_owned))
                })
                .collect(),
        )
    }
}

impl Backend for A1111 {
    fn server(&self) -> &Server {
        self.client.server()
    }

    fn product(&self) -> &'static str {
        "the A1111 server"
    }

    fn hint_when_down(&self) -> &'static str {
        " — is the server started with --api?"
    }

    fn probe(&self) -> BoxFuture<'_, Probe> {
        Box::pin(async {
            match self.client.probe("sdapi/v1/options").await {
                Ok(_) => Probe::Up(String::new()),
                Err(reason) => Probe::Down(reason),
            }
        })
    }

    fn offer(&self, answers: bool) -> BoxFuture<'_, Offer> {
        Box::pin(async move {
            if !answers {
                return Offer::default();
            }
            Offer {
                models: self
                    .list("sdapi/v1/sd-models", &["title", "model_name"])
                    .await,
                samplers: self.list("sdapi/v1/samplers", &["name"]).await,
                loras: self.list("sdapi/v1/loras", &["name"]).await,
                keys: None,
                known_by_kind: false,
                catalog: None,
            }
        })
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
            let answer = self
                .client
                .img2img(sdapi::IMG2IMG, job.body, expected, true, job.limits);
            progress::while_running(&self.client, job.progress, answer).await
        })
    }
}

/// The request keys: the profile's names in A1111's words.
fn keys(settings: &Settings) -> request::RequestSettings {
    let mut out = Map::new();
    let put = |out: &mut Map<String, Value>, key, value| request::put(out, key, value);
    put(&mut out, "prompt", prompt(settings));
    put(
        &mut out,
        "negative_prompt",
        settings.negative_prompt.clone().map(Value::from),
    );
    put(&mut out, "steps", settings.steps.map(Value::from));
    put(
        &mut out,
        "denoising_strength",
        settings.strength.map(Value::from),
    );
    put(
        &mut out,
        "cfg_scale",
        settings.guidance_scale.map(Value::from),
    );
    put(
        &mut out,
        "sampler_name",
        settings.sampler.clone().map(Value::from),
    );
    put(&mut out, "n_iter", settings.batch_count.map(Value::from));
    let model = |model: &String| json!({ "sd_model_checkpoint": model });
    put(
        &mut out,
        "override_settings",
        settings.model.as_ref().map(model),
    );
    out
}

/// A1111 takes LoRAs as `<lora:NAME:WEIGHT>` in the prompt, NAME without the extension.
fn prompt(settings: &Settings) -> Option<Value> {
    let tags: Vec<String> = settings
        .loras
        .iter()
        .flatten()
        .map(|lora| format!("<lora:{}:{}>", lora_name(&lora.file), lora.weight))
        .collect();
    match (&settings.prompt, tags.is_empty()) {
        (prompt, true) => prompt.clone().map(Value::from),
        (Some(prompt), false) => Some(Value::from(format!("{prompt} {}", tags.join(" ")))),
        (None, false) => Some(Value::from(tags.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1111_keys_are_translated() {
        let sent = request::request(
            keys(&request::watercolor()),
            &request::watercolor(),
            (512, 512),
            7,
        )
        .settings;
        assert_eq!(
            Value::Object(sent),
            json!({
                "prompt": "a watercolor painting <lora:dmd2_lora_f16:1>", "negative_prompt": "blurry",
                "steps": 4, "denoising_strength": 0.6, "cfg_scale": 7.0,
                "sampler_name": "DPM++ 2M Karras", "n_iter": 2,
                "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0_f16.ckpt"},
                "seed": 7, "width": 512, "height": 512, "sharpness": 2
            })
        );
    }

    #[test]
    fn an_empty_profile_sends_no_key_of_its_own() {
        assert!(keys(&Settings::default()).is_empty());
    }
}
