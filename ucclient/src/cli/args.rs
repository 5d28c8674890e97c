//! The command line of `ucclient`. Its syntax is a contract: other tools script against it
//! (issue 2, "Interfaces"), so changes only add.

use clap::{Args, Parser, Subcommand};
use shared::api::parse_capabilities;
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
        /// Capabilities announced for the device, comma-separated.
        #[arg(long, value_parser = parse_caps, default_value = "chat")]
        caps: Caps,
    },
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
            Command::Listen { device, caps } => {
                assert_eq!(device, None);
                assert_eq!(caps, Caps(vec![Capability::Chat]));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["listen", "--device", "desk", "--caps", "chat,audio"]).command {
            Command::Listen { device, caps } => {
                assert_eq!(device.as_deref(), Some("desk"));
                assert_eq!(caps, Caps(vec![Capability::Chat, Capability::Audio]));
            }
            other => panic!("{other:?}"),
        }
        assert!(refused(&["listen", "--caps", "telepathy"]));
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
