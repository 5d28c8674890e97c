//! `ucclient`: the Switchboard command-line client. One-shot commands log in, act and log
//! out; `listen` stays connected; `call` and `pickup` hold one call with a softphone peer.
//! Failures print `error: <code>: <message>` on stderr and exit with 1, so scripts can tell
//! the server's reasons apart; a call that was not connected or failed prints its report
//! first, then `error: <reason>: …`.

mod cli;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use cli::answer::AutoAnswer;
use cli::args::{
    CONNECT_WITHIN_SECONDS, Cli, Command, ContactCommand, ForwardCommand, PresenceCommand,
    SendTarget, conversation_for, with_call_capability,
};
use cli::listen::{ListenOptions, Shutdown, listen};
use cli::output;
use cli::phone::{self, CallRequest, Entry, ForwardChange};
use serde::Serialize;
use shared::api::SetPresence;
use shared::{CallId, DeviceId, UserId};
use std::process::ExitCode;
use std::time::Duration;
use ucclient::calls::{CallFailure, CallPlan};
use ucclient::{Client, ClientError, PeerError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: internal: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// `<code>: <message>`: the server's code when the server refused, the `call_ended` reason
/// of a failed call, `media` for the softphone's own WebRTC, else a local one.
fn describe(error: &anyhow::Error) -> String {
    if let Some(client_error) = error.downcast_ref::<ClientError>() {
        client_error.to_string()
    } else if let Some(failure) = error.downcast_ref::<CallFailure>() {
        failure.to_string()
    } else if let Some(peer_error) = error.downcast_ref::<PeerError>() {
        format!("media: {peer_error}")
    } else {
        format!("client: {error:#}")
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let user = UserId::from(cli.user.as_str());
    if let Command::Listen {
        device,
        caps,
        auto_answer,
        answer_delay_ms,
        talk_seconds,
    } = cli.command
    {
        let (capabilities, auto_answer) = if auto_answer {
            let options = AutoAnswer {
                delay: Duration::from_millis(answer_delay_ms),
                talk_for: talk_seconds.map(Duration::from_secs),
            };
            (with_call_capability(caps.0), Some(options))
        } else {
            (caps.0, None)
        };
        let options = ListenOptions {
            url: cli.url,
            user,
            password: cli.password,
            device: device.map(DeviceId::new),
            capabilities,
            auto_answer,
        };
        listen(options, shutdown_signal()).await?;
        return Ok(());
    }
    if let Command::Send(args) = &cli.command
        && let Err(problem) = args.target()
    {
        Cli::command()
            .error(clap::error::ErrorKind::WrongNumberOfValues, problem)
            .exit();
    }
    let client = Client::login(&cli.url, &user, &cli.password, None).await?;
    let result = one_shot(&client, cli.command).await;
    // Log out whatever happened: the token would otherwise live on (and hold a seat).
    let logout = client.logout().await;
    result?;
    logout?;
    Ok(())
}

async fn one_shot(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Listen { .. } => unreachable_listen(),
        Command::Presence(PresenceCommand::Set {
            availability,
            note,
            for_user,
            json,
        }) => {
            let request = SetPresence {
                availability: Some(availability),
                note,
                user: for_user.map(UserId::new),
            };
            let view = client.set_presence(request).await?;
            print(json, &view, || output::presence(&view))
        }
        Command::Presence(PresenceCommand::Get { name, json }) => {
            let view = client.get_presence(&UserId::from(name.as_str())).await?;
            print(json, &view, || output::presence(&view))
        }
        Command::Contact(ContactCommand::Add { name, group }) => {
            let contact = client
                .put_contact(&UserId::from(name.as_str()), &group)
                .await?;
            emit(&format!(
                "added {} ({})",
                contact.user,
                output::presence(&contact.presence)
            ))?;
            Ok(())
        }
        Command::Contact(ContactCommand::Remove { name }) => {
            client.delete_contact(&UserId::from(name.as_str())).await?;
            emit(&format!("removed {name}"))?;
            Ok(())
        }
        Command::Contact(ContactCommand::List { json }) => {
            let contacts = client.contacts().await?;
            print(json, &contacts, || output::contacts(&contacts))
        }
        Command::Send(args) => {
            let json = args.json;
            let (target, text) = args.target().map_err(anyhow::Error::msg)?;
            let message = match target {
                SendTarget::User(user) => client.send_to_user(&user, text).await?,
                SendTarget::Conversation(conversation) => {
                    client.send_to_conversation(&conversation, text).await?
                }
            };
            print(json, &message, || output::sent(&message))
        }
        Command::History {
            name,
            group,
            limit,
            before,
            after,
            json,
        } => {
            let conversation = conversation_for(client.user(), &name, group);
            let messages = client.history(&conversation, before, after, limit).await?;
            print(json, &messages, || output::history(&messages))
        }
        Command::Read { name, group, json } => {
            let conversation = conversation_for(client.user(), &name, group);
            let marker = client.mark_read(&conversation, None).await?;
            print(json, &marker, || output::read_marker(&marker))
        }
        Command::Journal { limit, json } => {
            let entries = client.journal(limit).await?;
            print(json, &entries, || output::journal(&entries))
        }
        Command::Conversations { json } => {
            let conversations = client.conversations().await?;
            print(json, &conversations, || {
                output::conversations(&conversations)
            })
        }
        Command::Me { json } => {
            let me = client.me().await?;
            print(json, &me, || {
                format!(
                    "{} ({}), home {}, via {}",
                    me.id,
                    me.display_name,
                    me.home_server,
                    client.base_url()
                )
            })
        }
        Command::Directory { query, json } => {
            let users = client.directory(&query).await?;
            print(json, &users, || output::users(&users))
        }
        Command::Call(args) => {
            let request = CallRequest {
                entry: Entry::Place {
                    to: UserId::new(args.name),
                },
                video: args.video,
                device: args.device.map(DeviceId::new),
                plan: CallPlan {
                    talk_for: Some(Duration::from_secs(args.seconds)),
                    connect_within: Duration::from_secs(args.connect_timeout),
                    invite: args.invite.into_iter().map(UserId::new).collect(),
                },
            };
            hold_call(client, request, args.json).await
        }
        Command::Pickup(args) => {
            let request = CallRequest {
                entry: Entry::Pickup {
                    user: UserId::new(args.user),
                    call: args.call.map(CallId::new),
                },
                video: false,
                device: args.device.map(DeviceId::new),
                plan: CallPlan {
                    talk_for: Some(Duration::from_secs(args.seconds)),
                    connect_within: Duration::from_secs(CONNECT_WITHIN_SECONDS),
                    invite: Vec::new(),
                },
            };
            hold_call(client, request, args.json).await
        }
        Command::Forward(ForwardCommand::Set {
            mode,
            name,
            for_user,
        }) => {
            let change = ForwardChange::Set {
                mode,
                to: UserId::new(name),
            };
            let (user, rules) =
                phone::forward_change(client, change, for_user.map(UserId::new)).await?;
            emit(&output::forwarding(&user, &rules))
        }
        Command::Forward(ForwardCommand::Clear { mode, for_user }) => {
            let change = ForwardChange::Clear { mode };
            let (user, rules) =
                phone::forward_change(client, change, for_user.map(UserId::new)).await?;
            emit(&output::forwarding(&user, &rules))
        }
        Command::Forward(ForwardCommand::Show { for_user, json }) => {
            let user = for_user.map_or_else(|| client.user().clone(), UserId::new);
            let rules = client.forwarding(&user).await?;
            print(json, &rules, || output::forwarding(&user, &rules))
        }
    }
}

/// `call` and `pickup`: holds the call, prints its report, and fails (exit 1) when the call
/// was not connected, failed or lost its socket.
async fn hold_call(client: &Client, request: CallRequest, json: bool) -> anyhow::Result<()> {
    let (report, outcome) = phone::call(client, request, shutdown_signal()).await?;
    print(json, &report.json(), || output::call(&report))?;
    outcome
}

fn unreachable_listen() -> anyhow::Result<()> {
    anyhow::bail!("listen is not a one-shot command")
}

/// Prints the API's JSON with `--json`, else the human form.
fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        emit(&serde_json::to_string_pretty(value).context("encoding the answer")?)?;
    } else {
        let text = human();
        if !text.is_empty() {
            emit(&text)?;
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
fn shutdown_signal() -> Shutdown {
    Box::pin(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    })
}

/// Writes one line to stdout. A closed pipe (`ucadmin user list | head -1`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}
