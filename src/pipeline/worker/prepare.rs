//! Getting a claimed job ready to send: its settings (profile, sidecars, `{name}`), its
//! picture read and checked (any format taken, by its bytes), turned upright, resized when
//! needed, and the request body built in one pass (off the async workers).
//! A reason is returned instead when the job can only fail.

use super::Shared;
use super::failure::Failure;
use super::outcome::Report;
use crate::backends::{Backend, Init, InitForm, Request};
use crate::image;
use crate::image::parameters;
use crate::jobs::claim::Job;
use crate::jobs::names::shown;
use crate::jobs::outbox::is_reserved;
use crate::pipeline::reload::Current;
use crate::pipeline::worker::sidecars;
use bytes::Bytes;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// A request ready to send.
pub(super) struct Prepared {
    /// Built ahead for the first attempt; a retry builds it again (see [`Prepared::body`]),
    /// so a large image's request is not held while its answer is read.
    body: Option<Bytes>,
    /// The request in the server's words (with the seed picked): a body built again is the
    /// same request.
    pub request: Request,
    target: (u32, u32),
    input: PathBuf,
    limits: image::Limits,
    /// The `parameters` chunk for the results.
    pub infotext: String,
    /// What the log says when it is sent: `(profile watercolor + cat.txt, 1024x768)`.
    pub summary: String,
}

impl Prepared {
    /// The request body: the one built ahead, or built again by `backend` from the claimed
    /// file.
    pub(super) async fn body(&mut self, backend: Arc<dyn Backend>) -> Result<Bytes, Failure> {
        if let Some(body) = self.body.take() {
            return Ok(body);
        }
        let (request, target, input) = (self.request.clone(), self.target, self.input.clone());
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let bytes = read_input(&input)?;
            let picture = open_picture(&bytes, &input, &limits)?;
            body_for(&*backend, &picture, target, &request)
        })
        .await
        .map_err(|error| Failure::Internal(error.to_string()))?
    }
}

/// Reads and checks the input and builds the request. `Err` is a reason to fail the job.
pub(super) async fn prepare(
    shared: &Shared,
    current: &Current,
    server: usize,
    job: &Job,
    report: &mut Report,
) -> Result<Prepared, Failure> {
    if let Some(reserved) = reserved_top_folder(&job.relative) {
        return Err(Failure::ReservedFolder(reserved));
    }
    let profile = current.config.profile_for(&job.relative);
    let resolved =
        sidecars::resolve(&profile.settings, job, &shared.inbox).map_err(Failure::Sidecar)?;
    report.sidecars = resolved.sidecars;
    let settings = resolved.settings;
    let input = job.input();
    let limits = shared.limits;
    let max_bytes = current.config.max_file_bytes;
    let backend = current.backend_shared(server);
    let built = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
        let size = std::fs::metadata(&input)
            .map_err(|error| Failure::Unreadable(error.to_string()))?
            .len();
        if size > max_bytes {
            return Err(Failure::TooLarge {
                megabytes: size.div_ceil(1024 * 1024),
                limit: max_bytes / (1024 * 1024),
            });
        }
        let bytes = read_input(&input)?;
        let picture = open_picture(&bytes, &input, &limits)?;
        let upright = picture.upright_size();
        let target = backend.size(upright, &settings);
        let seed = settings.seed_to_send();
        let request = backend
            .request(&settings, target, seed)
            .map_err(Failure::Settings)?;
        let body = body_for(&*backend, &picture, target, &request)?;
        let resized = target != upright;
        let format = describe(&picture);
        let sent = request.settings.clone();
        let prepared = Prepared {
            body: Some(body),
            request,
            target,
            input,
            limits,
            // The seed only when the request carried it (a workflow may have nowhere for it).
            infotext: parameters::infotext(
                &settings,
                target,
                sent.contains_key("seed").then_some(seed),
            ),
            summary: String::new(),
        };
        Ok((prepared, sent, upright, resized, format))
    })
    .await
    .map_err(|error| Failure::Internal(error.to_string()))??;
    let (mut prepared, sent, input_size, resized, format) = built;
    report.sent = Some(sent);
    report.input_size = Some(input_size);
    report.resized = resized;
    let sidecars: String = report
        .sidecars
        .iter()
        .map(|name| format!(" + {name}"))
        .collect();
    let to = if current.config.servers.len() > 1 {
        format!(" for {}", current.server(server).name)
    } else {
        String::new()
    };
    // Logged when it is really sent (this runs one job ahead, while another is in flight).
    prepared.summary = format!(
        "(profile {}{sidecars}, {format}{}x{}{}){to}",
        profile.name,
        input_size.0,
        input_size.1,
        if resized { ", resized" } else { "" }
    );
    Ok(prepared)
}

/// The input's bytes.
fn read_input(input: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(input).map_err(|error| Failure::Unreadable(error.to_string()))
}

/// The picture in `bytes` (the file at `input`), opened and checked within `limits`. A file
/// whose bytes are another format than its name says is taken as what it is, and said so.
fn open_picture<'a>(
    bytes: &'a [u8],
    input: &Path,
    limits: &image::Limits,
) -> Result<image::Picture<'a>, Failure> {
    let name = input.file_name().unwrap_or_default().to_string_lossy();
    let named = image::Format::for_name(&name);
    let picture = image::open(bytes, named, limits)?;
    if let Some(named) = named.filter(|&named| named != picture.format) {
        tracing::info!(
            "{} is a {} picture, though its name says {named}: taken as {}",
            shown(Path::new(name.as_ref())),
            picture.format,
            picture.format
        );
    }
    Ok(picture)
}

/// How the log line names a picture's kind: nothing for an upright PNG, else "JPEG, turned
/// upright, " and the like.
fn describe(picture: &image::Picture<'_>) -> String {
    let mut text = String::new();
    if picture.format != image::Format::Png {
        text.push_str(&format!("{}, ", picture.format));
    }
    if picture.orientation != image::Orientation::NoTransforms {
        text.push_str("turned upright, ");
    }
    text
}

/// The request body sending the picture at `target`, as `backend` sends it.
fn body_for(
    backend: &dyn Backend,
    picture: &image::Picture<'_>,
    target: (u32, u32),
    request: &Request,
) -> Result<Bytes, Failure> {
    let body = match backend.init_form() {
        InitForm::Png => backend.encode(request, Init::Png(&picture.init_image(target)?)),
        InitForm::Pixels => backend.encode(request, Init::Pixels(picture.init_pixels(target)?)),
    };
    body.map_err(Failure::Internal)
}

/// An inbox folder named like drawdrop's own outbox folders (`originals/x.png`).
fn reserved_top_folder(relative: &Path) -> Option<String> {
    let mut components = relative.components();
    let first = components.next()?;
    components.next()?; // a file directly in the inbox is fine whatever its name
    let Component::Normal(name) = first else {
        return None;
    };
    let name = name.to_string_lossy();
    is_reserved(&name).then(|| name.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_folders_are_refused_only_as_top_level_folders() {
        assert_eq!(
            reserved_top_folder(Path::new("Originals/cat.png")).as_deref(),
            Some("Originals")
        );
        assert_eq!(
            reserved_top_folder(Path::new("logs/a/cat.png")).as_deref(),
            Some("logs")
        );
        assert_eq!(reserved_top_folder(Path::new("failed.png")), None);
        assert_eq!(reserved_top_folder(Path::new("w/failed/cat.png")), None);
    }
}
