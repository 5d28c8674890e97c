//! Newtypes for identifiers, so a user id is never passed where a server id is expected.
//!
//! User and group ids are the login or group name itself (lower case, `[a-z0-9._-]`, 1–64
//! characters): they are what people type in a CLI, and they never change once created.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
        pub struct $name(pub String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_string())
            }
        }
    };
}

string_id!(
    /// A user's login name; also the key of the user everywhere.
    UserId
);
string_id!(
    /// A named group of users (admin-managed); its group chat is conversation `g:<name>`.
    GroupId
);
string_id!(
    /// A UCServer's configured id (`UC_SERVER_ID`).
    ServerId
);
string_id!(
    /// One connected device of a user (a desktop client, a browser tab, a phone).
    DeviceId
);
string_id!(
    /// A conversation: `d:<a>:<b>` (1:1, names sorted), `g:<group>` (group chat of an admin
    /// group) or `c:<uuid>` (an ad-hoc group conversation).
    ConversationId
);
string_id!(
    /// A call, chosen by the UCServer that places it.
    CallId
);
string_id!(
    /// A MediaServer's configured id (`UC_MEDIA_ID`).
    MediaServerId
);

/// Why a name was refused as a user, group, server or device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid name: use 1-64 characters of a-z, 0-9, '.', '_' or '-'")]
pub struct InvalidName {
    pub value: String,
}

/// Checks a user, group, server or device name: 1–64 characters of `[a-z0-9._-]`.
pub fn validate_name(value: &str) -> Result<(), InvalidName> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            value: value.to_string(),
        })
    }
}

impl ConversationId {
    /// The 1:1 conversation between two users; the same id whoever starts it.
    pub fn direct(a: &UserId, b: &UserId) -> Self {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        Self(format!("d:{first}:{second}"))
    }

    /// The group chat of an admin-managed group.
    pub fn group(group: &GroupId) -> Self {
        Self(format!("g:{group}"))
    }

    /// The two members of a 1:1 conversation, or `None` for a group conversation.
    pub fn direct_members(&self) -> Option<(UserId, UserId)> {
        let rest = self.0.strip_prefix("d:")?;
        let (a, b) = rest.split_once(':')?;
        Some((UserId::from(a), UserId::from(b)))
    }

    /// The admin group behind a `g:` conversation.
    pub fn group_id(&self) -> Option<GroupId> {
        self.0.strip_prefix("g:").map(GroupId::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_conversation_id_is_symmetric() {
        let a = UserId::from("alice");
        let b = UserId::from("bob");
        assert_eq!(
            ConversationId::direct(&a, &b),
            ConversationId::direct(&b, &a)
        );
        assert_eq!(ConversationId::direct(&a, &b).as_str(), "d:alice:bob");
        assert_eq!(
            ConversationId::direct(&b, &a).direct_members(),
            Some((a, b))
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("alice.smith-2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("Alice").is_err());
        assert!(validate_name("a:b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
