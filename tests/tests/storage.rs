//! Conformance suite of `Store`: every check below runs once against SQLite (a fresh file)
//! and once against PostgreSQL (a database of its own on the test process's shared server).
//! A new backend joins by adding one module to `conformance!`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use shared::api::{
    AdminRole, AuditFilter, CallResult, ConversationKind, Direction, JournalEntry, JournalKind,
};
use shared::{ConversationId, GroupId, MediaServerId, ServerId, UserId};
use switchboard_tests::{Postgres, process};
use ucserver::store::{
    AuditRecord, ConversationRecord, DirectoryUserWrite, DirectoryWrite, HistoryPage,
    LicenseRecord, MediaServerRecord, NewMessage, ServerRecord, SettingsAppliedRecord, SqlStore,
    Store, StoreError, UserRecord, UserUpdate,
};

/// Runs each named check against every backend, as `sqlite::NAME` and `postgres::NAME`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = super::postgres_store(stringify!($name)).await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

conformance!(
    users,
    groups,
    contacts_and_delegates,
    forwarding_rules,
    sessions,
    conversations,
    append_and_history,
    non_members_fail_alone,
    client_id_dedup,
    concurrent_appenders_get_gap_free_seqs,
    read_markers,
    chat_journal,
    call_journal,
    licenses_servers_media_audit,
    user_versions_roles_and_disabling,
    concurrent_creates_and_upserts,
    append_throughput,
    one_batch_spans_many_conversations,
    runtime_settings,
    directory_writes_are_all_or_nothing,
);

/// A directory removed when the test ends (also when it panics).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn sqlite_store() -> (Arc<dyn Store>, TempDir) {
    let dir = TempDir(process::fresh_dir("sqlite"));
    // A directory that does not exist yet: `connect` creates it.
    let url = format!("sqlite:{}/data/switchboard.db", dir.0.display());
    let store = SqlStore::connect(&url).await.expect("connect to SQLite");
    (Arc::new(store), dir)
}

async fn postgres_store(test: &str) -> Arc<dyn Store> {
    let url = tokio::task::spawn_blocking({
        let name = format!("t_{test}");
        move || Postgres::shared().create_database(&name)
    })
    .await
    .expect("create database");
    Arc::new(
        SqlStore::connect(&url)
            .await
            .expect("connect to PostgreSQL"),
    )
}

// ---- helpers ----

fn uid(name: &str) -> UserId {
    UserId::from(name)
}

fn user(name: &str, display_name: &str) -> UserRecord {
    UserRecord {
        id: uid(name),
        password_hash: format!("$argon2id$hash-of-{name}"),
        display_name: display_name.to_string(),
        home_server: ServerId::from("uc1"),
        admin: false,
        created_ms: 1_000,
        role: None,
        disabled: false,
        version: 1,
        changed_by: None,
        changed_ms: 0,
    }
}

async fn create_users(store: &dyn Store, names: &[&str]) {
    for name in names {
        store
            .create_user(&user(name, &name.to_uppercase()))
            .await
            .expect("create user");
    }
}

fn direct(a: &str, b: &str, created_by: &str, at: i64) -> ConversationRecord {
    ConversationRecord {
        id: ConversationId::direct(&uid(a), &uid(b)),
        kind: ConversationKind::Direct,
        name: String::new(),
        created_by: uid(created_by),
        created_ms: at,
        last_seq: 0,
        members: vec![uid(a), uid(b)],
    }
}

fn group_conversation(
    id: &str,
    name: &str,
    created_by: &str,
    members: &[&str],
    at: i64,
) -> ConversationRecord {
    ConversationRecord {
        id: ConversationId::from(id),
        kind: ConversationKind::Group,
        name: name.to_string(),
        created_by: uid(created_by),
        created_ms: at,
        last_seq: 0,
        members: members.iter().map(|m| uid(m)).collect(),
    }
}

fn message(conversation: &ConversationId, sender: &str, body: &str, at: i64) -> NewMessage {
    NewMessage {
        conversation: conversation.clone(),
        id: uuid::Uuid::now_v7().to_string(),
        sender: uid(sender),
        body: body.to_string(),
        sent_ms: at,
        client_id: None,
    }
}

/// Appends one batch whose messages must all succeed; returns their seqs.
async fn append_ok(store: &dyn Store, batch: &[NewMessage]) -> Vec<u64> {
    store
        .append_messages(batch)
        .await
        .expect("append batch")
        .into_iter()
        .map(|r| r.expect("message stored").seq)
        .collect()
}

fn seqs(messages: &[shared::api::ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn ids(users: &[UserId]) -> Vec<&str> {
    users.iter().map(UserId::as_str).collect()
}

// ---- checks ----

async fn users(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    let mut alice = user("alice", "Alice Liddell");
    alice.admin = true;
    store.create_user(&alice).await.unwrap();
    // An administrator stored without a role is a full one.
    alice.role = Some(AdminRole::Full);
    store
        .create_user(&user("bob", "Robert 100% Real"))
        .await
        .unwrap();
    store.create_user(&user("carol_x", "Carol")).await.unwrap();
    assert!(matches!(
        store.create_user(&user("alice", "Other")).await,
        Err(StoreError::Conflict(_))
    ));

    assert_eq!(
        store.get_user(&uid("alice")).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.get_user(&uid("nobody")).await.unwrap(), None);
    assert_eq!(
        store
            .list_users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.id.0.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob", "carol_x"]
    );

    let found = |text: &'static str, limit: u32| {
        let store = store.clone();
        async move {
            store
                .search_users(text, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|u| u.id.0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("LIDD", 10).await,
        ["alice"],
        "display name, case-insensitive"
    );
    assert_eq!(found("bo", 10).await, ["bob"], "id");
    assert_eq!(
        found("l", 10).await,
        ["alice", "bob", "carol_x"],
        "sorted by id"
    );
    assert_eq!(found("l", 2).await, ["alice", "bob"], "limit");
    assert_eq!(found("100%", 10).await, ["bob"], "% is literal");
    assert_eq!(found("l_x", 10).await, ["carol_x"], "_ is literal");
    assert!(
        found("l_c", 10).await.is_empty(),
        "_ matches no other character"
    );

    let changed = store
        .update_user(
            &uid("bob"),
            &UserUpdate {
                display_name: Some("Bob".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.display_name, "Bob");
    assert_eq!(
        changed.password_hash,
        user("bob", "").password_hash,
        "untouched field stays"
    );
    let changed = store
        .update_user(
            &uid("bob"),
            &UserUpdate {
                password_hash: Some("new".into()),
                home_server: Some(ServerId::from("uc2")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            changed.display_name.as_str(),
            changed.password_hash.as_str()
        ),
        ("Bob", "new")
    );
    assert_eq!(store.get_user(&uid("bob")).await.unwrap(), Some(changed));
    assert!(matches!(
        store
            .update_user(&uid("nobody"), &UserUpdate::default())
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Deleting removes contacts, delegations and memberships; messages stay.
    store
        .put_contact(&uid("alice"), &uid("bob"), "")
        .await
        .unwrap();
    store
        .put_contact(&uid("bob"), &uid("alice"), "")
        .await
        .unwrap();
    store
        .put_delegate(&uid("alice"), &uid("bob"))
        .await
        .unwrap();
    store
        .create_group(&GroupId::from("team"), "Team", &uid("alice"), 5)
        .await
        .unwrap();
    store
        .add_group_member(&GroupId::from("team"), &uid("bob"))
        .await
        .unwrap();
    let chat = direct("alice", "bob", "bob", 10);
    store.ensure_conversation(&chat).await.unwrap();
    append_ok(&*store, &[message(&chat.id, "bob", "bye", 11)]).await;

    store.delete_user(&uid("bob")).await.unwrap();
    assert_eq!(store.get_user(&uid("bob")).await.unwrap(), None);
    assert!(store.contacts(&uid("alice")).await.unwrap().is_empty());
    assert!(
        store
            .contact_owners(&uid("alice"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.is_delegate(&uid("alice"), &uid("bob")).await.unwrap());
    assert!(
        store
            .get_group(&GroupId::from("team"))
            .await
            .unwrap()
            .unwrap()
            .members
            .is_empty()
    );
    assert_eq!(
        ids(&store
            .get_conversation(&chat.id)
            .await
            .unwrap()
            .unwrap()
            .members),
        ["alice"]
    );
    let history = store
        .messages(&chat.id, HistoryPage::Latest, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "messages stay");
    assert!(store.journal(&uid("bob"), 10).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_user(&uid("bob")).await,
        Err(StoreError::NotFound(_))
    ));
    // The id is free again.
    store.create_user(&user("bob", "Bob again")).await.unwrap();
}

async fn groups(store: Arc<dyn Store>) {
    create_users(&*store, &["ann", "ben", "cat", "dan"]).await;
    let sales = GroupId::from("sales");
    let ops = GroupId::from("ops");
    store
        .create_group(&sales, "Sales", &uid("ann"), 100)
        .await
        .unwrap();
    store
        .create_group(&ops, "Operations", &uid("ann"), 200)
        .await
        .unwrap();
    assert!(matches!(
        store.create_group(&sales, "Again", &uid("ann"), 300).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_group(&GroupId::from("nope")).await.unwrap(), None);

    // The group conversation exists, empty.
    let sales_chat = store
        .get_conversation(&ConversationId::group(&sales))
        .await
        .unwrap()
        .expect("g:sales");
    assert_eq!(sales_chat.kind, ConversationKind::Group);
    assert_eq!(sales_chat.name, "Sales");
    assert_eq!((sales_chat.created_ms, sales_chat.last_seq), (100, 0));
    assert!(sales_chat.members.is_empty());

    for member in ["dan", "ben", "ann", "ben"] {
        store
            .add_group_member(&sales, &uid(member))
            .await
            .expect("adding twice is fine");
    }
    store.add_group_member(&ops, &uid("ben")).await.unwrap();
    store.add_group_member(&ops, &uid("cat")).await.unwrap();
    assert!(matches!(
        store.add_group_member(&sales, &uid("zed")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .add_group_member(&GroupId::from("nope"), &uid("ann"))
            .await,
        Err(StoreError::NotFound(_))
    ));

    let group = store.get_group(&sales).await.unwrap().unwrap();
    assert_eq!(
        (group.display_name.as_str(), ids(&group.members)),
        ("Sales", vec!["ann", "ben", "dan"])
    );
    let listed = store.list_groups().await.unwrap();
    assert_eq!(
        listed.iter().map(|g| g.id.0.as_str()).collect::<Vec<_>>(),
        ["ops", "sales"]
    );
    assert_eq!(ids(&listed[0].members), ["ben", "cat"]);
    assert_eq!(listed[1], group);

    // Members joined the group conversation.
    let sales_chat = store
        .get_conversation(&ConversationId::group(&sales))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&sales_chat.members), ["ann", "ben", "dan"]);
    let of_dan = store.conversations_of(&uid("dan")).await.unwrap();
    assert_eq!(of_dan.len(), 1);
    assert_eq!(of_dan[0].id, ConversationId::group(&sales));

    assert_eq!(
        ids(&store.group_mates(&uid("ben")).await.unwrap()),
        ["ann", "cat", "dan"]
    );
    assert_eq!(ids(&store.group_mates(&uid("cat")).await.unwrap()), ["ben"]);
    assert!(store.group_mates(&uid("zed")).await.unwrap().is_empty());

    store
        .remove_group_member(&sales, &uid("dan"))
        .await
        .unwrap();
    store
        .remove_group_member(&sales, &uid("dan"))
        .await
        .expect("removing twice is fine");
    assert_eq!(
        ids(&store.get_group(&sales).await.unwrap().unwrap().members),
        ["ann", "ben"]
    );
    assert!(
        store
            .conversations_of(&uid("dan"))
            .await
            .unwrap()
            .is_empty(),
        "left the group chat"
    );
    assert!(store.group_mates(&uid("dan")).await.unwrap().is_empty());
    assert_eq!(ids(&store.group_mates(&uid("ann")).await.unwrap()), ["ben"]);

    // A message from a removed member is refused; the members can post.
    let chat = ConversationId::group(&sales);
    let results = store
        .append_messages(&[
            message(&chat, "dan", "still here?", 400),
            message(&chat, "ann", "hi all", 401),
        ])
        .await
        .unwrap();
    assert!(matches!(results[0], Err(StoreError::NotFound(_))));
    assert_eq!(results[1].as_ref().unwrap().seq, 1);
}

async fn contacts_and_delegates(store: Arc<dyn Store>) {
    create_users(&*store, &["amy", "bea", "cy", "dee"]).await;
    assert!(matches!(
        store.put_contact(&uid("amy"), &uid("ghost"), "").await,
        Err(StoreError::NotFound(_))
    ));

    store
        .put_contact(&uid("amy"), &uid("cy"), "Work")
        .await
        .unwrap();
    store
        .put_contact(&uid("amy"), &uid("bea"), "")
        .await
        .unwrap();
    store
        .put_contact(&uid("dee"), &uid("cy"), "")
        .await
        .unwrap();
    store
        .put_contact(&uid("amy"), &uid("cy"), "Friends")
        .await
        .expect("re-file");
    let contacts = store.contacts(&uid("amy")).await.unwrap();
    assert_eq!(
        contacts
            .iter()
            .map(|c| (
                c.contact.0.as_str(),
                c.group.as_str(),
                c.display_name.as_str()
            ))
            .collect::<Vec<_>>(),
        [("bea", "", "BEA"), ("cy", "Friends", "CY")]
    );
    assert_eq!(
        ids(&store.contact_owners(&uid("cy")).await.unwrap()),
        ["amy", "dee"]
    );
    assert!(store.contact_owners(&uid("amy")).await.unwrap().is_empty());

    store.delete_contact(&uid("amy"), &uid("cy")).await.unwrap();
    store
        .delete_contact(&uid("amy"), &uid("cy"))
        .await
        .expect("deleting twice is fine");
    assert_eq!(
        ids(&store.contact_owners(&uid("cy")).await.unwrap()),
        ["dee"]
    );
    assert_eq!(store.contacts(&uid("amy")).await.unwrap().len(), 1);

    assert!(!store.is_delegate(&uid("amy"), &uid("bea")).await.unwrap());
    store.put_delegate(&uid("amy"), &uid("bea")).await.unwrap();
    store
        .put_delegate(&uid("amy"), &uid("bea"))
        .await
        .expect("twice is fine");
    assert!(store.is_delegate(&uid("amy"), &uid("bea")).await.unwrap());
    assert!(
        !store.is_delegate(&uid("bea"), &uid("amy")).await.unwrap(),
        "not symmetric"
    );
    assert!(matches!(
        store.put_delegate(&uid("amy"), &uid("ghost")).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .delete_delegate(&uid("amy"), &uid("bea"))
        .await
        .unwrap();
    assert!(!store.is_delegate(&uid("amy"), &uid("bea")).await.unwrap());
}

async fn forwarding_rules(store: Arc<dyn Store>) {
    use shared::call::ForwardMode;
    create_users(&*store, &["fay", "gus", "hal"]).await;
    assert!(store.forwarding(&uid("fay")).await.unwrap().is_empty());
    let rules = store
        .set_forwarding(&uid("fay"), ForwardMode::Busy, Some(&uid("gus")))
        .await
        .unwrap();
    assert_eq!(rules.busy, Some(uid("gus")));
    // One target per mode: setting again replaces; other modes are separate.
    store
        .set_forwarding(&uid("fay"), ForwardMode::Busy, Some(&uid("hal")))
        .await
        .unwrap();
    let rules = store
        .set_forwarding(&uid("fay"), ForwardMode::NoAnswer, Some(&uid("gus")))
        .await
        .unwrap();
    assert_eq!(
        (
            rules.always.clone(),
            rules.busy.clone(),
            rules.no_answer.clone()
        ),
        (None, Some(uid("hal")), Some(uid("gus")))
    );
    assert_eq!(store.forwarding(&uid("fay")).await.unwrap(), rules);
    // Unknown users on either side are refused and change nothing.
    assert!(matches!(
        store
            .set_forwarding(&uid("fay"), ForwardMode::Always, Some(&uid("ghost")))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .set_forwarding(&uid("ghost"), ForwardMode::Always, Some(&uid("gus")))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.forwarding(&uid("fay")).await.unwrap(), rules);
    // Clearing one mode leaves the others; deleting a target user removes rules to them.
    let rules = store
        .set_forwarding(&uid("fay"), ForwardMode::Busy, None)
        .await
        .unwrap();
    assert_eq!(
        (rules.busy, rules.no_answer.clone()),
        (None, Some(uid("gus")))
    );
    store.delete_user(&uid("gus")).await.unwrap();
    assert!(store.forwarding(&uid("fay")).await.unwrap().is_empty());
}

async fn sessions(store: Arc<dyn Store>) {
    use ucserver::store::SessionRecord;
    create_users(&*store, &["ivy", "jon"]).await;
    let session = |hash: &str, user: &str, issued_ms: i64| SessionRecord {
        token_hash: hash.to_string(),
        user: uid(user),
        device: shared::DeviceId::from("desk"),
        admin: user == "jon",
        console_only: false,
        issued_ms,
    };
    for record in [
        session("h1", "ivy", 1_000),
        session("h2", "ivy", 5_000),
        session("h3", "jon", 9_000),
    ] {
        store.put_session(&record).await.unwrap();
    }
    assert_eq!(
        store.get_session("h3").await.unwrap(),
        Some(session("h3", "jon", 9_000))
    );
    assert_eq!(store.get_session("nope").await.unwrap(), None);
    assert!(
        store.put_session(&session("h1", "jon", 1)).await.is_err(),
        "a hash is unique"
    );
    assert!(store.put_session(&session("h9", "ghost", 1)).await.is_err());
    assert_eq!(store.delete_sessions_before(2_000).await.unwrap(), 1);
    assert_eq!(store.get_session("h1").await.unwrap(), None);
    store.delete_session("h3").await.unwrap();
    assert_eq!(store.get_session("h3").await.unwrap(), None);
    let phone = SessionRecord {
        device: shared::DeviceId::from("phone"),
        ..session("h4", "ivy", 6_000)
    };
    store.put_session(&phone).await.unwrap();
    let ivy = uid("ivy");
    let of_device = |device: &str| shared::DeviceId::from(device);
    assert_eq!(
        store
            .delete_sessions_of_device(&ivy, &of_device("phone"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.get_session("h4").await.unwrap(), None);
    assert!(
        store.get_session("h2").await.unwrap().is_some(),
        "the desk's stays"
    );
    assert_eq!(store.delete_sessions_of(&ivy).await.unwrap(), 1);
    assert_eq!(store.get_session("h2").await.unwrap(), None);
}

async fn conversations(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo", "cy"]).await;
    let ab = direct("al", "bo", "al", 100);
    store.ensure_conversation(&ab).await.unwrap();
    let mut again = ab.clone();
    again.name = "renamed".into();
    again.members.push(uid("cy"));
    store
        .ensure_conversation(&again)
        .await
        .expect("exists: does nothing");
    let stored = store.get_conversation(&ab.id).await.unwrap().unwrap();
    assert_eq!(stored, ab, "the first version stays");
    assert_eq!(
        store
            .get_conversation(&ConversationId::from("d:x:y"))
            .await
            .unwrap(),
        None
    );

    let missing = direct("al", "ghost", "al", 100);
    assert!(matches!(
        store.ensure_conversation(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get_conversation(&missing.id).await.unwrap(),
        None,
        "nothing half-made"
    );

    let room = group_conversation("c:room", "Room", "bo", &["bo", "al"], 200);
    store.ensure_conversation(&room).await.unwrap();
    store
        .add_conversation_member(&room.id, &uid("cy"), 300)
        .await
        .unwrap();
    store
        .add_conversation_member(&room.id, &uid("cy"), 301)
        .await
        .expect("twice is fine");
    assert_eq!(
        ids(&store
            .get_conversation(&room.id)
            .await
            .unwrap()
            .unwrap()
            .members),
        ["al", "bo", "cy"]
    );
    assert!(matches!(
        store
            .add_conversation_member(&ConversationId::from("c:none"), &uid("cy"), 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .add_conversation_member(&room.id, &uid("ghost"), 1)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Newest activity first; an empty conversation counts from its creation.
    let of_al = store.conversations_of(&uid("al")).await.unwrap();
    assert_eq!(
        of_al.iter().map(|c| c.id.0.as_str()).collect::<Vec<_>>(),
        ["c:room", "d:al:bo"]
    );
    assert!(
        of_al
            .iter()
            .all(|c| c.last_message.is_none() && c.unread == 0 && c.last_seq == 0)
    );

    let sent = store
        .append_messages(&[message(&ab.id, "bo", "hello al", 1_000)])
        .await
        .unwrap();
    let sent = sent.into_iter().next().unwrap().unwrap();
    let of_al = store.conversations_of(&uid("al")).await.unwrap();
    assert_eq!(
        of_al.iter().map(|c| c.id.0.as_str()).collect::<Vec<_>>(),
        ["d:al:bo", "c:room"]
    );
    let first = &of_al[0];
    assert_eq!(first.kind, ConversationKind::Direct);
    assert_eq!(ids(&first.members), ["al", "bo"]);
    assert_eq!(
        (first.last_seq, first.last_read_seq, first.unread),
        (1, 0, 1)
    );
    assert_eq!(first.last_message.as_ref(), Some(&sent));
    let of_bo = store.conversations_of(&uid("bo")).await.unwrap();
    assert_eq!(
        (of_bo[0].last_read_seq, of_bo[0].unread),
        (1, 0),
        "the sender has read their message"
    );
    assert_eq!(of_bo[1].name, "Room");
    assert_eq!(ids(&of_bo[1].members), ["al", "bo", "cy"]);

    // A member who joins later has nothing unread.
    append_ok(
        &*store,
        &[
            message(&room.id, "al", "one", 2_000),
            message(&room.id, "al", "two", 2_001),
        ],
    )
    .await;
    create_users(&*store, &["dot"]).await;
    store
        .add_conversation_member(&room.id, &uid("dot"), 3_000)
        .await
        .unwrap();
    let of_dot = store.conversations_of(&uid("dot")).await.unwrap();
    assert_eq!((of_dot[0].last_seq, of_dot[0].unread), (2, 0));
    assert_eq!(
        store
            .get_conversation(&room.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        2
    );
}

async fn append_and_history(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo"]).await;
    let chat = direct("al", "bo", "al", 1);
    store.ensure_conversation(&chat).await.unwrap();
    assert!(
        store
            .messages(&chat.id, HistoryPage::Latest, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.append_messages(&[]).await.unwrap().is_empty());

    let batch: Vec<NewMessage> = (1..=25)
        .map(|i| {
            message(
                &chat.id,
                if i % 2 == 0 { "al" } else { "bo" },
                &format!("m{i}"),
                100 + i,
            )
        })
        .collect();
    let results = store.append_messages(&batch[..10]).await.unwrap();
    for (i, result) in results.iter().enumerate() {
        let stored = result.as_ref().unwrap();
        assert_eq!(stored.seq, i as u64 + 1);
        assert_eq!(
            (stored.id.as_str(), stored.body.as_str()),
            (batch[i].id.as_str(), batch[i].body.as_str())
        );
        assert_eq!(
            (&stored.sender, stored.sent_ms, &stored.conversation),
            (&batch[i].sender, batch[i].sent_ms, &chat.id)
        );
    }
    for message in &batch[10..] {
        append_ok(&*store, std::slice::from_ref(message)).await;
    }

    let latest = store
        .messages(&chat.id, HistoryPage::Latest, 10)
        .await
        .unwrap();
    assert_eq!(seqs(&latest), (16..=25).collect::<Vec<_>>());
    assert_eq!(latest[9].body, "m25");
    assert_eq!(latest[9].id, batch[24].id);
    let before = store
        .messages(&chat.id, HistoryPage::Before(16), 10)
        .await
        .unwrap();
    assert_eq!(seqs(&before), (6..=15).collect::<Vec<_>>());
    let before = store
        .messages(&chat.id, HistoryPage::Before(6), 10)
        .await
        .unwrap();
    assert_eq!(seqs(&before), (1..=5).collect::<Vec<_>>());
    assert!(
        store
            .messages(&chat.id, HistoryPage::Before(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after = store
        .messages(&chat.id, HistoryPage::After(0), 4)
        .await
        .unwrap();
    assert_eq!(seqs(&after), [1, 2, 3, 4]);
    let after = store
        .messages(&chat.id, HistoryPage::After(20), 100)
        .await
        .unwrap();
    assert_eq!(seqs(&after), [21, 22, 23, 24, 25]);
    assert!(
        store
            .messages(&chat.id, HistoryPage::After(25), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .messages(&ConversationId::from("d:x:y"), HistoryPage::Latest, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // One batch across two conversations, interleaved: each gets its own seqs.
    create_users(&*store, &["cy"]).await;
    let other = direct("al", "cy", "cy", 2);
    store.ensure_conversation(&other).await.unwrap();
    let mixed = [
        message(&other.id, "cy", "x1", 500),
        message(&chat.id, "al", "y26", 501),
        message(&other.id, "al", "x2", 502),
        message(&chat.id, "bo", "y27", 503),
    ];
    assert_eq!(append_ok(&*store, &mixed).await, [1, 26, 2, 27]);
    assert_eq!(
        store
            .get_conversation(&other.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        2
    );
    assert_eq!(
        store
            .get_conversation(&chat.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        27
    );
}

async fn non_members_fail_alone(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo", "eve"]).await;
    let chat = direct("al", "bo", "al", 1);
    store.ensure_conversation(&chat).await.unwrap();
    let batch = [
        message(&chat.id, "al", "one", 10),
        message(&chat.id, "eve", "intruder", 11),
        message(&ConversationId::from("d:nobody:none"), "al", "lost", 12),
        message(&chat.id, "bo", "two", 13),
        message(&chat.id, "ghost", "boo", 14),
    ];
    let results = store.append_messages(&batch).await.unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0].as_ref().unwrap().seq, 1);
    assert!(
        matches!(results[1], Err(StoreError::NotFound(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(StoreError::NotFound(_))),
        "{:?}",
        results[2]
    );
    assert_eq!(
        results[3].as_ref().unwrap().seq,
        2,
        "no gap for the refused ones"
    );
    assert!(matches!(results[4], Err(StoreError::NotFound(_))));
    let history = store
        .messages(&chat.id, HistoryPage::Latest, 10)
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );

    // A batch where every message fails stores nothing and changes nothing.
    let results = store
        .append_messages(&[message(&chat.id, "eve", "again", 20)])
        .await
        .unwrap();
    assert!(matches!(results[0], Err(StoreError::NotFound(_))));
    assert_eq!(
        store
            .get_conversation(&chat.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        2
    );
}

async fn client_id_dedup(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo"]).await;
    let chat = direct("al", "bo", "al", 1);
    store.ensure_conversation(&chat).await.unwrap();
    let with_id = |sender: &str, body: &str, client_id: &str| NewMessage {
        client_id: Some(client_id.to_string()),
        ..message(&chat.id, sender, body, 50)
    };

    let first = store
        .append_messages(&[with_id("al", "hello", "c-1")])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!((first.seq, first.client_id.as_deref()), (1, Some("c-1")));
    // A resend in a later batch, and twice within one batch.
    let results = store
        .append_messages(&[
            with_id("al", "hello (resent)", "c-1"),
            with_id("al", "second", "c-2"),
            with_id("al", "second (resent)", "c-2"),
            with_id("bo", "same client id, other sender", "c-1"),
            message(&chat.id, "al", "no client id", 51),
            message(&chat.id, "al", "no client id", 51),
        ])
        .await
        .unwrap();
    let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results[0], first, "the original comes back");
    assert_eq!(results[1].seq, 2);
    assert_eq!(results[2], results[1]);
    assert_eq!(results[2].body, "second");
    assert_eq!((results[3].seq, results[3].sender.as_str()), (3, "bo"));
    assert_eq!(
        (results[4].seq, results[5].seq),
        (4, 5),
        "without client id nothing is deduplicated"
    );
    let history = store
        .messages(&chat.id, HistoryPage::Latest, 100)
        .await
        .unwrap();
    assert_eq!(seqs(&history), [1, 2, 3, 4, 5]);
    let journal = store.journal(&uid("bo"), 10).await.unwrap();
    assert_eq!(journal[0].messages, 5, "resends are not counted");
}

async fn concurrent_appenders_get_gap_free_seqs(store: Arc<dyn Store>) {
    const TASKS: usize = 4;
    const PER_TASK: usize = 200;
    const NAMES: [&str; TASKS] = ["w0", "w1", "w2", "w3"];
    let names = NAMES;
    create_users(&*store, &names).await;
    let room = group_conversation("c:busy", "Busy", "w0", &names, 1);
    store.ensure_conversation(&room).await.unwrap();

    let mut tasks = Vec::new();
    for (task, name) in NAMES.into_iter().enumerate() {
        let store = store.clone();
        let id = room.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut sent = 0;
            let mut batch_size = 1 + task; // 1, 2, 3, 4: batches of different sizes interleave
            while sent < PER_TASK {
                let n = batch_size.min(PER_TASK - sent);
                let batch: Vec<NewMessage> = (0..n)
                    .map(|k| message(&id, name, &format!("{name}-{}", sent + k), 10))
                    .collect();
                mine.extend(append_ok(&*store, &batch).await);
                sent += n;
                batch_size = batch_size % 7 + 1;
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.expect("appender task");
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a task's messages keep their order"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=(TASKS * PER_TASK) as u64).collect();
    assert_eq!(all, expected, "seqs 1..=800, each exactly once");
    let stored = store
        .messages(&room.id, HistoryPage::After(0), 1_000)
        .await
        .unwrap();
    assert_eq!(seqs(&stored), expected);
    assert_eq!(
        store
            .get_conversation(&room.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        800
    );
    let journal = store.journal(&uid("w2"), 1).await.unwrap();
    assert_eq!(
        journal[0].messages, 800,
        "journal counted every message once"
    );
}

async fn read_markers(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo", "eve"]).await;
    let chat = direct("al", "bo", "al", 1);
    store.ensure_conversation(&chat).await.unwrap();
    assert_eq!(
        store.mark_read(&chat.id, &uid("bo"), 5).await.unwrap(),
        0,
        "capped at last_seq 0"
    );
    let batch: Vec<NewMessage> = (0..10)
        .map(|i| message(&chat.id, "al", &format!("m{i}"), 10 + i))
        .collect();
    append_ok(&*store, &batch).await;

    let unread = |who: &'static str| {
        let store = store.clone();
        async move {
            let summary = store.conversations_of(&uid(who)).await.unwrap().remove(0);
            (summary.last_read_seq, summary.unread)
        }
    };
    assert_eq!(unread("bo").await, (0, 10));
    assert_eq!(unread("al").await, (10, 0));
    assert_eq!(store.mark_read(&chat.id, &uid("bo"), 4).await.unwrap(), 4);
    assert_eq!(unread("bo").await, (4, 6));
    assert_eq!(
        store.mark_read(&chat.id, &uid("bo"), 2).await.unwrap(),
        4,
        "never moves back"
    );
    assert_eq!(unread("bo").await, (4, 6));
    assert_eq!(
        store.mark_read(&chat.id, &uid("bo"), 99).await.unwrap(),
        10,
        "capped at last_seq"
    );
    assert_eq!(unread("bo").await, (10, 0));
    assert!(matches!(
        store.mark_read(&chat.id, &uid("eve"), 1).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .mark_read(&ConversationId::from("d:x:y"), &uid("bo"), 1)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Sending moves the sender's marker to their message, and not back.
    append_ok(
        &*store,
        &[
            message(&chat.id, "al", "11", 30),
            message(&chat.id, "al", "12", 31),
        ],
    )
    .await;
    assert_eq!(unread("bo").await, (10, 2));
    append_ok(&*store, &[message(&chat.id, "bo", "13", 32)]).await;
    assert_eq!(unread("bo").await, (13, 0));
    assert_eq!(store.mark_read(&chat.id, &uid("al"), 3).await.unwrap(), 12);
    assert_eq!(unread("al").await, (12, 1));
    // Every member's marker at once (what a client shows as read ticks after a reload).
    assert_eq!(
        store.read_markers(&chat.id).await.unwrap(),
        vec![(uid("al"), 12), (uid("bo"), 13)]
    );
    assert!(
        store
            .read_markers(&shared::ConversationId::from("d:no:one"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn chat_journal(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo", "cy"]).await;
    let ab = direct("al", "bo", "bo", 1_000);
    store.ensure_conversation(&ab).await.unwrap();
    let room = group_conversation("c:plans", "Plans", "al", &["al", "bo"], 2_000);
    store.ensure_conversation(&room).await.unwrap();

    let journal_of = |who: &'static str| {
        let store = store.clone();
        async move { store.journal(&uid(who), 10).await.unwrap() }
    };
    let al = journal_of("al").await;
    assert_eq!(al.len(), 2);
    assert!(
        al.iter()
            .all(|e| e.kind == JournalKind::Chat && e.user == uid("al"))
    );
    assert_eq!(
        al[0].conversation.as_ref(),
        Some(&room.id),
        "newest started first"
    );
    assert_eq!(
        (al[0].direction, al[0].party.as_str(), al[0].started_ms),
        (Direction::Outgoing, "Plans", 2_000)
    );
    assert_eq!(
        (al[0].messages, al[0].ended_ms, al[0].summary.as_deref()),
        (0, None, None)
    );
    assert_eq!(
        (al[1].direction, al[1].party.as_str(), al[1].started_ms),
        (Direction::Incoming, "bo", 1_000)
    );
    let bo = journal_of("bo").await;
    assert_eq!(
        (bo[1].direction, bo[1].party.as_str()),
        (Direction::Outgoing, "al")
    );
    assert_eq!(
        (bo[0].direction, bo[0].party.as_str()),
        (Direction::Incoming, "Plans")
    );
    assert_ne!(al[0].id, bo[0].id, "one entry per member");

    let long = "x".repeat(70) + "ÄÖÜ-and-then-some-more";
    append_ok(
        &*store,
        &[
            message(&ab.id, "al", "first", 5_000),
            message(&ab.id, "bo", &long, 5_500),
        ],
    )
    .await;
    append_ok(&*store, &[message(&room.id, "bo", "plan A", 6_000)]).await;
    for who in ["al", "bo"] {
        let entries = journal_of(who).await;
        let direct_entry = entries
            .iter()
            .find(|e| e.conversation.as_ref() == Some(&ab.id))
            .unwrap();
        assert_eq!(direct_entry.messages, 2, "{who}");
        assert_eq!(direct_entry.ended_ms, Some(5_500));
        let summary = direct_entry.summary.as_deref().unwrap();
        assert_eq!(summary.chars().count(), 80);
        assert!(summary.ends_with("ÄÖÜ-and-th"), "{summary}");
        let room_entry = entries
            .iter()
            .find(|e| e.conversation.as_ref() == Some(&room.id))
            .unwrap();
        assert_eq!((room_entry.messages, room_entry.ended_ms), (1, Some(6_000)));
        assert_eq!(room_entry.summary.as_deref(), Some("plan A"));
    }

    // A member added later gets an entry from then on; one who left stops counting.
    store
        .add_conversation_member(&room.id, &uid("cy"), 7_000)
        .await
        .unwrap();
    let cy = journal_of("cy").await;
    assert_eq!(cy.len(), 1);
    assert_eq!(
        (cy[0].started_ms, cy[0].direction, cy[0].messages),
        (7_000, Direction::Incoming, 0)
    );
    append_ok(&*store, &[message(&room.id, "cy", "hi", 8_000)]).await;
    assert_eq!(journal_of("cy").await[0].messages, 1);
    assert_eq!(
        journal_of("al")
            .await
            .iter()
            .find(|e| e.conversation.as_ref() == Some(&room.id))
            .unwrap()
            .messages,
        2
    );
    // The group chat of an admin group.
    let team = GroupId::from("team");
    store
        .create_group(&team, "Team", &uid("al"), 9_000)
        .await
        .unwrap();
    store.add_group_member(&team, &uid("al")).await.unwrap();
    store.add_group_member(&team, &uid("bo")).await.unwrap();
    store.add_group_member(&team, &uid("bo")).await.unwrap();
    let bo = journal_of("bo").await;
    let team_entries: Vec<&JournalEntry> = bo
        .iter()
        .filter(|e| e.conversation.as_ref() == Some(&ConversationId::group(&team)))
        .collect();
    assert_eq!(team_entries.len(), 1, "one entry, however often added");
    assert_eq!(
        (team_entries[0].party.as_str(), team_entries[0].direction),
        ("Team", Direction::Incoming)
    );
    let al_team = journal_of("al")
        .await
        .into_iter()
        .find(|e| e.party == "Team")
        .unwrap();
    assert_eq!(
        al_team.direction,
        Direction::Outgoing,
        "the group's creator"
    );
}

async fn call_journal(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo"]).await;
    let call = |id: &str, started: i64, result: Option<CallResult>| JournalEntry {
        id: id.to_string(),
        user: uid("al"),
        kind: JournalKind::Call,
        direction: Direction::Outgoing,
        party: "bo".to_string(),
        conversation: None,
        started_ms: started,
        answered_ms: None,
        ended_ms: None,
        result,
        messages: 0,
        summary: None,
    };
    store
        .add_journal(&call("call-1", 100, Some(CallResult::Missed)))
        .await
        .unwrap();
    let mut second = call("call-2", 200, None);
    store.add_journal(&second).await.unwrap();
    store
        .add_journal(&call("call-3", 300, Some(CallResult::PickedUp)))
        .await
        .unwrap();
    // The same id again: the entry is updated (a call that was answered and ended).
    second.answered_ms = Some(210);
    second.ended_ms = Some(400);
    second.result = Some(CallResult::Answered);
    store.add_journal(&second).await.unwrap();

    let entries = store.journal(&uid("al"), 10).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["call-3", "call-2", "call-1"]
    );
    assert_eq!(entries[1], second);
    assert_eq!(entries[0].result, Some(CallResult::PickedUp));
    assert_eq!(store.journal(&uid("al"), 2).await.unwrap().len(), 2);
    assert!(store.journal(&uid("bo"), 10).await.unwrap().is_empty());

    // Same start: the one that changed last comes first.
    let mut early = call("call-4", 500, None);
    early.ended_ms = Some(510);
    let mut late = call("call-5", 500, None);
    late.ended_ms = Some(900);
    store.add_journal(&late).await.unwrap();
    store.add_journal(&early).await.unwrap();
    let entries = store.journal(&uid("al"), 2).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["call-5", "call-4"]
    );
}

async fn licenses_servers_media_audit(store: Arc<dyn Store>) {
    assert!(store.licenses().await.unwrap().is_empty());
    store.set_license("video", 10).await.unwrap();
    store.set_license("audio", 50).await.unwrap();
    store.set_license("video", 20).await.unwrap();
    assert_eq!(
        store.licenses().await.unwrap(),
        [
            LicenseRecord {
                kind: "audio".into(),
                capacity: 50
            },
            LicenseRecord {
                kind: "video".into(),
                capacity: 20
            }
        ]
    );
    store.set_license("huge", u32::MAX).await.unwrap();
    assert_eq!(store.licenses().await.unwrap()[1].capacity, u32::MAX);

    let server = |id: &str, url: &str, at: i64| ServerRecord {
        id: ServerId::from(id),
        url: url.into(),
        registered_ms: at,
    };
    store
        .register_server(&server("uc2", "http://b", 20))
        .await
        .unwrap();
    store
        .register_server(&server("uc1", "http://a", 10))
        .await
        .unwrap();
    store
        .register_server(&server("uc2", "http://b2", 30))
        .await
        .unwrap();
    let servers = store.list_servers().await.unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0], server("uc1", "http://a", 10));
    assert_eq!(
        (servers[1].id.as_str(), servers[1].url.as_str()),
        ("uc2", "http://b2")
    );

    let media = |id: &str| MediaServerRecord {
        id: MediaServerId::from(id),
        control_url: format!("http://{id}:9000"),
        added_ms: 7,
    };
    store.add_media_server(&media("m2")).await.unwrap();
    store.add_media_server(&media("m1")).await.unwrap();
    assert!(matches!(
        store.add_media_server(&media("m1")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.list_media_servers().await.unwrap(),
        [media("m1"), media("m2")]
    );
    store
        .remove_media_server(&MediaServerId::from("m1"))
        .await
        .unwrap();
    store
        .remove_media_server(&MediaServerId::from("m1"))
        .await
        .expect("removing twice is fine");
    assert_eq!(store.list_media_servers().await.unwrap(), [media("m2")]);

    let record = |at: i64, action: &str| AuditRecord {
        at_ms: at,
        actor: uid("admin"),
        action: action.into(),
        detail: format!("detail of {action}"),
        client: (action != "b").then(|| "10.0.0.9".to_string()),
    };
    for (at, action) in [(10, "a"), (30, "c"), (20, "b"), (30, "d")] {
        store.audit(&record(at, action)).await.unwrap();
    }
    let all = AuditFilter::default();
    let log = store.audit_log(&all, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["d", "c", "b", "a"]
    );
    assert_eq!(log[3], record(10, "a"));
    assert_eq!(store.audit_log(&all, 2).await.unwrap().len(), 2);

    // Filters: a time range (since inclusive, until exclusive), an actor, an action prefix
    // whose `_` and `%` are plain characters.
    for (at, actor, action) in [
        (40, "helen", "user.update"),
        (50, "helen", "user_x"),
        (60, "ann", "user.delete"),
        (70, "helen", "group.create"),
    ] {
        store
            .audit(&AuditRecord {
                actor: uid(actor),
                ..record(at, action)
            })
            .await
            .unwrap();
    }
    let actions = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .audit_log(&filter, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.action)
                .collect::<Vec<_>>()
        }
    };
    let range = AuditFilter {
        since_ms: Some(30),
        until_ms: Some(60),
        ..AuditFilter::default()
    };
    assert_eq!(actions(range).await, ["user_x", "user.update", "d", "c"]);
    let helen = AuditFilter {
        actor: Some(uid("helen")),
        ..AuditFilter::default()
    };
    assert_eq!(
        actions(helen).await,
        ["group.create", "user_x", "user.update"]
    );
    let users = AuditFilter {
        action: Some("user.".into()),
        ..AuditFilter::default()
    };
    assert_eq!(actions(users).await, ["user.delete", "user.update"]);
    let underscore = AuditFilter {
        action: Some("user_".into()),
        ..AuditFilter::default()
    };
    assert_eq!(actions(underscore).await, ["user_x"]);
    let everything = AuditFilter {
        since_ms: Some(0),
        until_ms: Some(1_000),
        actor: Some(uid("helen")),
        action: Some("user".into()),
    };
    assert_eq!(actions(everything).await, ["user_x", "user.update"]);
    assert!(
        actions(AuditFilter {
            action: Some("%".into()),
            ..AuditFilter::default()
        })
        .await
        .is_empty()
    );
}

/// Every change makes a new version with who made it; a change or delete that names an old
/// version is refused (`Stale`) and changes nothing; roles and the disabled flag round-trip.
async fn user_versions_roles_and_disabling(store: Arc<dyn Store>) {
    create_users(&*store, &["vera", "walt"]).await;
    assert_eq!(store.count_users().await.unwrap(), 2);
    let vera = store.get_user(&uid("vera")).await.unwrap().unwrap();
    assert_eq!((vera.version, vera.role, vera.disabled), (1, None, false));

    let change = |role: Option<Option<AdminRole>>, expected: Option<u64>| UserUpdate {
        role,
        disabled: Some(true),
        expected_version: expected,
        changed_by: Some(uid("walt")),
        changed_ms: 77,
        ..Default::default()
    };
    let changed = store
        .update_user(
            &uid("vera"),
            &change(Some(Some(AdminRole::ReadOnly)), Some(1)),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            changed.version,
            changed.admin,
            changed.role,
            changed.disabled,
            changed.changed_by.clone(),
            changed.changed_ms
        ),
        (
            2,
            true,
            Some(AdminRole::ReadOnly),
            true,
            Some(uid("walt")),
            77
        )
    );
    assert_eq!(
        store.get_user(&uid("vera")).await.unwrap(),
        Some(changed.clone())
    );

    // An edit from version 1 again: refused, nothing changed.
    let stale = store
        .update_user(&uid("vera"), &change(Some(None), Some(1)))
        .await;
    assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
    assert_eq!(store.get_user(&uid("vera")).await.unwrap(), Some(changed));
    let stale = store.delete_user_at(&uid("vera"), 1).await;
    assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
    assert!(store.get_user(&uid("vera")).await.unwrap().is_some());
    assert!(matches!(
        store.delete_user_at(&uid("nobody"), 1).await,
        Err(StoreError::NotFound(_))
    ));

    // Without a version the change goes through; taking the role away clears `admin`.
    let plain = store
        .update_user(&uid("vera"), &change(Some(None), None))
        .await
        .unwrap();
    assert_eq!((plain.version, plain.admin, plain.role), (3, false, None));
    store.delete_user_at(&uid("vera"), 3).await.unwrap();
    assert_eq!(store.get_user(&uid("vera")).await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 1);
}

/// Callers racing to create or upsert the same thing all succeed, and it exists once.
async fn concurrent_creates_and_upserts(store: Arc<dyn Store>) {
    create_users(&*store, &["al", "bo"]).await;
    let team = GroupId::from("team");
    store
        .create_group(&team, "Team", &uid("al"), 1)
        .await
        .unwrap();
    let chat = direct("al", "bo", "al", 5);
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let store = store.clone();
        let (chat, team) = (chat.clone(), team.clone());
        tasks.push(tokio::spawn(async move {
            store
                .ensure_conversation(&chat)
                .await
                .expect("ensure_conversation");
            store
                .set_license("audio", 10 + task)
                .await
                .expect("set_license");
            store
                .register_server(&ServerRecord {
                    id: ServerId::from("uc1"),
                    url: format!("http://{task}"),
                    registered_ms: 1,
                })
                .await
                .expect("register_server");
            store
                .put_contact(&uid("al"), &uid("bo"), &format!("g{task}"))
                .await
                .expect("put_contact");
            store
                .put_delegate(&uid("al"), &uid("bo"))
                .await
                .expect("put_delegate");
            store
                .add_group_member(&team, &uid("bo"))
                .await
                .expect("add_group_member");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.licenses().await.unwrap().len(), 1);
    assert_eq!(store.list_servers().await.unwrap().len(), 1);
    assert_eq!(store.contacts(&uid("al")).await.unwrap().len(), 1);
    assert_eq!(
        ids(&store.get_group(&team).await.unwrap().unwrap().members),
        ["bo"]
    );
    assert_eq!(store.conversations_of(&uid("bo")).await.unwrap().len(), 2);
    assert_eq!(
        store.journal(&uid("bo"), 10).await.unwrap().len(),
        2,
        "one entry per conversation"
    );
}

/// Not a limit, a number to watch: 10 000 messages in batches of 500, one conversation.
/// The chat writer batches whatever arrives: one batch mixes many conversations, senders,
/// duplicates and a non-member. Each conversation must still get gap-free seqs, each
/// sender's marker and each member's journal entry must count exactly its own messages.
async fn one_batch_spans_many_conversations(store: Arc<dyn Store>) {
    create_users(&*store, &["an", "be", "ce", "di"]).await;
    let ab = direct("an", "be", "an", 1);
    let cd = direct("ce", "di", "ce", 1);
    let room = group_conversation("c:all", "All", "an", &["an", "be", "ce"], 1);
    for conversation in [&ab, &cd, &room] {
        store.ensure_conversation(conversation).await.unwrap();
    }
    let mut batch = Vec::new();
    for i in 0..150 {
        let (conversation, sender) = match i % 3 {
            0 => (&ab.id, if i % 2 == 0 { "an" } else { "be" }),
            1 => (&cd.id, "di"),
            _ => (&room.id, "ce"),
        };
        let mut m = message(conversation, sender, &format!("m{i}"), 10 + i as i64);
        m.client_id = Some(format!("c{i}"));
        batch.push(m);
    }
    // A resend of the first message inside the same batch, and a stranger in the room.
    batch.push(batch[0].clone());
    batch.push(message(&room.id, "di", "let me in", 500));
    let results = store.append_messages(&batch).await.unwrap();
    assert_eq!(results.len(), 152);
    assert!(
        matches!(results[151], Err(StoreError::NotFound(_))),
        "{:?}",
        results[151]
    );
    assert_eq!(
        results[150].as_ref().unwrap(),
        results[0].as_ref().unwrap(),
        "resend finds the original"
    );
    for conversation in [&ab, &cd, &room] {
        let seqs_in_batch_order: Vec<u64> = results[..150]
            .iter()
            .map(|r| r.as_ref().unwrap())
            .filter(|m| m.conversation == conversation.id)
            .map(|m| m.seq)
            .collect();
        assert_eq!(
            seqs_in_batch_order,
            (1..=50).collect::<Vec<u64>>(),
            "{}",
            conversation.id
        );
        let stored = store
            .get_conversation(&conversation.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.last_seq, 50);
        let history = store
            .messages(&conversation.id, HistoryPage::Latest, 100)
            .await
            .unwrap();
        assert_eq!(seqs(&history), (1..=50).collect::<Vec<u64>>());
    }
    // Read markers: each sender up to their own newest message, nobody else moved.
    let summary = |user: &'static str, id: ConversationId| {
        let store = store.clone();
        async move {
            store
                .conversations_of(&uid(user))
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.id == id)
                .unwrap()
        }
    };
    let an = summary("an", ab.id.clone()).await;
    let be = summary("be", ab.id.clone()).await;
    // In ab, an sent the even i (seq 1, 3, ...) and be the odd ones; the last (i=147) was be's.
    assert_eq!((an.last_read_seq, be.last_read_seq), (49, 50));
    assert_eq!(summary("ce", room.id.clone()).await.last_read_seq, 50);
    assert_eq!(summary("an", room.id.clone()).await.unread, 50);
    // Journal entries count exactly their conversation's messages.
    for user in ["an", "be", "ce", "di"] {
        for entry in store.journal(&uid(user), 10).await.unwrap() {
            assert_eq!(entry.messages, 50, "{user} {:?}", entry.conversation);
        }
    }
}

async fn append_throughput(store: Arc<dyn Store>) {
    const TOTAL: usize = 10_000;
    const BATCH: usize = 500;
    create_users(&*store, &["al", "bo"]).await;
    let chat = direct("al", "bo", "al", 1);
    store.ensure_conversation(&chat).await.unwrap();
    let messages: Vec<NewMessage> = (0..TOTAL)
        .map(|i| NewMessage {
            client_id: Some(format!("client-{i}")),
            ..message(
                &chat.id,
                if i % 2 == 0 { "al" } else { "bo" },
                &format!("message number {i}"),
                i as i64,
            )
        })
        .collect();
    let started = Instant::now();
    for batch in messages.chunks(BATCH) {
        append_ok(&*store, batch).await;
    }
    let elapsed = started.elapsed();
    println!(
        "append throughput: {TOTAL} messages in batches of {BATCH} in {elapsed:?} = {:.0} messages/s",
        TOTAL as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        store
            .get_conversation(&chat.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        TOTAL as u64
    );
    let all: BTreeSet<u64> = seqs(
        &store
            .messages(&chat.id, HistoryPage::After(0), TOTAL as u32)
            .await
            .unwrap(),
    )
    .into_iter()
    .collect();
    assert_eq!(all.len(), TOTAL);
}

// ---- backend-specific checks ----

/// Runtime settings: each change is the next revision; a value changes only from the version
/// named; a removal of what is not there is `NotFound`; each server's applied record is kept.
async fn runtime_settings(store: Arc<dyn Store>) {
    let empty = store.settings().await.unwrap();
    assert_eq!((empty.revision, empty.rows.len()), (0, 0));
    let admin = UserId::from("admin");
    let first = store
        .put_setting("global", "ring_timeout_ms", "5000", Some(0), &admin, 10)
        .await
        .unwrap();
    assert_eq!((first.version, first.revision), (1, 1));
    let stale = store
        .put_setting("global", "ring_timeout_ms", "6000", Some(0), &admin, 11)
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Stale(_)), "{stale:?}");
    let second = store
        .put_setting("global", "ring_timeout_ms", "6000", Some(1), &admin, 12)
        .await
        .unwrap();
    assert_eq!(
        (second.version, second.revision),
        (2, 2),
        "a refused edit takes no revision"
    );
    store
        .put_setting("s2", "ring_timeout_ms", "7000", None, &admin, 13)
        .await
        .unwrap();
    let snapshot = store.settings().await.unwrap();
    assert_eq!(snapshot.revision, 3);
    let rows: Vec<(&str, &str, u64)> = snapshot
        .rows
        .iter()
        .map(|r| (r.scope.as_str(), r.value.as_str(), r.version))
        .collect();
    assert_eq!(rows, [("global", "6000", 2), ("s2", "7000", 1)]);
    assert_eq!(snapshot.rows[0].changed_by.as_ref(), Some(&admin));

    assert!(matches!(
        store.delete_setting("s2", "ring_timeout_ms", Some(5)).await,
        Err(StoreError::Stale(_))
    ));
    assert_eq!(
        store
            .delete_setting("s2", "ring_timeout_ms", Some(1))
            .await
            .unwrap(),
        4
    );
    assert!(matches!(
        store.delete_setting("s2", "ring_timeout_ms", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.settings().await.unwrap().rows.len(), 1);

    for (revision, at) in [(3, 100), (4, 200)] {
        store
            .put_settings_applied(&SettingsAppliedRecord {
                server: ServerId::from("s1"),
                revision,
                applied_ms: at,
                report: format!("{{\"r\":{revision}}}"),
            })
            .await
            .unwrap();
    }
    let applied = store.settings_applied().await.unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!((applied[0].revision, applied[0].applied_ms), (4, 200));
    assert_eq!(applied[0].report, "{\"r\":4}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_survives_reconnect() {
    let dir = TempDir(process::fresh_dir("sqlite"));
    let url = format!("sqlite://{}/a/b/store.db", dir.0.display());
    let store = SqlStore::connect(&url).await.unwrap();
    store.create_user(&user("kept", "Kept")).await.unwrap();
    store.close().await;
    assert!(
        matches!(store.ping().await, Err(StoreError::Unavailable(_))),
        "closed pool"
    );
    let store = SqlStore::connect(&url)
        .await
        .expect("migrations run again harmlessly");
    assert!(store.get_user(&uid("kept")).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_works() {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    store.create_user(&user("mem", "Memory")).await.unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_url_is_refused() {
    assert!(matches!(
        SqlStore::connect("mysql://x").await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_unavailable() {
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = server.create_database("outage");
    let store = SqlStore::connect(&url).await.unwrap();
    store.ping().await.unwrap();
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), store.ping()).await;
    assert!(
        matches!(result, Ok(Err(StoreError::Unavailable(_)))),
        "{result:?}"
    );
    assert!(matches!(
        SqlStore::connect(&url).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// An import or sync (`apply_directory`): everything in it is written, or, when one part
/// fails (a user changed since the plan), nothing, not even what came before that part.
async fn directory_writes_are_all_or_nothing(store: Arc<dyn Store>) {
    create_users(&*store, &["ann", "ben"]).await;
    let new_user = |id: &str| DirectoryUserWrite {
        id: uid(id),
        new_password_hash: Some("!directory".to_string()),
        version: 0,
        display_name: Some(id.to_uppercase()),
        home_server: Some(ServerId::from("uc1")),
        disabled: Some(false),
        source: Some("ldap".to_string()),
        add_groups: vec![GroupId::from("ops")],
        remove_groups: Vec::new(),
        contacts: Some(vec![(uid("ann"), "Team".to_string())]),
    };
    let change_ben = |version: u64| DirectoryUserWrite {
        id: uid("ben"),
        new_password_hash: None,
        version,
        display_name: Some("Ben B.".to_string()),
        home_server: None,
        disabled: Some(true),
        source: None,
        add_groups: vec![GroupId::from("ops")],
        remove_groups: Vec::new(),
        contacts: Some(vec![(uid("cid"), String::new())]),
    };
    let write = |users| DirectoryWrite {
        changed_by: Some(uid("ann")),
        now: 5_000,
        groups: vec![(GroupId::from("ops"), "Operations".to_string())],
        users,
    };

    // ben is at version 1: a plan made from version 7 fails, and cid and ops stay unmade.
    let stale = store
        .apply_directory(&write(vec![new_user("cid"), change_ben(7)]))
        .await;
    assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
    assert!(store.get_user(&uid("cid")).await.unwrap().is_none());
    assert!(
        store
            .get_group(&GroupId::from("ops"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.get_user(&uid("ben")).await.unwrap().unwrap().version,
        1
    );

    store
        .apply_directory(&write(vec![new_user("cid"), change_ben(1)]))
        .await
        .unwrap();
    let ben = store.get_user(&uid("ben")).await.unwrap().unwrap();
    assert_eq!(
        (
            ben.display_name.as_str(),
            ben.disabled,
            ben.version,
            ben.changed_by
        ),
        ("Ben B.", true, 2, Some(uid("ann")))
    );
    let cid = store.get_user(&uid("cid")).await.unwrap().unwrap();
    assert_eq!((cid.display_name.as_str(), cid.version), ("CID", 1));
    assert_eq!(
        store.user_sources().await.unwrap(),
        vec![(uid("cid"), "ldap".to_string())]
    );
    let ops = store
        .get_group(&GroupId::from("ops"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ops.display_name.as_str(), ids(&ops.members)),
        ("Operations", vec!["ben", "cid"])
    );
    let group_chat = store
        .get_conversation(&ConversationId::group(&GroupId::from("ops")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&group_chat.members), vec!["ben", "cid"]);
    assert_eq!(
        store.all_contacts().await.unwrap(),
        vec![
            (uid("ben"), uid("cid"), String::new()),
            (uid("cid"), uid("ann"), "Team".to_string()),
        ]
    );
}
