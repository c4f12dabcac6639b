//! ComfyUI as a backend: a profile's workflow (API format) is the request. Per job the
//! profile's keys go into the workflow's nodes (`graph`), the picture is uploaded under a
//! name of its own (so ComfyUI's cache never answers with an older job's output) and put
//! into the `LoadImage` node, the graph is queued with a prompt id noted durably first (a
//! restart finds it again in the history instead of queueing it twice), followed on the
//! websocket (`follow`), and its saved images fetched (`client`). Probe: `GET /system_stats`;
//! `check` reads `GET /object_info` (`check`).
//!
//! The websocket is plain `ws://`; with an `https` URL it is tried as `wss://` only where the
//! build can, else the history is polled (the job goes through either way).

pub(crate) mod check;
mod client;
mod follow;
pub(crate) mod graph;

use super::{Backend, BoxFuture, Generation, Init, Offer, Probe, Request, Trouble, Unusable, http};
use crate::config::{Server, Settings, Workflow};
use crate::image::{self, Limits};
use bytes::Bytes;
use serde_json::Value;

/// The text chunk ComfyUI keeps the graph of a result in.
pub(crate) const PROMPT_CHUNK: &str = "prompt";

/// A ComfyUI server.
#[derive(Debug, Clone)]
pub(crate) struct ComfyUi {
    client: http::Client,
}

impl ComfyUi {
    pub(crate) fn new(server: &Server) -> Result<ComfyUi, Unusable> {
        Ok(ComfyUi {
            client: http::Client::new(server)?,
        })
    }

    /// One job, to its result pictures.
    async fn run(&self, job: &Generation<'_>) -> Result<Vec<Vec<u8>>, Trouble> {
        let Some(workflow) = &job.request.workflow else {
            return Err(Trouble::Status {
                code: 400,
                detail: "this profile has no `workflow`: ComfyUI runs a workflow".to_owned(),
                retry_after: None,
            });
        };
        if let Some(noted) = job.journal.noted()
            && let Some(images) = self.resume(workflow, &noted, job).await?
        {
            return Ok(images);
        }
        let client_id = format!("drawdrop-{}", random_id());
        let socket = follow::connect(&self.client, &client_id).await;
        let name = format!("drawdrop-{}.png", random_id());
        let uploaded = client::upload(&self.client, &name, &job.body).await?;
        let graph = graph::with_picture(workflow, &uploaded).map_err(Trouble::BadAnswer)?;
        let prompt_id = uuid();
        job.journal.note(&prompt_id).await.map_err(|error| {
            Trouble::BadAnswer(format!(
                "cannot note the prompt in the job's claim: {error}"
            ))
        })?;
        let prompt_id =
            client::queue(&self.client, workflow, &graph, &client_id, &prompt_id).await?;
        let entry = follow::until_done(&self.client, socket, &prompt_id, job.progress).await?;
        self.results(workflow, &graph, &entry, job.limits).await
    }

    /// A prompt queued for this job before drawdrop stopped: its results when it finished,
    /// followed when it still waits or runs; `None` when it must be queued (again).
    async fn resume(
        &self,
        workflow: &Workflow,
        prompt_id: &str,
        job: &Generation<'_>,
    ) -> Result<Option<Vec<Vec<u8>>>, Trouble> {
        let entry = match client::history(&self.client, prompt_id).await? {
            Some(entry) => entry,
            None if client::in_queue(&self.client, prompt_id).await? => {
                tracing::info!("prompt {prompt_id} is still in ComfyUI's queue: following it");
                follow::until_done(&self.client, None, prompt_id, job.progress).await?
            }
            None => return Ok(None),
        };
        if follow::outcome(workflow, &entry).is_err() {
            // It failed before: this is the next attempt.
            return Ok(None);
        }
        tracing::info!("prompt {prompt_id} was done in ComfyUI: taking its results");
        let graph = entry["prompt"][2].clone();
        let graph = if graph.is_object() {
            graph
        } else {
            Value::Object((*workflow.graph).clone())
        };
        self.results(workflow, &graph, &entry, job.limits)
            .await
            .map(Some)
    }

    /// The images a finished prompt saved, each checked, carrying the graph in a `prompt`
    /// chunk as ComfyUI writes it (added when the server wrote none).
    async fn results(
        &self,
        workflow: &Workflow,
        graph: &Value,
        entry: &Value,
        limits: &Limits,
    ) -> Result<Vec<Vec<u8>>, Trouble> {
        let files = follow::outcome(workflow, entry)?;
        let mut images = Vec::with_capacity(files.len());
        for (number, file) in files.iter().enumerate() {
            let mut png = client::view(&self.client, file).await?;
            image::inspect(&png, limits).map_err(|problem| {
                Trouble::BadAnswer(format!(
                    "image {} of ComfyUI's results is not a usable PNG: {problem}",
                    number + 1
                ))
            })?;
            let has_graph = image::text_chunks(&png)
                .iter()
                .any(|(keyword, _)| keyword == PROMPT_CHUNK);
            if !has_graph {
                let _ = image::insert_text_chunk(&mut png, PROMPT_CHUNK, &graph.to_string());
            }
            images.push(png);
        }
        Ok(images)
    }

    /// `GET /object_info`, for `check`.
    async fn object_info(&self) -> Option<Value> {
        self.client.get_json("object_info").await.ok()
    }
}

impl Backend for ComfyUi {
    fn server(&self) -> &Server {
        self.client.server()
    }

    fn product(&self) -> &'static str {
        "ComfyUI"
    }

    fn hint_when_down(&self) -> &'static str {
        " — is ComfyUI running, listening on this address (--listen, --port)?"
    }

    fn probe(&self) -> BoxFuture<'_, Probe> {
        Box::pin(async {
            match self.client.probe("system_stats").await {
                Ok(stats) => Probe::Up(
                    stats
                        .as_ref()
                        .and_then(|stats| stats["system"]["comfyui_version"].as_str())
                        .map(|version| format!(": ComfyUI {version}"))
                        .unwrap_or_default(),
                ),
                Err(reason) => Probe::Down(reason),
            }
        })
    }

    fn offer(&self, answers: bool) -> BoxFuture<'_, Offer> {
        Box::pin(async move {
            if !answers {
                return Offer::default();
            }
            let Some(info) = self.object_info().await else {
                return Offer::default();
            };
            // Models and samplers are checked where the workflow uses them (`check`).
            Offer {
                catalog: Some(std::sync::Arc::new(info)),
                ..Offer::default()
            }
        })
    }

    fn check_settings(&self, settings: &Settings, offer: &Offer) -> Vec<String> {
        match &offer.catalog {
            Some(info) => check::problems(settings, info),
            None => Vec::new(),
        }
    }

    fn size(&self, upright: (u32, u32), settings: &Settings) -> (u32, u32) {
        // ComfyUI's workflow owns its sizing: the picture goes at its own size unless the
        // profile asks for one.
        match (settings.width, settings.height, settings.max_megapixels) {
            (None, None, None) => upright,
            _ => super::standard_size(upright, settings),
        }
    }

    fn request(&self, settings: &Settings, size: (u32, u32), seed: u32) -> Result<Request, String> {
        let Some(workflow) = &settings.workflow else {
            return Err(
                "this profile has no `workflow`, and a ComfyUI server runs workflows: \
                 add `workflow = \"NAME.json\"` (exported with Workflow > Export (API))"
                    .to_owned(),
            );
        };
        let (filled, mut sent) = graph::fill(workflow, settings, seed)?;
        sent.insert("width".to_owned(), Value::from(size.0));
        sent.insert("height".to_owned(), Value::from(size.1));
        Ok(Request {
            settings: sent,
            model: settings.model.clone(),
            expected_images: filled.output_nodes().len().max(1),
            workflow: Some(filled),
        })
    }

    fn encode(&self, _request: &Request, init: Init<'_>) -> Result<Bytes, String> {
        Ok(Bytes::from(init.png()?.into_owned()))
    }

    fn generate<'a>(&'a self, job: Generation<'a>) -> BoxFuture<'a, Result<Vec<Vec<u8>>, Trouble>> {
        Box::pin(async move {
            let timeout = self.client.server().timeout;
            match tokio::time::timeout(timeout, self.run(&job)).await {
                Ok(answer) => answer,
                Err(_) => Err(Trouble::TimedOut(timeout)),
            }
        })
    }
}

/// 32 random hex digits.
fn random_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A random (version 4) UUID, as ComfyUI's prompt ids are.
fn uuid() -> String {
    let bits = (fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ids_are_version_4_uuids() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]), "{id}");
        assert_ne!(uuid(), id);
    }
}
