//! Whole flashes through the engine onto the fake disk: the locks held through the
//! read-back, the first MiB written last, a denied write explained and wiped.

use std::io::Cursor;

use metis_core::image::base::{write_base, BaseOptions};
use metis_core::image::compose::{ComposeOptions, Composer};
use metis_core::image::patch::Patch;

use super::*;
use crate::cancel::CancelToken;
use crate::events::Events;
use crate::flash::{run_with, FlashError, FlashRequest, Target, WriteMode};

/// An image of `size` bytes with data in every chunk, and its composer.
fn composer(size: usize) -> (Vec<u8>, Composer<Cursor<Vec<u8>>>) {
    let image: Vec<u8> = (0..size).map(|i| (i * 31 + i / 4096) as u8 | 1).collect();
    let mut base = Vec::new();
    let options = BaseOptions::default()
        .with_chunk_size(MIB as u32)
        .with_threads(1);
    let summary = write_base(&image[..], &mut base, &options).unwrap();
    let composer = Composer::new(
        Cursor::new(base),
        summary.table,
        Patch::empty(size as u64),
        ComposeOptions::default(),
    )
    .unwrap();
    (image, composer)
}

fn request() -> FlashRequest {
    FlashRequest {
        node: "titan-db".into(),
        slot: None,
        target: Target::Device {
            path: PathBuf::from(CARD),
            assume_yes: true,
            policy: Policy::default(),
        },
        mode: Some(WriteMode::Full),
        block_size: 256 << 10,
        card: None,
        compare: false,
        probe_capacity: false,
        signature_verified: true,
        confirm: None,
        events: Events::none(),
        cancel: CancelToken::new(),
    }
}

fn position(log: &[String], pred: impl Fn(&str) -> bool) -> usize {
    log.iter()
        .position(|l| pred(l))
        .unwrap_or_else(|| panic!("not in {log:?}"))
}

fn last_position(log: &[String], pred: impl Fn(&str) -> bool) -> usize {
    log.iter()
        .rposition(|l| pred(l))
        .unwrap_or_else(|| panic!("not in {log:?}"))
}

#[test]
fn a_flash_holds_the_locks_through_the_read_back_and_writes_the_first_mib_last() {
    let (b, fake) = backend(machine());
    let (image, composer) = composer(4 * MIB as usize);
    run_with(&b, composer, request()).unwrap();
    assert_eq!(&fake.bytes.lock().unwrap()[..image.len()], &image[..]);
    let log = fake.log();
    let first_write = position(&log, |l| l.starts_with("write "));
    assert!(last_position(&log, |l| l.starts_with("dismount ")) < first_write);
    assert!(position(&log, |l| l == "delete layout 2") < first_write);
    // The partition table is wiped before anything else is written, and goes on
    // the card after everything else.
    assert_eq!(log[first_write], "write 0");
    let head = last_position(&log, |l| l == "write 0");
    assert_eq!(head, last_position(&log, |l| l.starts_with("write ")));
    assert!(
        log[first_write + 1..head]
            .iter()
            .any(|l| l.starts_with("write ") && l != "write 0"),
        "{log:?}"
    );
    // Read back, then Windows rereads the table, then the volumes are let go.
    let update = position(&log, |l| l == "update properties 2");
    assert!(last_position(&log, |l| l.starts_with("read ")) < update);
    assert!(update < position(&log, |l| l.starts_with("close ")));
    assert_eq!(log.iter().filter(|l| l.starts_with("update ")).count(), 1);
}

#[test]
fn a_write_denied_mid_flash_is_explained_and_the_card_wiped_while_still_locked() {
    let m = machine();
    *m.fail_write.lock().unwrap() = Some((2 * MIB, code::ACCESS_DENIED));
    let (b, fake) = backend(m);
    let (_, composer) = composer(4 * MIB as usize);
    let e = run_with(&b, composer, request()).unwrap_err();
    let text = e.to_string();
    match &e {
        FlashError::Wiped { wipe_error, .. } => assert!(wipe_error.is_none(), "{text}"),
        other => panic!("not wiped: {other}"),
    }
    assert!(
        text.contains("Controlled Folder Access or an antivirus"),
        "{text}"
    );
    assert!(text.contains("was wiped"), "{text}");
    assert!(fake.bytes.lock().unwrap()[..MIB as usize]
        .iter()
        .all(|b| *b == 0));
    let log = fake.log();
    let failed = position(&log, |l| l == format!("write {}", 2 * MIB));
    let wipe = failed + position(&log[failed..], |l| l == "write 0");
    assert!(
        wipe < position(&log, |l| l.starts_with("close ")),
        "{log:?}"
    );
    assert!(
        position(&log, |l| l == "update properties 2")
            < position(&log, |l| l.starts_with("close "))
    );
}
