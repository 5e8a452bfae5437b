//! The queue and its writer, without a server.

use super::*;
use crate::envelope::Recipient;
use crate::envelope::Target;

/// This test run's start: recent enough not to have expired.
fn arrival() -> u64 {
    static T: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T.get_or_init(crate::envelope::now_micros)
}

fn envelope(id: u64) -> Envelope {
    Envelope {
        id: QueueId(id),
        from: "a@example.org".into(),
        arrival: arrival(),
        client: "x [127.0.0.1]".into(),
        auth: None,
        warned: false,
        recipients: vec![Recipient {
            original: "b@example.org".into(),
            target: Target::Local {
                account: "b@example.org".into(),
                delivered_to: "b@example.org".into(),
            },
            status: Status::Pending,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
        }],
        held: false,
        size: 3,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        min: Duration::from_secs(60),
        max: Duration::from_secs(3600),
        max_age: Duration::from_secs(5 * 86400),
        delay_warning: Duration::from_secs(4 * 3600),
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let p = policy();
    assert_eq!(p.delay(1).as_secs(), 60);
    assert_eq!(p.delay(2).as_secs(), 120);
    assert_eq!(p.delay(4).as_secs(), 480);
    assert_eq!(p.delay(30).as_secs(), 3600);
    assert_eq!(p.delay(100).as_secs(), 3600);
}

#[tokio::test]
async fn intake_survives_reopen_and_results_remove_it() {
    let t = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(t.path(), 0, policy(), None, None).unwrap();
        q.intake(envelope(7), Body::inline(b"hi\r\n".to_vec()))
            .await
            .unwrap();
    }
    // The writer thread ends when the handle is dropped; give it a moment.
    let q = loop {
        match Queue::open(t.path(), 0, policy(), None, None) {
            Ok(q) => break q,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(q.list().unwrap(), vec![envelope(7)]);
    assert_eq!(
        q.body(QueueId(7)).unwrap().unwrap().to_vec().unwrap(),
        b"hi\r\n"
    );
    q.record(QueueId(7), vec![(0, Outcome::Deferred("busy".into()))]);
    q.hold(QueueId(7)).unwrap(); // serialised after the results
    let e = q.envelope(QueueId(7)).unwrap().unwrap();
    assert!(e.held);
    assert_eq!(e.recipients[0].attempts, 1);
    assert_eq!(e.recipients[0].last_error.as_deref(), Some("busy"));
    q.record(QueueId(7), vec![(0, Outcome::Delivered)]);
    assert!(q.delete(QueueId(7)).is_err(), "delivered message is gone");
    assert!(q.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_damaged_database_is_kept_aside_and_a_new_one_started() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("queue.redb"), vec![0x5a; 64 * 1024]).unwrap();
    std::fs::create_dir(t.path().join("bodies")).unwrap();
    std::fs::write(t.path().join("bodies/00000000000000AB"), b"kept").unwrap();
    let q = Queue::open(t.path(), 0, policy(), None, None).unwrap();
    q.intake(envelope(3), Body::inline(b"x\r\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(q.list().unwrap(), vec![envelope(3)]);
    let kept: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("queue.redb.damaged-") || n.starts_with("bodies.damaged-"))
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "the damaged file and its bodies are kept: {kept:?}"
    );
    let database = kept.iter().find(|n| n.starts_with("queue")).unwrap();
    assert_eq!(
        std::fs::read(t.path().join(database)).unwrap(),
        vec![0x5a; 64 * 1024]
    );
    let bodies = kept.iter().find(|n| n.starts_with("bodies")).unwrap();
    assert_eq!(
        std::fs::read(t.path().join(bodies).join("00000000000000AB")).unwrap(),
        b"kept"
    );
}

#[tokio::test]
async fn a_damaged_record_is_set_aside_and_the_rest_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path(), 0, policy(), None, None).unwrap();
    for id in [1, 2, 3] {
        q.intake(envelope(id), Body::inline(b"x\r\n".to_vec()))
            .await
            .unwrap();
    }
    {
        let txn = q.db.begin_write().unwrap();
        txn.open_table(ENVELOPES)
            .unwrap()
            .insert(2, [0xff_u8; 7].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    // Results for a good and a damaged record in one batch, and an
    // intake after them: the damaged one does not fail the others.
    q.record(QueueId(2), vec![(0, Outcome::Delivered)]);
    q.record(QueueId(1), vec![(0, Outcome::Delivered)]);
    q.intake(envelope(4), Body::inline(b"y\r\n".to_vec()))
        .await
        .unwrap();
    let ids: Vec<u64> = q.list().unwrap().iter().map(|e| e.id.0).collect();
    assert_eq!(ids, vec![3, 4]);
    assert_eq!(q.damaged().unwrap(), vec![(QueueId(2), 7)]);
    assert_eq!(
        q.body(QueueId(2)).unwrap().unwrap().to_vec().unwrap(),
        b"x\r\n",
        "body kept"
    );
    q.delete(QueueId(2)).unwrap();
    assert!(q.damaged().unwrap().is_empty());
}

#[tokio::test]
async fn a_damaged_record_found_at_start_is_set_aside() {
    let t = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(t.path(), 0, policy(), None, None).unwrap();
        q.intake(envelope(5), Body::inline(b"x\r\n".to_vec()))
            .await
            .unwrap();
        let txn = q.db.begin_write().unwrap();
        txn.open_table(ENVELOPES)
            .unwrap()
            .insert(6, [0x01_u8, 0xff, 0xff].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let q = loop {
        match Queue::open(t.path(), 0, policy(), None, None) {
            Ok(q) => break q,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(q.startup_schedule().unwrap().len(), 1);
    assert_eq!(q.damaged().unwrap(), vec![(QueueId(6), 3)]);
}

#[tokio::test]
async fn a_spooled_body_moves_into_the_queue_and_goes_when_delivered() {
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path(), 0, policy(), None, None).unwrap();
    let spool = q.spool_dir().join("incoming");
    std::fs::write(&spool, b"Subject: big\r\n\r\nbody\r\n").unwrap();
    let body = Body::spooled(b"Received: x\r\n".to_vec(), spool.clone(), 24);
    q.intake(envelope(8), body).await.unwrap();
    assert!(!spool.exists(), "moved");
    let stored = q.body(QueueId(8)).unwrap().unwrap();
    assert_eq!(
        stored.to_vec().unwrap(),
        b"Received: x\r\nSubject: big\r\n\r\nbody\r\n"
    );
    let file = stored.file().unwrap().to_path_buf();
    assert!(file.starts_with(t.path().join("bodies")));
    q.record(QueueId(8), vec![(0, Outcome::Delivered)]);
    q.hold(QueueId(8)).unwrap_err(); // after the results: gone
    assert!(!file.exists(), "removed with the message");
}

#[tokio::test]
async fn leftover_spool_and_orphan_body_files_are_removed_at_start() {
    let t = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(t.path(), 0, policy(), None, None).unwrap();
        let spool = q.spool_dir().join("kept");
        std::fs::write(&spool, b"x").unwrap();
        q.intake(envelope(1), Body::spooled(Vec::new(), spool, 1))
            .await
            .unwrap();
        std::fs::write(q.spool_dir().join("unfinished"), b"y").unwrap();
        std::fs::write(t.path().join("bodies/00000000000000FF"), b"z").unwrap();
    }
    let q = loop {
        match Queue::open(t.path(), 0, policy(), None, None) {
            Ok(q) => break q,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(std::fs::read_dir(q.spool_dir()).unwrap().count(), 0);
    let bodies: Vec<_> = std::fs::read_dir(t.path().join("bodies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bodies, vec![QueueId(1).to_string()]);
    assert_eq!(q.body(QueueId(1)).unwrap().unwrap().to_vec().unwrap(), b"x");
}

#[test]
fn records_without_a_format_byte_still_decode() {
    let legacy = postcard::to_stdvec(&envelope(9)).unwrap();
    assert_eq!(Envelope::decode(&legacy).unwrap(), envelope(9));
    assert_eq!(
        Envelope::decode(&envelope(9).encode().unwrap()).unwrap(),
        envelope(9)
    );
}

#[tokio::test]
async fn no_room_means_disk_full_not_accepted() {
    let t = tempfile::tempdir().unwrap();
    let q = Queue::open(t.path(), u64::MAX / 4, policy(), None, None).unwrap();
    assert_eq!(
        q.intake(envelope(1), Body::inline(vec![0; 10])).await,
        Err(StoreError::DiskFull)
    );
    assert!(q.list().unwrap().is_empty());
}
