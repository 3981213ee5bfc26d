use chatgroup_protocol::UserId;
use chatgroup_store::StoreError;

use crate::support::{on_both, Db};

const NOW: i64 = 1_700_000_000_000;

async fn rotation_is_single_use(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    let (t1, t2, t3) = ([1; 32], [2; 32], [3; 32]);
    h.store
        .add_refresh_token(alice.id, t1, NOW + 1000)
        .await
        .unwrap();

    assert_eq!(
        h.store
            .rotate_refresh_token(t1, t2, NOW + 2000, NOW)
            .await
            .unwrap(),
        Some(alice.clone())
    );
    // t1 is spent: a replay gets nothing and stores nothing.
    assert_eq!(
        h.store
            .rotate_refresh_token(t1, t3, NOW + 2000, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        h.store
            .rotate_refresh_token(t3, [4; 32], NOW + 2000, NOW)
            .await
            .unwrap(),
        None
    );
    // t2 works once.
    assert_eq!(
        h.store
            .rotate_refresh_token(t2, t3, NOW + 3000, NOW)
            .await
            .unwrap(),
        Some(alice)
    );
    assert_eq!(
        h.store
            .rotate_refresh_token(t2, t3, NOW + 3000, NOW)
            .await
            .unwrap(),
        None
    );
}

async fn expired_tokens_do_not_rotate_and_are_spent(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    h.store
        .add_refresh_token(alice.id, [1; 32], NOW)
        .await
        .unwrap();
    // Expired at exactly its expiry time.
    assert_eq!(
        h.store
            .rotate_refresh_token([1; 32], [2; 32], NOW + 5000, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        h.store
            .rotate_refresh_token([1; 32], [2; 32], NOW + 5000, NOW - 10)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        h.store
            .rotate_refresh_token([2; 32], [3; 32], NOW + 5000, NOW)
            .await
            .unwrap(),
        None
    );
}

async fn revoked_tokens_are_gone(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    h.store
        .add_refresh_token(alice.id, [7; 32], NOW + 1000)
        .await
        .unwrap();
    h.store.revoke_refresh_token([7; 32]).await.unwrap();
    h.store.revoke_refresh_token([8; 32]).await.unwrap();
    assert_eq!(
        h.store
            .rotate_refresh_token([7; 32], [9; 32], NOW + 1000, NOW)
            .await
            .unwrap(),
        None
    );
}

async fn tokens_need_a_user(db: Db) {
    let h = db.open();
    assert_eq!(
        h.store.add_refresh_token(UserId(42), [1; 32], NOW).await,
        Err(StoreError::NotFound("user"))
    );
}

on_both!(
    rotation_is_single_use,
    expired_tokens_do_not_rotate_and_are_spent,
    revoked_tokens_are_gone,
    tokens_need_a_user,
);
