use super::*;

#[test]
fn seed_paths_allow_one_directory_level() {
    assert_eq!(seed_path("user-data").unwrap(), (None, "user-data"));
    assert_eq!(
        seed_path("metis/bootstrap.sh").unwrap(),
        (Some("metis"), "bootstrap.sh")
    );
    for bad in ["", "/x", "a/b/c", "../x", "a//b", "a\\b", "a:b", "x/"] {
        assert!(seed_path(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn short_names_are_laid_out_like_directory_entries() {
    assert_eq!(&raw_short_name(b"METIS-~1.BIN"), b"METIS-~1BIN");
    assert_eq!(&raw_short_name(b"README"), b"README     ");
    assert_eq!(&raw_short_name(b"A.B"), b"A       B  ");
}

fn volume(kind: FatKind, entries: usize) -> Volume {
    let bytes = match kind {
        FatKind::Fat12 => entries * 3 / 2 + 2,
        FatKind::Fat16 => entries * 2,
        FatKind::Fat32 => entries * 4,
    };
    let bpb = FatBpb::parse(&{
        let mut b = [0u8; 512];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14] = 1;
        b[16] = 1;
        b[22] = 1;
        b[0x36..0x39].copy_from_slice(b"FAT");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    })
    .unwrap();
    Volume {
        bpb,
        kind,
        end_cluster: entries as u32,
        table: vec![0u8; bytes],
    }
}

#[test]
fn fat_entries_round_trip_for_every_width() {
    for kind in [FatKind::Fat12, FatKind::Fat16, FatKind::Fat32] {
        let mut v = volume(kind, 64);
        for n in 2..64u32 {
            v.set(n, (n * 37) & 0x0FFF);
        }
        for n in 2..64u32 {
            assert_eq!(v.get(n), (n * 37) & 0x0FFF, "{kind:?} cluster {n}");
        }
        v.set(10, v.end_of_chain());
        assert!(v.is_end(v.get(10)));
        assert_eq!(v.get(9), (9 * 37) & 0x0FFF);
        assert_eq!(v.get(11), (11 * 37) & 0x0FFF);
    }
}
