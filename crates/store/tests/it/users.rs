use chatgroup_store::StoreError;

use crate::support::{on_both, Db};

async fn create_and_look_up(db: Db) {
    let h = db.open();
    let alice = h.store.create_user("Alice", "argon-hash").await.unwrap();
    assert_eq!(alice.username, "Alice");

    let auth = h.store.user_by_name("aLICE").await.unwrap().unwrap();
    assert_eq!(auth.user, alice);
    assert_eq!(auth.password_hash, "argon-hash");
    assert_eq!(h.store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(h.store.user_by_name("bob").await.unwrap(), None);
    assert_eq!(
        h.store.user(chatgroup_protocol::UserId(999)).await.unwrap(),
        None
    );
    assert_eq!(
        h.store
            .user(chatgroup_protocol::UserId(u64::MAX))
            .await
            .unwrap(),
        None
    );
}

async fn usernames_are_unique_in_any_case(db: Db) {
    let h = db.open();
    h.user("alice").await;
    for taken in ["alice", "ALICE", "aLiCe"] {
        assert_eq!(
            h.store.create_user(taken, "x").await,
            Err(StoreError::UsernameTaken)
        );
    }
    // Beyond ASCII too, which SQLite's NOCASE would not fold.
    h.user("Émile").await;
    assert_eq!(
        h.store.create_user("émile", "x").await,
        Err(StoreError::UsernameTaken)
    );
    assert!(matches!(
        h.store.create_user("", "x").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn search_by_prefix_treats_wildcards_as_text(db: Db) {
    let h = db.open();
    for name in ["a_b", "axb", "a%c", "Abc", "bob", r"a\d"] {
        h.user(name).await;
    }
    let names = |v: Vec<chatgroup_protocol::UserInfo>| {
        v.into_iter().map(|u| u.username).collect::<Vec<_>>()
    };
    assert_eq!(
        names(h.store.search_users("a_", 10).await.unwrap()),
        ["a_b"]
    );
    assert_eq!(
        names(h.store.search_users("A%", 10).await.unwrap()),
        ["a%c"]
    );
    assert_eq!(
        names(h.store.search_users(r"a\", 10).await.unwrap()),
        [r"a\d"]
    );
    // Ordered by username, case-insensitively; limited.
    assert_eq!(
        names(h.store.search_users("a", 10).await.unwrap()),
        ["a%c", r"a\d", "a_b", "Abc", "axb"]
    );
    assert_eq!(
        names(h.store.search_users("A", 2).await.unwrap()),
        ["a%c", r"a\d"]
    );
    assert_eq!(h.store.search_users("z", 10).await.unwrap(), []);
    assert_eq!(h.store.search_users("", 0).await.unwrap(), []);
    assert_eq!(h.store.search_users("", 100).await.unwrap().len(), 6);
}

async fn users_by_names_in_order_or_not_found(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let found = h
        .store
        .users_by_names(&["BOB".into(), "alice".into()])
        .await
        .unwrap();
    assert_eq!(found, [bob, alice]);
    assert_eq!(
        h.store
            .users_by_names(&["alice".into(), "nobody".into()])
            .await,
        Err(StoreError::NotFound("user"))
    );
    assert_eq!(h.store.users_by_names(&[]).await.unwrap(), []);
}

on_both!(
    create_and_look_up,
    usernames_are_unique_in_any_case,
    search_by_prefix_treats_wildcards_as_text,
    users_by_names_in_order_or_not_found,
);
