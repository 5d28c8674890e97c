//! The command line of `ucclient`. Its syntax is a contract: other tools script against it
//! (issue 2, "Interfaces"), so changes only add.

use clap::{Args, Parser, Subcommand};
use shared::api::parse_capabilities;
use shared::call::ForwardMode;
use shared::presence::{Availability, Capability};
use shared::{ConversationId, GroupId, UserId};

#[derive(Debug, Parser)]
#[command(name = "ucclient", version, about = "Switchboard command-line client")]
pub struct Cli {
    /// Base URL of any UCServer of the cluster; the login follows the user to their home.
    #[arg(long, env = "UC_URL")]
    pub url: String,
    #[arg(long, env = "UC_USER")]
    pub user: String,
    #[arg(long, env = "UC_PASSWORD", hide_env_values = true)]
    pub password: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stay connected and print every event as one JSON object per line, until killed.
    /// Reconnects (logging in again) when the connection drops.
    Listen {
        /// Device id of this connection (default: one chosen by the server at first login).
        #[arg(long)]
        device: Option<String>,
        /// Capabilities announced for the device, comma-separated (`audio` is added with
        /// --auto-answer, so that calls ring here).
        #[arg(long, value_parser = parse_caps, default_value = "chat")]
        caps: Caps,
        /// Answer every call that rings here with a softphone peer that sends audio (silence)
        /// while the call lasts; print a `call_summary` line when each call ends.
        #[arg(long)]
        auto_answer: bool,
        /// With --auto-answer: let a call ring this long before answering it.
        #[arg(long, requires = "auto_answer", default_value_t = 0)]
        answer_delay_ms: u64,
        /// With --auto-answer: hang up each call this many seconds after it connected
        /// (default: stay until the call ends).
        #[arg(long, requires = "auto_answer", value_name = "SECONDS")]
        talk_seconds: Option<u64>,
    },
    /// Call a user: media through the call's MediaServer, audio for --seconds once answered,
    /// then hang up. Prints what happened (JSON with --json); exits with 1 when the call
    /// was not connected or failed, naming the reason.
    Call(CallArgs),
    /// Take a call that rings at a colleague's devices (a pickup group or delegate right),
    /// then like `call`.
    Pickup(PickupArgs),
    /// Call forwarding: one target per mode (always, busy, noanswer).
    #[command(subcommand)]
    Forward(ForwardCommand),
    /// Set or read presence.
    #[command(subcommand)]
    Presence(PresenceCommand),
    /// Manage the contact list.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Send a chat message: `send NAME TEXT` (1:1) or `send --group GROUP TEXT`.
    Send(SendArgs),
    /// Show a conversation's latest messages: NAME is a user (1:1), a group with --group,
    /// or a conversation id (`d:…`, `g:…`, `c:…`).
    History {
        name: String,
        #[arg(long)]
        group: bool,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: Option<u32>,
        /// Only messages before this sequence number.
        #[arg(long)]
        before: Option<u64>,
        /// Only messages after this sequence number.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Mark a conversation read up to its latest message.
    Read {
        name: String,
        #[arg(long)]
        group: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one's journal, newest first.
    Journal {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// List one's conversations with unread counts.
    Conversations {
        #[arg(long)]
        json: bool,
    },
    /// Show who one is logged in as.
    Me {
        #[arg(long)]
        json: bool,
    },
    /// Search the user directory.
    Directory {
        #[arg(default_value = "")]
        query: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PresenceCommand {
    /// Set availability (available, away, busy, dnd, offline) and optionally a note.
    Set {
        availability: Availability,
        /// The note shown with the availability; `--note ""` clears it.
        #[arg(long)]
        note: Option<String>,
        /// Set this user's presence instead (admins and delegates).
        #[arg(long = "for")]
        for_user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show what one may see of a user's presence.
    Get {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// Add a contact (or move it to another contact-list group).
    Add {
        name: String,
        #[arg(long, default_value = "")]
        group: String,
    },
    Remove {
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

/// How long a call may take to be answered before `call` hangs up: longer than the server's
/// default ring timeout (30 s), so an unanswered call normally ends as `no_answer` first.
pub const CONNECT_WITHIN_SECONDS: u64 = 40;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The user to call.
    pub name: String,
    /// How long to talk once the call is connected, then hang up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub seconds: u64,
    /// A video call: also offer (and send) video.
    #[arg(long)]
    pub video: bool,
    /// Invite this user into the call once it is connected (repeatable: a conference).
    #[arg(long = "invite", value_name = "USER")]
    pub invite: Vec<String>,
    /// Hang up when not connected within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = CONNECT_WITHIN_SECONDS, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub connect_timeout: u64,
    /// Device id of the softphone (default: one chosen by the server at login).
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PickupArgs {
    /// The user whose ringing call to take.
    pub user: String,
    /// Which call, when several ring there (default: the oldest).
    #[arg(long)]
    pub call: Option<String>,
    /// How long to talk once connected, then hang up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub seconds: u64,
    /// Device id of the softphone (default: one chosen by the server at login).
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Forward calls to NAME: `always`, when `busy` in another call, or on `noanswer`.
    Set {
        /// always, busy or noanswer.
        mode: ForwardMode,
        name: String,
        /// Set the rule of this user instead (their delegates and admins).
        #[arg(long = "for")]
        for_user: Option<String>,
    },
    /// Clear one rule, or all of them without MODE.
    Clear {
        /// always, busy or noanswer.
        mode: Option<ForwardMode>,
        /// Clear the rules of this user instead (their delegates and admins).
        #[arg(long = "for")]
        for_user: Option<String>,
    },
    /// Show the rules.
    Show {
        /// Show the rules of this user instead (oneself, their delegates and admins).
        #[arg(long = "for")]
        for_user: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// The capabilities a device must announce so that calls ring at it: `audio` is added unless
/// `audio` or `softphone` is there already.
pub fn with_call_capability(mut capabilities: Vec<Capability>) -> Vec<Capability> {
    if !capabilities
        .iter()
        .any(|capability| matches!(capability, Capability::Audio | Capability::Softphone))
    {
        capabilities.push(Capability::Audio);
    }
    capabilities
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Send to the chat of this admin group instead of a user.
    #[arg(long)]
    pub group: Option<String>,
    /// NAME TEXT, or only TEXT with --group.
    #[arg(required = true, num_args = 1..=2, value_names = ["NAME", "TEXT"])]
    pub words: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

/// Where `send` goes.
#[derive(Debug, PartialEq, Eq)]
pub enum SendTarget {
    User(UserId),
    Conversation(ConversationId),
}

impl SendArgs {
    /// The recipient and the text, or what is wrong with the words given.
    pub fn target(&self) -> Result<(SendTarget, &str), String> {
        match (&self.group, self.words.as_slice()) {
            (Some(group), [text]) => Ok((
                SendTarget::Conversation(ConversationId::group(&GroupId::from(group.as_str()))),
                text,
            )),
            (Some(_), _) => Err("with --group, give only the TEXT".to_string()),
            (None, [name, text]) if is_conversation_id(name) => Ok((
                SendTarget::Conversation(ConversationId::from(name.as_str())),
                text,
            )),
            (None, [name, text]) => Ok((SendTarget::User(UserId::from(name.as_str())), text)),
            (None, _) => Err("give NAME and TEXT, or --group GROUP and TEXT".to_string()),
        }
    }
}

/// Capabilities parsed from `chat,audio`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps(pub Vec<Capability>);

fn parse_caps(text: &str) -> Result<Caps, String> {
    parse_capabilities(text).map(Caps)
}

/// True for `d:…`, `g:…` and `c:…`: user and group names cannot contain `:`.
pub fn is_conversation_id(name: &str) -> bool {
    ["d:", "g:", "c:"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The conversation NAME designates for `me`: a group's chat with `group`, a conversation id
/// as is, else the 1:1 conversation with that user.
pub fn conversation_for(me: &UserId, name: &str, group: bool) -> ConversationId {
    if is_conversation_id(name) {
        ConversationId::from(name)
    } else if group {
        ConversationId::group(&GroupId::from(name))
    } else {
        ConversationId::direct(me, &UserId::from(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    const LOGIN: [&str; 7] = [
        "ucclient",
        "--url",
        "http://a:1",
        "--user",
        "alice",
        "--password",
        "pw",
    ];

    fn parse(words: &[&str]) -> Cli {
        let all: Vec<&str> = LOGIN.iter().chain(words).copied().collect();
        Cli::try_parse_from(all).unwrap_or_else(|error| panic!("{words:?}: {error}"))
    }

    fn refused(words: &[&str]) -> bool {
        let all: Vec<&str> = LOGIN.iter().chain(words).copied().collect();
        Cli::try_parse_from(all).is_err()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn login_options() {
        let cli = parse(&["journal"]);
        assert_eq!(
            (cli.url.as_str(), cli.user.as_str(), cli.password.as_str()),
            ("http://a:1", "alice", "pw")
        );
    }

    #[test]
    fn listen() {
        match parse(&["listen"]).command {
            Command::Listen {
                device,
                caps,
                auto_answer,
                answer_delay_ms,
                talk_seconds,
            } => {
                assert_eq!(device, None);
                assert_eq!(caps, Caps(vec![Capability::Chat]));
                assert!(!auto_answer);
                assert_eq!((answer_delay_ms, talk_seconds), (0, None));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["listen", "--device", "desk", "--caps", "chat,audio"]).command {
            Command::Listen { device, caps, .. } => {
                assert_eq!(device.as_deref(), Some("desk"));
                assert_eq!(caps, Caps(vec![Capability::Chat, Capability::Audio]));
            }
            other => panic!("{other:?}"),
        }
        assert!(refused(&["listen", "--caps", "telepathy"]));
        let words = [
            "listen",
            "--auto-answer",
            "--answer-delay-ms",
            "1500",
            "--talk-seconds",
            "3",
        ];
        match parse(&words).command {
            Command::Listen {
                auto_answer,
                answer_delay_ms,
                talk_seconds,
                ..
            } => assert_eq!(
                (auto_answer, answer_delay_ms, talk_seconds),
                (true, 1500, Some(3))
            ),
            other => panic!("{other:?}"),
        }
        assert!(refused(&["listen", "--answer-delay-ms", "10"]));
        assert!(refused(&["listen", "--talk-seconds", "10"]));
    }

    #[test]
    fn calls_ring_only_where_audio_is_announced() {
        assert_eq!(
            with_call_capability(vec![Capability::Chat]),
            vec![Capability::Chat, Capability::Audio]
        );
        assert_eq!(
            with_call_capability(vec![Capability::Softphone]),
            vec![Capability::Softphone]
        );
        assert_eq!(
            with_call_capability(vec![Capability::Audio, Capability::Chat]),
            vec![Capability::Audio, Capability::Chat]
        );
    }

    #[test]
    fn call_and_pickup() {
        match parse(&["call", "bob"]).command {
            Command::Call(args) => {
                assert_eq!(args.name, "bob");
                assert_eq!(args.seconds, 5);
                assert_eq!(args.connect_timeout, CONNECT_WITHIN_SECONDS);
                assert!(!args.video && !args.json);
                assert!(args.invite.is_empty() && args.device.is_none());
            }
            other => panic!("{other:?}"),
        }
        let words = [
            "call",
            "bob",
            "--seconds",
            "12",
            "--video",
            "--invite",
            "carol",
            "--invite",
            "dave",
            "--json",
            "--device",
            "desk",
        ];
        match parse(&words).command {
            Command::Call(args) => {
                assert_eq!(args.seconds, 12);
                assert!(args.video && args.json);
                assert_eq!(args.invite, vec!["carol".to_string(), "dave".to_string()]);
                assert_eq!(args.device.as_deref(), Some("desk"));
            }
            other => panic!("{other:?}"),
        }
        assert!(refused(&["call"]));
        assert!(refused(&["call", "bob", "--seconds", "-1"]));
        assert!(refused(&["call", "bob", "--connect-timeout", "0"]));
        match parse(&[
            "pickup",
            "bob",
            "--call",
            "s1~ab",
            "--seconds",
            "0",
            "--json",
        ])
        .command
        {
            Command::Pickup(args) => {
                assert_eq!(args.user, "bob");
                assert_eq!(args.call.as_deref(), Some("s1~ab"));
                assert_eq!(args.seconds, 0);
                assert!(args.json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["pickup", "bob"]).command {
            Command::Pickup(args) => assert_eq!((args.call, args.seconds), (None, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forward() {
        match parse(&["forward", "set", "noanswer", "carol"]).command {
            Command::Forward(ForwardCommand::Set {
                mode,
                name,
                for_user,
            }) => {
                assert_eq!(mode, ForwardMode::NoAnswer);
                assert_eq!(name, "carol");
                assert_eq!(for_user, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["forward", "set", "always", "dave", "--for", "bob"]).command {
            Command::Forward(ForwardCommand::Set { mode, for_user, .. }) => {
                assert_eq!(mode, ForwardMode::Always);
                assert_eq!(for_user.as_deref(), Some("bob"));
            }
            other => panic!("{other:?}"),
        }
        assert!(refused(&["forward", "set", "sometimes", "carol"]));
        assert!(refused(&["forward", "set", "busy"]));
        assert!(matches!(
            parse(&["forward", "clear"]).command,
            Command::Forward(ForwardCommand::Clear {
                mode: None,
                for_user: None
            })
        ));
        assert!(matches!(
            parse(&["forward", "clear", "busy", "--for", "bob"]).command,
            Command::Forward(ForwardCommand::Clear {
                mode: Some(ForwardMode::Busy),
                for_user: Some(user)
            }) if user == "bob"
        ));
        assert!(matches!(
            parse(&["forward", "show", "--json"]).command,
            Command::Forward(ForwardCommand::Show {
                for_user: None,
                json: true
            })
        ));
    }

    #[test]
    fn presence() {
        match parse(&["presence", "set", "away", "--note", "lunch"]).command {
            Command::Presence(PresenceCommand::Set {
                availability,
                note,
                for_user,
                json,
            }) => {
                assert_eq!(availability, Availability::Away);
                assert_eq!(note.as_deref(), Some("lunch"));
                assert_eq!(for_user, None);
                assert!(!json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["presence", "set", "dnd", "--for", "bob"]).command {
            Command::Presence(PresenceCommand::Set {
                availability,
                for_user,
                ..
            }) => {
                assert_eq!(availability, Availability::Dnd);
                assert_eq!(for_user.as_deref(), Some("bob"));
            }
            other => panic!("{other:?}"),
        }
        assert!(refused(&["presence", "set", "sleeping"]));
        match parse(&["presence", "get", "bob", "--json"]).command {
            Command::Presence(PresenceCommand::Get { name, json }) => {
                assert_eq!(name, "bob");
                assert!(json);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn contacts() {
        match parse(&["contact", "add", "bob"]).command {
            Command::Contact(ContactCommand::Add { name, group }) => {
                assert_eq!((name.as_str(), group.as_str()), ("bob", ""));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["contact", "add", "bob", "--group", "team"]).command {
            Command::Contact(ContactCommand::Add { group, .. }) => assert_eq!(group, "team"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["contact", "remove", "bob"]).command,
            Command::Contact(ContactCommand::Remove { name }) if name == "bob"
        ));
        assert!(matches!(
            parse(&["contact", "list", "--json"]).command,
            Command::Contact(ContactCommand::List { json: true })
        ));
    }

    fn send_target(words: &[&str]) -> Result<(SendTarget, String), String> {
        match parse(words).command {
            Command::Send(args) => args
                .target()
                .map(|(target, text)| (target, text.to_string())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn send() {
        assert_eq!(
            send_target(&["send", "bob", "hello there"]),
            Ok((
                SendTarget::User(UserId::from("bob")),
                "hello there".to_string()
            ))
        );
        assert_eq!(
            send_target(&["send", "--group", "ops", "deploy done"]),
            Ok((
                SendTarget::Conversation(ConversationId::from("g:ops")),
                "deploy done".to_string()
            ))
        );
        assert_eq!(
            send_target(&["send", "c:0190", "hi"]),
            Ok((
                SendTarget::Conversation(ConversationId::from("c:0190")),
                "hi".to_string()
            ))
        );
        assert!(send_target(&["send", "bob"]).is_err());
        assert!(send_target(&["send", "--group", "ops", "bob", "hi"]).is_err());
        assert!(refused(&["send"]));
        assert!(refused(&["send", "a", "b", "c"]));
    }

    #[test]
    fn history_read_journal_conversations() {
        match parse(&["history", "bob", "--limit", "20", "--json"]).command {
            Command::History {
                name,
                group,
                limit,
                json,
                ..
            } => {
                assert_eq!(name, "bob");
                assert!(!group && json);
                assert_eq!(limit, Some(20));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["history", "ops", "--group"]).command,
            Command::History {
                group: true,
                limit: None,
                json: false,
                ..
            }
        ));
        assert!(refused(&["history", "bob", "--limit", "501"]));
        assert!(matches!(
            parse(&["read", "bob"]).command,
            Command::Read { name, group: false, .. } if name == "bob"
        ));
        assert!(matches!(
            parse(&["read", "ops", "--group"]).command,
            Command::Read { group: true, .. }
        ));
        assert!(matches!(
            parse(&["journal"]).command,
            Command::Journal {
                json: false,
                limit: None
            }
        ));
        assert!(matches!(
            parse(&["journal", "--json"]).command,
            Command::Journal { json: true, .. }
        ));
        assert!(matches!(
            parse(&["conversations", "--json"]).command,
            Command::Conversations { json: true }
        ));
        assert!(matches!(
            parse(&["me"]).command,
            Command::Me { json: false }
        ));
        assert!(matches!(
            parse(&["directory", "al"]).command,
            Command::Directory { query, json: false } if query == "al"
        ));
    }

    #[test]
    fn conversation_names() {
        let me = UserId::from("carol");
        assert_eq!(conversation_for(&me, "bob", false).as_str(), "d:bob:carol");
        assert_eq!(conversation_for(&me, "ops", true).as_str(), "g:ops");
        assert_eq!(conversation_for(&me, "c:42", false).as_str(), "c:42");
        assert_eq!(conversation_for(&me, "d:a:b", true).as_str(), "d:a:b");
    }
}
