//! The operations routes every server has (`/healthz`, `/readyz`, `/metrics`), without login:
//! the benchmark reads memory and device counts from `/metrics`, tests wait on `/readyz`.

use crate::error::ClientError;
use crate::http::{Endpoint, HttpClient, error_from_answer, snippet};
use reqwest::Method;
use shared::api::Health;

/// `GET /healthz`: the process is up.
pub async fn health(http: &HttpClient, base_url: &str) -> Result<Health, ClientError> {
    Endpoint::new(http.clone(), base_url)?
        .get(&["healthz"], &[])
        .await
}

/// `GET /readyz`: SQL and bus reachable. A `503` still carries a [`Health`] (with `ok: false`
/// and the failing checks), which is returned as `Ok`.
pub async fn ready(http: &HttpClient, base_url: &str) -> Result<Health, ClientError> {
    let endpoint = Endpoint::new(http.clone(), base_url)?;
    let (status, body) = endpoint
        .call_any_status(Method::GET, &["readyz"], &[], None)
        .await?;
    match serde_json::from_slice::<Health>(&body) {
        Ok(health) => Ok(health),
        Err(_) if !(200..300).contains(&status) => {
            Err(error_from_answer(&Method::GET, &["readyz"], status, &body))
        }
        Err(error) => Err(ClientError::protocol(format!(
            "unexpected answer to GET /readyz: {error}: {}",
            snippet(&body)
        ))),
    }
}

/// `GET /metrics`: the Prometheus text.
pub async fn metrics(http: &HttpClient, base_url: &str) -> Result<String, ClientError> {
    Endpoint::new(http.clone(), base_url)?
        .get_text(&["metrics"])
        .await
}

/// The value of metric `name` in Prometheus text: the sum over all its label sets, or `None`
/// when no sample has that name.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = if rest.starts_with('{') {
            match rest.find('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') || rest.starts_with('\t') {
            rest
        } else {
            continue; // another metric whose name starts with `name`
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        total = Some(total.unwrap_or(0.0) + value);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_summed_over_labels() {
        let text = "# HELP uc_devices Connected devices\n\
                    # TYPE uc_devices gauge\n\
                    uc_devices{server=\"a\"} 3\n\
                    uc_devices{server=\"a\",kind=\"web\"} 4 1700000000000\n\
                    uc_devices_total 99\n\
                    uc_process_resident_bytes 1.5e7\n";
        assert_eq!(metric_value(text, "uc_devices"), Some(7.0));
        assert_eq!(metric_value(text, "uc_devices_total"), Some(99.0));
        assert_eq!(
            metric_value(text, "uc_process_resident_bytes"),
            Some(15_000_000.0)
        );
        assert_eq!(metric_value(text, "uc_sessions"), None);
    }
}
