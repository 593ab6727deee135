use super::super::chunks::fixtures::noise;
use super::*;
use std::io::Cursor;

fn apply_all(patch: &Patch, base: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    patch.apply(0, &mut out);
    out
}

fn check_canonical(patch: &Patch) {
    let mut previous_end = None;
    for e in patch.extents() {
        assert!(!e.bytes.is_empty());
        assert!(previous_end.is_none_or(|end| e.offset > end), "{patch:?}");
        assert!(e.offset + e.bytes.len() as u64 <= patch.image_size());
        previous_end = Some(e.offset + e.bytes.len() as u64);
    }
}

/// (offset, len) edits of a base image, as an injection engine might make them.
fn edit_cases(size: usize) -> Vec<Vec<(usize, usize)>> {
    let mut cases = vec![
        vec![],
        vec![(0, 1)],
        vec![(size - 1, 1)],
        vec![(0, size)],
        vec![(size / 2, 1), (size / 2 + 2, 1)], // gap 1: merged
        vec![(size / 3, 4), (size / 3 + 4 + 15, 3)], // gap 15: merged
        vec![(size / 3, 4), (size / 3 + 4 + 16, 3)], // gap 16: split
        vec![(10, 100), (50, 200), (5, 10)],    // overlapping writes
        vec![(size / 4, 600), (size / 4 + 600, 600)], // touching writes
    ];
    let mut x = size;
    cases.push(
        (0..40)
            .map(|i| {
                x = (x * 7919 + i * 104_729) % size;
                (x, 1 + (i * 37) % 300)
            })
            .map(|(o, l)| (o, l.min(size - o)))
            .collect(),
    );
    // Clamp every edit into the image (the fixed cases assume a large one).
    cases
        .into_iter()
        .map(|edits| {
            edits
                .into_iter()
                .map(|(o, l)| {
                    let o = o.min(size - 1);
                    (o, l.clamp(1, size - o))
                })
                .collect()
        })
        .collect()
}

#[test]
fn diff_builder_and_minimize_agree_matrix() {
    for size in [1usize, 17, 4096, 65_537, (1 << 20) + 3, 3 << 20] {
        let base = noise(size as u64, size);
        for (case, edits) in edit_cases(size).into_iter().enumerate() {
            let mut modified = base.clone();
            let mut builder = PatchBuilder::new(size as u64);
            for (k, &(offset, len)) in edits.iter().enumerate() {
                // Half the written bytes keep the base value, as a rewritten
                // filesystem block would.
                let mut bytes = noise((case * 1000 + k) as u64, len);
                for (j, b) in bytes.iter_mut().enumerate() {
                    if (j / 7) % 2 == 0 {
                        *b = base[offset + j];
                    }
                }
                modified[offset..offset + len].copy_from_slice(&bytes);
                builder.write(offset as u64, &bytes).unwrap();
            }
            let from_engine = builder.finish();
            check_canonical(&from_engine);
            assert_eq!(
                apply_all(&from_engine, &base),
                modified,
                "size {size} case {case}"
            );

            let diffed = Patch::diff(&base[..], &modified[..]).unwrap();
            check_canonical(&diffed);
            assert_eq!(
                apply_all(&diffed, &base),
                modified,
                "size {size} case {case}"
            );

            let minimized = from_engine.minimize(Cursor::new(&base)).unwrap();
            assert_eq!(minimized, diffed, "size {size} case {case}");

            // Wire round trip, and reproducible bytes.
            let wire = diffed.encode().unwrap();
            assert_eq!(wire, diffed.encode().unwrap());
            assert_eq!(Patch::decode(&wire).unwrap(), diffed);
        }
    }
}

#[test]
fn diff_merges_short_gaps_only() {
    // (gap between two changed bytes, extents expected)
    for (gap, want) in [
        (0usize, 1usize),
        (1, 1),
        (15, 1),
        (16, 2),
        (17, 2),
        (5000, 2),
    ] {
        // Across a 1 MiB read boundary as well as inside one block.
        for first in [100usize, (1 << 20) - 3] {
            let base = vec![0u8; 2 << 20];
            let mut modified = base.clone();
            modified[first] = 1;
            modified[first + 1 + gap] = 2;
            let patch = Patch::diff(&base[..], &modified[..]).unwrap();
            assert_eq!(patch.extent_count(), want, "gap {gap} at {first}");
            let first_extent = patch.extents().next().unwrap();
            assert_eq!(first_extent.offset, first as u64);
            assert_eq!(
                patch.byte_count(),
                if want == 1 { gap as u64 + 2 } else { 2 }
            );
        }
    }
}

#[test]
fn diff_rejects_size_mismatch() {
    let a = vec![0u8; 3 << 20];
    let err = Patch::diff(&a[..], &a[..(2 << 20) + 5]).unwrap_err();
    assert!(
        matches!(err, PatchError::SizeMismatch { base, modified } if base == 3 << 20 && modified == (2 << 20) + 5),
        "{err}"
    );
    let err = Patch::diff(&a[..10], &a[..]).unwrap_err();
    assert!(matches!(err, PatchError::SizeMismatch { base: 10, modified } if modified == 3 << 20));
}

#[test]
fn builder_rejects_out_of_range_writes() {
    let mut b = PatchBuilder::new(100);
    assert!(b.write(99, &[1]).is_ok());
    assert!(matches!(
        b.write(99, &[1, 2]),
        Err(PatchError::BadExtent { .. })
    ));
    assert!(matches!(
        b.write(u64::MAX, &[1]),
        Err(PatchError::BadExtent { .. })
    ));
}

#[test]
fn overlapping_slice_apply_matrix() {
    let base = noise(1, 10_000);
    let patch = Patch::from_extents(10_000, [(100, vec![1; 50]), (4000, vec![2; 3000])]).unwrap();
    let whole = apply_all(&patch, &base);
    for window in [1usize, 7, 64, 4096, 10_000] {
        let mut out = Vec::new();
        for start in (0..10_000).step_by(window) {
            let end = (start + window).min(10_000);
            let mut buf = base[start..end].to_vec();
            patch.apply(start as u64, &mut buf);
            let touched = (start < 150 && end > 100) || (start < 7000 && end > 4000);
            assert_eq!(
                patch.touches(start as u64..end as u64),
                touched,
                "{start}..{end}"
            );
            out.extend(buf);
        }
        assert_eq!(out, whole, "window {window}");
    }
}

fn raw_patch(fields: &[&[u8]]) -> Vec<u8> {
    zstd::bulk::compress(&fields.concat(), 3).unwrap()
}

#[test]
fn decode_rejects_malformed_patches() {
    let v1 = 1u32.to_le_bytes();
    let flags = 0u32.to_le_bytes();
    let size = 100u64.to_le_bytes();
    let one = 1u64.to_le_bytes();
    let pair = |o: u64, l: u64| [o.to_le_bytes(), l.to_le_bytes()].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_patch(&[b"METISPAX", &v1, &flags, &size, &0u64.to_le_bytes()]),
            "magic",
        ),
        (
            raw_patch(&[
                b"METISPAT",
                &2u32.to_le_bytes(),
                &flags,
                &size,
                &0u64.to_le_bytes(),
            ]),
            "version 2",
        ),
        (
            raw_patch(&[
                b"METISPAT",
                &v1,
                &1u32.to_le_bytes(),
                &size,
                &0u64.to_le_bytes(),
            ]),
            "reserved flags",
        ),
        (raw_patch(&[b"METISPAT", &v1, &flags, &size]), "truncated"),
        (
            raw_patch(&[b"METISPAT", &v1, &flags, &size, &one, &pair(0, 5), b"abc"]),
            "truncated",
        ),
        (
            raw_patch(&[b"METISPAT", &v1, &flags, &size, &one, &pair(0, 3), b"abcd"]),
            "after its last extent",
        ),
        (
            raw_patch(&[b"METISPAT", &v1, &flags, &size, &one, &pair(98, 3), b"abc"]),
            "past the end",
        ),
        (
            raw_patch(&[b"METISPAT", &v1, &flags, &size, &one, &pair(5, 0)]),
            "empty",
        ),
        (
            raw_patch(&[
                b"METISPAT",
                &v1,
                &flags,
                &size,
                &2u64.to_le_bytes(),
                &pair(5, 2),
                &pair(7, 1),
                b"abc",
            ]),
            "not after",
        ),
        (
            raw_patch(&[
                b"METISPAT",
                &v1,
                &flags,
                &size,
                &2u64.to_le_bytes(),
                &pair(5, 2),
                &pair(1, 1),
                b"abc",
            ]),
            "not after",
        ),
        (
            raw_patch(&[b"METISPAT", &v1, &flags, &size, &u64::MAX.to_le_bytes()]),
            "limit",
        ),
        (b"not zstd at all".to_vec(), "zstd"),
        (Vec::new(), "truncated"),
    ];
    for (wire, want) in cases {
        let err = Patch::decode(&wire).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
}

#[test]
fn every_flipped_or_truncated_byte_is_detected() {
    let base = noise(3, 50_000);
    let mut modified = base.clone();
    modified[1000..1300].copy_from_slice(&noise(4, 300));
    modified[40_000] ^= 0xff;
    let patch = Patch::diff(&base[..], &modified[..]).unwrap();
    let wire = patch.encode().unwrap();
    let mut same_content = 0;
    for at in 0..wire.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = wire.clone();
            bad[at] ^= bit;
            // A flip must fail to decode, or decode to the very same patch: a few
            // bits of a zstd stream do not change what it decodes to (the frame
            // checksum covers content, not encoding). Those flips are harmless and
            // only the patch layer's OCI digest sees them.
            if let Ok(p) = Patch::decode(&bad) {
                assert_eq!(
                    p, patch,
                    "flip {bit:#x} at byte {at} changed the patch undetected"
                );
                same_content += 1;
            }
        }
    }
    assert!(
        same_content * 100 < wire.len() * 2,
        "{same_content} harmless flips"
    );
    for len in 0..wire.len() {
        assert!(Patch::decode(&wire[..len]).is_err(), "truncated to {len}");
    }
}
