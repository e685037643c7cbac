//! Run lifecycle notifications (`notify:` in sluice.yaml): `run.started`
//! when a run begins, `run.succeeded` or `run.failed` when it ends, and
//! `run.rejected` when it rejected at least `rejected_threshold` rows.
//!
//! Each event is one JSON POST in the Standard Webhooks shape (`type`,
//! `timestamp`, `data`), signed like the webhook destination when a
//! `whsec_` secret is set (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`, by the Standard Webhooks reference library). A
//! message keeps its `webhook-id` across its retries.
//!
//! A notification never changes a run: it is sent from the host after the
//! run's state is recorded, failures are logged as warnings, and every wait
//! is bounded (each request by [`REQUEST_TIMEOUT`], a run's end by
//! [`END_DEADLINE`] for all its events and retries). `started` is sent in
//! the background, so the run does not wait for the receiver; the end
//! events wait for it, so a receiver sees them in order.

use crate::run::RunReport;
use sluice_config::{Notify, RunEvent};
use sluice_runtime::sandbox::policy::NetPolicy;
use sluice_state::RunId;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// One request's bound (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per event: the first and two retries.
const ATTEMPTS: u32 = 3;
/// The most a run's end waits for its notifications, retries included.
pub const END_DEADLINE: Duration = Duration::from_secs(15);

/// Sends one project's notifications.
pub struct Notifier {
    url: String,
    signer: Option<standardwebhooks::Webhook>,
    events: Vec<RunEvent>,
    rejected_threshold: u64,
    http: reqwest::Client,
}

/// A `started` event on its way; the end events wait for it.
pub struct Started(Option<JoinHandle<()>>);

impl Notifier {
    /// The notifier of a project's `notify:`; `None` (with a warning) when
    /// it cannot be built, since notifications never stop a run. With
    /// `reach` (a tenant's grant ceiling) it reaches only the addresses
    /// that allows, however the URL's name resolves ([`crate::outbound`]).
    pub fn new(config: &Notify, reach: Option<&Arc<NetPolicy>>) -> Option<Arc<Notifier>> {
        let signer = match config
            .secret
            .as_ref()
            .map(|s| standardwebhooks::Webhook::new(s.expose()))
        {
            Some(Ok(w)) => Some(w),
            None => None,
            Some(Err(_)) => {
                tracing::warn!(at = %config.location, "`notify.secret` is not a whsec_ secret; notifications are off");
                return None;
            }
        };
        let http = match crate::outbound::client_for(config.url.expose(), reach, REQUEST_TIMEOUT) {
            Ok(c) => c,
            Err(why) => {
                // The reason names an address, never the URL (a secret).
                tracing::warn!(at = %config.location, "notifications are off: {why}");
                return None;
            }
        };
        Some(Arc::new(Notifier {
            url: config.url.expose().to_owned(),
            signer,
            events: config.events.clone(),
            rejected_threshold: config.rejected_threshold,
            http,
        }))
    }

    /// Sends `run.started` in the background.
    pub fn started(self: &Arc<Self>, sync: &str, run: RunId) -> Started {
        if !self.events.contains(&RunEvent::Started) {
            return Started(None);
        }
        let data = serde_json::json!({ "sync": sync, "run_id": run });
        let me = self.clone();
        Started(Some(tokio::spawn(async move {
            me.send(RunEvent::Started, data).await;
        })))
    }

    /// Sends the end events of `report` once `started` was sent, within
    /// [`END_DEADLINE`] in all.
    pub async fn ended(&self, started: Started, report: &RunReport) {
        let sending = async {
            if let Some(task) = started.0 {
                let _ = task.await;
            }
            for (event, data) in self.end_events(report) {
                self.send(event, data).await;
            }
        };
        if tokio::time::timeout(END_DEADLINE, sending).await.is_err() {
            tracing::warn!(
                sync = %report.sync,
                "run notifications to {} were not all delivered within {} s",
                self.url,
                END_DEADLINE.as_secs()
            );
        }
    }

    /// The events a run's end sends, each with its data.
    fn end_events(&self, report: &RunReport) -> Vec<(RunEvent, serde_json::Value)> {
        let outcome = if report.error.is_none() {
            RunEvent::Succeeded
        } else {
            RunEvent::Failed
        };
        let data = serde_json::json!({
            "sync": report.sync,
            "run_id": report.run_id,
            "status": report.status,
            "stage": report.stage,
            "error": report.error,
            "elapsed_ms": report.elapsed_ms as u64,
            "counts": report.counts,
        });
        let mut events = vec![(outcome, data.clone())];
        if report.counts.rejected >= self.rejected_threshold {
            let mut data = data;
            data["rejected_threshold"] = self.rejected_threshold.into();
            events.push((RunEvent::Rejected, data));
        }
        events.retain(|(e, _)| self.events.contains(e));
        events
    }

    /// POSTs one event, retrying transport failures, 429 and 5xx; a
    /// failure is a warning.
    async fn send(&self, event: RunEvent, data: serde_json::Value) {
        let body = serde_json::json!({
            "type": format!("run.{}", event.name()),
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        let id = format!("msg_{:032x}", rand::random::<u128>());
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << (attempt - 1))).await;
            }
            match self.post(&id, &body).await {
                Ok(()) => return,
                Err((retry, why)) => {
                    last = why;
                    if !retry {
                        break;
                    }
                }
            }
        }
        tracing::warn!(
            event = event.name(),
            "run notification to {} not delivered: {last}",
            self.url
        );
    }

    /// One attempt; on failure, whether to retry and why.
    async fn post(&self, id: &str, body: &str) -> Result<(), (bool, String)> {
        let now = chrono::Utc::now().timestamp();
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string());
        if let Some(signer) = &self.signer {
            let signature = signer
                .sign(id, now, body.as_bytes())
                .map_err(|e| (false, format!("signing: {e}")))?;
            request = request.header("webhook-signature", signature);
        }
        let response = request
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| (true, crate::outbound::describe(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = status.is_server_error() || status.as_u16() == 429;
        Err((retry, format!("answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{Location, Str};
    use sluice_state::RunCounts;

    fn notifier(events: Vec<RunEvent>, threshold: u64) -> Arc<Notifier> {
        Notifier::new(
            &Notify {
                url: Str::plain("http://127.0.0.1:9/hook"),
                secret: Some(Str::secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
                events,
                rejected_threshold: threshold,
                location: Location {
                    file: std::path::Path::new("sluice.yaml").into(),
                    line: 1,
                    column: 1,
                },
            },
            None,
        )
        .unwrap()
    }

    fn report(rejected: u64, error: Option<&str>) -> RunReport {
        RunReport {
            run_id: Some(7),
            sync: "s".into(),
            status: if error.is_some() {
                sluice_state::RunStatus::Failed
            } else {
                sluice_state::RunStatus::Succeeded
            },
            counts: RunCounts {
                rejected,
                ..Default::default()
            },
            elapsed_ms: 10,
            error: error.map(str::to_owned),
            stage: error.map(|_| "run".to_owned()),
            planned: Vec::new(),
            scan_bytes: None,
            diff: "host",
            mirror: Default::default(),
            config_changed: false,
            outcomes: None,
        }
    }

    #[test]
    fn a_run_end_sends_its_outcome_and_rejected_above_the_threshold_only_if_asked() {
        let all = notifier(RunEvent::ALL.to_vec(), 3);
        let names = |n: &Notifier, r: &RunReport| -> Vec<&str> {
            n.end_events(r).iter().map(|(e, _)| e.name()).collect()
        };
        assert_eq!(names(&all, &report(2, None)), ["succeeded"]);
        assert_eq!(names(&all, &report(3, None)), ["succeeded", "rejected"]);
        assert_eq!(
            names(&all, &report(5, Some("boom"))),
            ["failed", "rejected"]
        );
        let failures_only = notifier(vec![RunEvent::Failed], 1);
        assert!(names(&failures_only, &report(9, None)).is_empty());
        let (_, data) = &all.end_events(&report(0, Some("boom")))[0];
        assert_eq!(
            (data["run_id"].as_i64(), data["stage"].as_str()),
            (Some(7), Some("run"))
        );
    }

    #[tokio::test]
    async fn an_unreachable_receiver_costs_a_bounded_wait_and_no_error() {
        let n = notifier(RunEvent::ALL.to_vec(), 1);
        let started = std::time::Instant::now();
        let pending = n.started("s", 7);
        n.ended(pending, &report(1, None)).await;
        assert!(started.elapsed() <= END_DEADLINE + Duration::from_secs(1));
    }
}
