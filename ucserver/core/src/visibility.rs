//! Who may see what of whom: the one rule, used for live events, `GET /presence/{user}`
//! and the contact list alike.
//!
//! - W sees everything of U (`Full`) when W is U, when W is an admin, when W has U in their
//!   contact list, or when W and U share a group.
//! - Any other signed-in user of the directory sees U's availability only (`Basic`).
//! - Only `Full` watchers get live presence events: they are U's "watchers". Everyone else
//!   asks when they need it.

use shared::presence::Visibility;

/// Facts about the pair (watcher W, user U) that the rule needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relation {
    pub same_user: bool,
    pub watcher_is_admin: bool,
    pub in_watcher_contacts: bool,
    pub share_group: bool,
}

/// What W may see of U.
pub fn visibility(relation: Relation) -> Visibility {
    if relation.same_user
        || relation.watcher_is_admin
        || relation.in_watcher_contacts
        || relation.share_group
    {
        Visibility::Full
    } else {
        Visibility::Basic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_table() {
        let cases = [
            (Relation::default(), Visibility::Basic),
            (
                Relation {
                    same_user: true,
                    ..Default::default()
                },
                Visibility::Full,
            ),
            (
                Relation {
                    watcher_is_admin: true,
                    ..Default::default()
                },
                Visibility::Full,
            ),
            (
                Relation {
                    in_watcher_contacts: true,
                    ..Default::default()
                },
                Visibility::Full,
            ),
            (
                Relation {
                    share_group: true,
                    ..Default::default()
                },
                Visibility::Full,
            ),
        ];
        for (relation, expected) in cases {
            assert_eq!(visibility(relation), expected, "{relation:?}");
        }
    }
}
