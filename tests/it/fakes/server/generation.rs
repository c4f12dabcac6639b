//! One generation request, shared by both flavors: counted in flight, given its fault
//! (scripted or drawn), queued behind the one running generation, answered off the async
//! threads, then the simulated generation's delay.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::pictures::jpeg_bytes;

use super::a1111::a1111_error;
use super::drawthings::{dt_error, dt_success};
use super::http::Response;
use super::png::{InitImage, answer_pictures, base64_all, decode_init_image, strip_data_url};
use super::{Answered, Fault, Flavor, InFlight, Recorded, Reply, Shared, TAG_KEYWORD};

/// Most images one answer may hold (Draw Things allows 100 x 4).
pub(super) const MAX_IMAGES: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Img2Img,
    Txt2Img,
}

/// Runs one generation request: in flight, faults, the one-at-a-time queue, the delay.
pub(super) async fn generation(
    shared: &Arc<Shared>,
    rec: &Recorded,
    route: Route,
    number: usize,
) -> Reply {
    let (in_flight, fault) = if route == Route::Img2Img {
        let fault = {
            let mut state = shared.state();
            let scripted = state.faults.pop_front();
            match (scripted, state.fault_source.as_mut()) {
                (Some(fault), _) => Some(fault),
                (None, Some(source)) => source(),
                (None, None) => None,
            }
        };
        (Some(InFlight::enter(shared)), fault)
    } else {
        (None, None)
    };
    let record_answer = |status: Option<u16>| {
        if route == Route::Img2Img {
            shared.state().answers.push(Answered {
                request: rec.clone(),
                fault: fault.clone(),
                status,
            });
        }
    };
    if fault == Some(Fault::Hang) {
        record_answer(None);
        return Reply::Hang(in_flight);
    }
    let _turn = shared.queue.lock().await;
    let delay = shared.state().delay;
    let job = Job {
        shared: shared.clone(),
        body: rec.body.clone(),
        route,
        number,
        fault: fault.clone(),
    };
    let (reply, generated) = tokio::task::spawn_blocking(move || job.run())
        .await
        .unwrap_or_else(|_| (Reply::Send(Response::empty(500)), false));
    if generated {
        let steps = rec
            .json()
            .get("steps")
            .and_then(Value::as_u64)
            .map_or(20, |steps| steps as u32);
        shared.state().generating = Some((std::time::Instant::now(), delay, steps));
        tokio::time::sleep(delay).await;
        shared.state().generating = None;
    }
    record_answer(reply.status());
    drop(in_flight);
    reply
}

/// The CPU part of a generation, run off the async threads.
pub(super) struct Job {
    pub(super) shared: Arc<Shared>,
    pub(super) body: Vec<u8>,
    pub(super) route: Route,
    pub(super) number: usize,
    fault: Option<Fault>,
}

impl Job {
    /// The reply, and whether it counts as a generation (waits the delay).
    fn run(self) -> (Reply, bool) {
        if let Some(fault) = self.fault.clone() {
            return (self.fault_reply(fault), true);
        }
        match self.shared.flavor {
            Flavor::DrawThings => match self.drawthings() {
                Ok(response) => (Reply::Send(response), true),
                Err(detail) => (Reply::Send(dt_error(422, &detail)), false),
            },
            Flavor::A1111 { .. } => match self.a1111() {
                Ok(response) => (Reply::Send(response), true),
                Err(response) => (Reply::Send(response), false),
            },
        }
    }

    fn tag(&self, image: usize) -> String {
        let server = match self.shared.flavor {
            Flavor::DrawThings => "drawthings",
            Flavor::A1111 { .. } => "a1111",
        };
        let route = match self.route {
            Route::Img2Img => "",
            Route::Txt2Img => "txt2img ",
        };
        format!("{server} {route}#{} image {image}", self.number)
    }

    /// A fault's answer. Sizes and counts are read leniently from the request.
    fn fault_reply(&self, fault: Fault) -> Reply {
        let (init, size, count) = self.lenient_request();
        let images = || self.images(init.as_ref(), size, count, |_| Vec::new());
        match fault {
            Fault::Status {
                code,
                detail,
                retry_after,
            } => {
                let mut response = match self.shared.flavor {
                    Flavor::DrawThings => dt_error(code, &detail),
                    Flavor::A1111 { .. } => a1111_error(code, "HTTPException", &detail),
                };
                if let Some(seconds) = retry_after {
                    response = response.with_header("Retry-After", seconds.to_string());
                }
                Reply::Send(response)
            }
            Fault::CloseWithoutAnswer => Reply::Drop,
            Fault::Hang => Reply::Hang(None),
            Fault::TruncatedJson => {
                let mut response = self.fault_success(base64_all(&images()));
                response.body.truncate(response.body.len() / 2);
                Reply::Send(response)
            }
            Fault::CloseMidBody => Reply::SendHalf(self.fault_success(base64_all(&images()))),
            Fault::EmptyImages => Reply::Send(self.fault_success(Vec::new())),
            Fault::BadBase64 => {
                let bad = vec!["this is not base64 at all!".to_string(); count];
                Reply::Send(self.fault_success(bad))
            }
            Fault::NotPng => {
                let jpeg = BASE64.encode(jpeg_bytes());
                Reply::Send(self.fault_success(vec![jpeg; count]))
            }
            Fault::ImageCount(n) => {
                let images = self.images(init.as_ref(), size, n, |_| Vec::new());
                Reply::Send(self.fault_success(base64_all(&images)))
            }
        }
    }

    /// A 200 in the flavor's success format holding these image strings.
    fn fault_success(&self, images: Vec<String>) -> Response {
        match self.shared.flavor {
            Flavor::DrawThings => dt_success(&images),
            Flavor::A1111 { .. } => {
                let body = json!({"images": images, "parameters": {}, "info": "{}"});
                Response::json(200, body.to_string().into_bytes())
            }
        }
    }

    /// The init image, answer size and image count a request asks for, guessing defaults
    /// for anything missing or invalid.
    fn lenient_request(&self) -> (Option<InitImage>, (u32, u32), usize) {
        let json: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let int = |keys: &[&str]| keys.iter().find_map(|k| json.get(*k)?.as_u64());
        let (app_w, app_h) = match self.shared.flavor {
            Flavor::DrawThings => self.shared.state().app_size,
            Flavor::A1111 { .. } => (512, 512),
        };
        let side = |key: &str, default: u32| {
            let value = int(&[key]).unwrap_or(u64::from(default)).clamp(64, 8192) as u32;
            match self.shared.flavor {
                Flavor::DrawThings => (value / 64 * 64).max(64),
                Flavor::A1111 { .. } => value,
            }
        };
        let size = (side("width", app_w), side("height", app_h));
        let count = int(&["batch_count", "n_iter"])
            .unwrap_or(1)
            .saturating_mul(int(&["batch_size"]).unwrap_or(1));
        let count = count.clamp(1, MAX_IMAGES as u64) as usize;
        let init = json
            .get("init_images")
            .and_then(|images| images.get(0))
            .and_then(Value::as_str)
            .and_then(|text| decode_init_image(strip_data_url(text)).ok());
        (init, size, count)
    }

    /// `count` PNGs of `size`: the init image's bytes when it already has that size, else a
    /// fresh picture; each with the tag chunk plus `extra(i)` text chunks (i from 1).
    pub(super) fn images(
        &self,
        init: Option<&InitImage>,
        size: (u32, u32),
        count: usize,
        extra: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Vec<Vec<u8>> {
        let stylize = self.shared.state().stylize;
        answer_pictures(init, size, self.number as u32, count, stylize, |i| {
            let mut chunks = extra(i);
            chunks.push((TAG_KEYWORD.to_string(), self.tag(i)));
            chunks
        })
    }
}
