//! Progress while a request runs: A1111's `GET /sdapi/v1/progress`, asked about once a
//! second while the img2img request is in flight.

use crate::backends::http::Client;
use crate::report::live::{Progress, Reporter};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// How often a server is asked how far it is.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// Runs `request` to its end, reporting the server's progress meanwhile.
pub(crate) async fn while_running<T>(
    client: &Client,
    reporter: &Reporter,
    request: impl Future<Output = T>,
) -> T {
    tokio::pin!(request);
    tokio::select! {
        answer = &mut request => answer,
        never = poll_a1111(client, reporter) => match never {},
    }
}

async fn poll_a1111(client: &Client, reporter: &Reporter) -> std::convert::Infallible {
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Ok(answer) = client
            .get_json("sdapi/v1/progress?skip_current_image=true")
            .await
            && let Some(progress) = a1111_step(&answer)
        {
            reporter.report(progress);
        }
    }
}

/// The step in A1111's answer (`{"progress": 0.4, "state": {"sampling_step": 8,
/// "sampling_steps": 20, "job_count": 1, ...}, ...}`); `None` while it runs nothing.
pub(crate) fn a1111_step(answer: &Value) -> Option<Progress> {
    let state = answer.get("state")?;
    let number = |key: &str| {
        state
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let steps = number("sampling_steps").filter(|&steps| steps > 0)?;
    if number("job_count") == Some(0) {
        return None;
    }
    let step = number("sampling_step")?;
    Some(Progress::Step { step, steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_step_is_read_from_a1111s_answer() {
        let running = json!({"progress": 0.4, "eta_relative": 3.1, "state": {"skipped": false,
            "interrupted": false, "job": "task(x)", "job_count": 1, "job_timestamp": "20261201",
            "job_no": 0, "sampling_step": 8, "sampling_steps": 20}, "current_image": null,
            "textinfo": null});
        assert_eq!(
            a1111_step(&running),
            Some(Progress::Step { step: 8, steps: 20 })
        );
        let idle = json!({"progress": 0.0, "eta_relative": 0.0, "state": {"job_count": 0,
            "sampling_step": 0, "sampling_steps": 0}, "current_image": null});
        assert_eq!(a1111_step(&idle), None);
        assert_eq!(a1111_step(&json!({"detail": "Not Found"})), None);
    }
}
