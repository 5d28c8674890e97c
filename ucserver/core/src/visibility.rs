//! Who may see what of whom: the one rule, used for live events, `GET /presence/{user}`
//! and the contact list alike.
//!
//! - W sees everything of U (`Full`) when W is U, when W is an admin, when W is U's delegate
//!   (acts for U), when W has U in their contact list, or when W and U share a group.
//! - Any other signed-in user of the directory sees U's availability only (`Basic`).
//! - Only `Full` watchers get live presence events: they are U's "watchers". Everyone else
//!   asks when they need it.

use shared::inspect::VisibilityRule;
use shared::presence::Visibility;

/// Facts about the pair (watcher W, user U) that the rule needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relation {
    pub same_user: bool,
    pub watcher_is_admin: bool,
    /// U made W their delegate.
    pub watcher_is_delegate: bool,
    pub in_watcher_contacts: bool,
    pub share_group: bool,
}

/// What W may see of U.
pub fn visibility(relation: Relation) -> Visibility {
    decide(relation).0
}

/// What W may see of U, and the rule that decided it (the first that applies, in the order
/// of the module comment). The presence viewer shows the rule; everything else uses
/// [`visibility`], which is this.
pub fn decide(relation: Relation) -> (Visibility, VisibilityRule) {
    let rule = if relation.same_user {
        VisibilityRule::SameUser
    } else if relation.watcher_is_admin {
        VisibilityRule::Admin
    } else if relation.watcher_is_delegate {
        VisibilityRule::Delegate
    } else if relation.in_watcher_contacts {
        VisibilityRule::Contact
    } else if relation.share_group {
        VisibilityRule::GroupMate
    } else {
        VisibilityRule::Basic
    };
    let visibility = match rule {
        VisibilityRule::Basic => Visibility::Basic,
        _ => Visibility::Full,
    };
    (visibility, rule)
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

    #[test]
    fn the_first_rule_that_applies_decides() {
        let all = Relation {
            same_user: true,
            watcher_is_admin: true,
            watcher_is_delegate: true,
            in_watcher_contacts: true,
            share_group: true,
        };
        let steps = [
            (all, VisibilityRule::SameUser),
            (
                Relation {
                    same_user: false,
                    ..all
                },
                VisibilityRule::Admin,
            ),
            (
                Relation {
                    same_user: false,
                    watcher_is_admin: false,
                    ..all
                },
                VisibilityRule::Delegate,
            ),
            (
                Relation {
                    same_user: false,
                    watcher_is_admin: false,
                    watcher_is_delegate: false,
                    ..all
                },
                VisibilityRule::Contact,
            ),
            (
                Relation {
                    share_group: true,
                    ..Relation::default()
                },
                VisibilityRule::GroupMate,
            ),
            (Relation::default(), VisibilityRule::Basic),
        ];
        for (relation, rule) in steps {
            assert_eq!(decide(relation).1, rule, "{relation:?}");
            assert_eq!(decide(relation).0, visibility(relation));
        }
    }
}
