//! What the operations endpoints answer: liveness, readiness (per backend; the backends'
//! error text only for an administrator, since it can name hosts and users), and the
//! metrics text.

use crate::server::Server;
use shared::api::{Health, HealthCheck};

/// The process is up.
pub fn health(server: &Server) -> Health {
    Health {
        server: server.id.clone(),
        ok: true,
        checks: Vec::new(),
    }
}

/// Whether SQL and the bus answer now. `bearer` is the caller's token, if any: the checks'
/// details are for administrators only.
pub async fn readiness(server: &Server, bearer: Option<&str>) -> Health {
    let mut health = readiness_details(server).await;
    let detailed = match bearer {
        Some(token) => server.token(token).await.is_ok_and(|info| info.admin),
        None => false,
    };
    if !detailed {
        for check in &mut health.checks {
            check.detail = None;
        }
    }
    health
}

/// Whether SQL and the bus answer now, with the error text of those that do not (for
/// administrators only: it can name hosts and users).
pub async fn readiness_details(server: &Server) -> Health {
    let sql = server.store.ping().await;
    let bus = server.cluster.ping().await;
    let checks = vec![
        HealthCheck {
            name: "sql".into(),
            ok: sql.is_ok(),
            detail: sql.err().map(|e| e.to_string()),
        },
        HealthCheck {
            name: format!("bus ({})", server.cluster.kind()),
            ok: bus.is_ok(),
            detail: bus.err().map(|e| e.to_string()),
        },
    ];
    Health {
        server: server.id.clone(),
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// The server's metrics as OpenMetrics text, license use included.
pub async fn metrics_text(server: &Server) -> String {
    let licenses = server.licenses.usage().await.unwrap_or_default();
    server.metrics.render(server.id.as_str(), &licenses)
}
