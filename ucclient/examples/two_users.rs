//! Two users talk over the WebSocket, one on each server of a cluster: the shortest tour of
//! the library, and a quick smoke test of a running cluster.
//!
//! `cargo run -p ucclient --example two_users -- URL_A URL_B ADMIN_PASSWORD`

use shared::api::{CreateUser, ErrorCode};
use shared::presence::{Availability, Capability};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ServerId, UserId};
use std::time::Duration;
use ucclient::{AdminClient, Client, ClientError, HttpClient, ops};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url_a, url_b, admin_password] = args.as_slice() else {
        anyhow::bail!("usage: two_users URL_A URL_B ADMIN_PASSWORD");
    };
    let http = HttpClient::new()?;
    let server_b: ServerId = ops::health(&http, url_b).await?.server;
    let admin = AdminClient::login(url_a, &"admin".into(), admin_password).await?;
    let suffix = rand::random::<u16>();
    let (ann, ben) = (
        UserId::new(format!("ann{suffix}")),
        UserId::new(format!("ben{suffix}")),
    );
    for (user, home) in [(&ann, None), (&ben, Some(server_b.clone()))] {
        admin
            .create_user(CreateUser {
                id: user.clone(),
                password: "password1".into(),
                display_name: None,
                home_server: home,
                admin: false,
            })
            .await?;
    }

    // Ben lives on B but logs in at A: the client follows `wrong_server`.
    let ann_client = Client::login(url_a, &ann, "password1", None).await?;
    let ben_client = Client::login(url_a, &ben, "password1", None).await?;
    println!("ben logged in at {}", ben_client.base_url());
    ann_client.put_contact(&ben, "").await?;

    let mut ann_socket = ann_client.connect(None, &[Capability::Chat]).await?;
    let mut ben_socket = ben_client
        .connect(None, &[Capability::Chat, Capability::Audio])
        .await?;
    println!(
        "ann's hello: {} conversations",
        ann_socket.hello().conversations.len()
    );

    ben_socket
        .request(ClientCommand::PresenceSet {
            availability: Some(Availability::Busy),
            note: None,
            user: None,
        })
        .await?;
    let seen = ann_socket
        .next_matching(Duration::from_secs(5), |event| {
            matches!(event, ServerEvent::Presence { presence } if presence.user == ben && presence.availability == Availability::Busy)
        })
        .await?;
    println!("ann saw: {}", serde_json::to_string(&seen)?);

    let stored = ann_socket
        .request(ClientCommand::Send {
            to: Some(ben.clone()),
            conversation: None,
            body: "hi ben".into(),
            client_id: None,
        })
        .await?;
    println!("stored: {stored:?}");
    let received = ben_socket
        .next_matching(Duration::from_secs(5), |event| {
            matches!(event, ServerEvent::Message { .. })
        })
        .await?;
    println!("ben got: {}", serde_json::to_string(&received)?);

    ann_socket.request(ClientCommand::Ping).await?;
    ann_socket.send_raw("{not json".into()).await?;
    let refused = ann_socket
        .next_matching(Duration::from_secs(5), |e| {
            matches!(e, ServerEvent::Error { .. })
        })
        .await?;
    println!("malformed frame: {}", serde_json::to_string(&refused)?);

    let error: ClientError = ben_client
        .set_presence(shared::api::SetPresence {
            availability: Some(Availability::Away),
            note: None,
            user: Some(ann.clone()),
        })
        .await
        .unwrap_err();
    assert!(error.is(ErrorCode::Forbidden), "{error}");
    println!("acting for someone else: {error}");

    ann_socket.close().await?;
    ben_socket.close().await?;
    ann_client.logout().await?;
    ben_client.logout().await?;
    admin.delete_user(&ann).await?;
    admin.delete_user(&ben).await?;
    Ok(())
}
