//! Uploads and file messages: quotas at start, resume by upload id, the post as an append
//! (seq, origin, idempotence), the file filled in wherever messages are read, and deleting
//! abandoned uploads.

use chatgroup_protocol::{MessageKind, Seq};
use chatgroup_store::{Committed, NewUpload, Origin, StoreError, UploadLimits, UploadStart};

use crate::support::{on_both, Db};

const LIMITS: UploadLimits = UploadLimits {
    max_in_flight: 2,
    bytes_per_day: 1000,
};

fn upload(
    uploader: chatgroup_protocol::UserId,
    conversation: chatgroup_protocol::ConversationId,
    id: &str,
    size: u64,
) -> NewUpload {
    NewUpload {
        uploader,
        conversation,
        upload_id: id.into(),
        name: format!("{id}.bin"),
        mime: "application/octet-stream".into(),
        size,
        sha256: None,
        limits: LIMITS,
    }
}

fn origin(tag: u64, id: &str) -> Origin {
    Origin {
        tag,
        reference: Some(id.into()),
    }
}

async fn uploads_respect_membership_and_quotas_and_resume_by_id(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let carol = h.user("carol").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    h.drain();
    let s = &h.store;

    assert_eq!(
        s.start_upload(upload(carol.id, g, "c1", 10)).await,
        Err(StoreError::NotMember)
    );
    let UploadStart::New(first) = s
        .start_upload(upload(alice.id, g, "a1", 400))
        .await
        .unwrap()
    else {
        panic!("a new upload")
    };
    assert!(!first.completed);
    // The same id again is the same upload, whatever the limits say now.
    let UploadStart::Existing(again) = s
        .start_upload(upload(alice.id, g, "a1", 400))
        .await
        .unwrap()
    else {
        panic!("resume")
    };
    assert_eq!(again.id, first.id);
    // The same id for another size is a different file.
    assert!(matches!(
        s.start_upload(upload(alice.id, g, "a1", 401))
            .await
            .unwrap(),
        UploadStart::Conflict(_)
    ));
    // The daily quota counts announced bytes.
    assert_eq!(
        s.start_upload(upload(alice.id, g, "a2", 601))
            .await
            .unwrap(),
        UploadStart::DailyQuota {
            used: 400,
            limit: 1000
        }
    );
    assert!(matches!(
        s.start_upload(upload(alice.id, g, "a2", 600))
            .await
            .unwrap(),
        UploadStart::New(_)
    ));
    // Two unfinished: the third waits.
    assert_eq!(
        s.start_upload(upload(alice.id, g, "a3", 0)).await.unwrap(),
        UploadStart::TooManyInFlight { limit: 2 }
    );
    // Limits are per user.
    assert!(matches!(
        s.start_upload(upload(bob.id, g, "a1", 10)).await.unwrap(),
        UploadStart::New(_)
    ));
    // A deleted upload frees its place and its bytes.
    assert!(s.delete_upload(first.id).await.unwrap());
    assert!(!s.delete_upload(first.id).await.unwrap());
    assert!(matches!(
        s.start_upload(upload(alice.id, g, "a3", 400))
            .await
            .unwrap(),
        UploadStart::New(_)
    ));
    assert_eq!(s.file(first.id).await.unwrap(), None);
}

async fn a_posted_file_is_a_message_with_its_file_everywhere(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    h.drain();
    let s = h.store.clone();
    let UploadStart::New(up) = s.start_upload(upload(alice.id, g, "f1", 5)).await.unwrap() else {
        panic!("new")
    };
    let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_owned();

    // Someone else's upload id cannot be posted.
    assert_eq!(
        s.post_file(bob.id, &up, sha.clone(), origin(2, "f1")).await,
        Err(StoreError::NotFound("file"))
    );
    let (message, duplicate) = s
        .post_file(alice.id, &up, sha.clone(), origin(1, "f1"))
        .await
        .unwrap();
    assert!(!duplicate);
    assert_eq!(message.kind, MessageKind::File);
    assert_eq!(message.seq, Seq(2));
    assert_eq!(message.body, "f1.bin");
    assert_eq!(message.local_id.as_deref(), Some("f1"));
    let file = message.file.clone().expect("file info");
    assert_eq!(
        (file.id, file.size, file.sha256.as_str()),
        (up.id, 5, sha.as_str())
    );

    let events = h.drain();
    let live = events
        .iter()
        .find_map(|e| match e {
            Committed::Message {
                message,
                origin: Some(o),
            } if o.tag == 1 => Some(message.clone()),
            _ => None,
        })
        .expect("the post reaches the sink with its origin");
    assert_eq!(live, message);

    // Posting again is the duplicate, with the same message.
    let (dup, duplicate) = s
        .post_file(alice.id, &up, sha.clone(), origin(1, "f1"))
        .await
        .unwrap();
    assert!(duplicate);
    assert_eq!(dup, message);
    // Completed uploads are not deleted.
    assert!(!s.delete_upload(up.id).await.unwrap());
    let stored = s.file(up.id).await.unwrap().unwrap();
    assert!(stored.completed);
    assert_eq!(stored.sha256.as_deref(), Some(sha.as_str()));

    // History and replay read the file back.
    let (page, _) = s.history(bob.id, g, None, 10).await.unwrap();
    assert_eq!(page.last(), Some(&message));
    let after = s.messages_after(bob.id, g, Seq(1), 10).await.unwrap();
    assert_eq!(after, vec![message.clone()]);
    let list = s.conversations(bob.id).await.unwrap();
    assert_eq!(list[0].last_message.as_ref(), Some(&message));
}

async fn a_member_who_left_cannot_post_the_upload(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    let UploadStart::New(up) = h
        .store
        .start_upload(upload(bob.id, g, "b1", 1))
        .await
        .unwrap()
    else {
        panic!("new")
    };
    h.store.remove_member(bob.id, g, bob.id).await.unwrap();
    h.drain();
    assert_eq!(
        h.store
            .post_file(bob.id, &up, "00".repeat(32), origin(9, "b1"))
            .await,
        Err(StoreError::NotMember)
    );
    assert!(h.drain().iter().any(|e| matches!(
        e,
        Committed::Rejected { origin, error: StoreError::NotMember, .. } if origin.tag == 9
    )));
    // Still an unfinished upload, so the sweep can take it.
    assert!(!h.store.file(up.id).await.unwrap().unwrap().completed);
}

on_both!(
    uploads_respect_membership_and_quotas_and_resume_by_id,
    a_posted_file_is_a_message_with_its_file_everywhere,
    a_member_who_left_cannot_post_the_upload,
);
