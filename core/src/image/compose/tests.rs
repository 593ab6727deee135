use super::super::base::{write_base, BaseOptions};
use super::super::chunks::fixtures::{noise, synthetic_image};
use super::*;
use std::io::Cursor;

/// A base, a node image made from it, and everything compose needs.
struct Fixture {
    image: Vec<u8>,
    modified: Vec<u8>,
    base: Vec<u8>,
    base_table: ChunkTable,
    table: ChunkTable,
    patch: Patch,
}

fn base_options(chunk_size: u32) -> BaseOptions {
    BaseOptions {
        chunk_size,
        threads: 2,
        ..BaseOptions::default()
    }
}

/// `edits` are (offset, len) ranges of the image overwritten with noise (or zeros
/// when `len` is even), clamped to the image.
fn fixture(size: usize, chunk_size: u32, edits: &[(usize, usize)]) -> Fixture {
    let image = synthetic_image(size as u64 + 11, size, chunk_size as usize);
    let mut modified = image.clone();
    for (k, &(offset, len)) in edits.iter().enumerate() {
        if size == 0 {
            break;
        }
        let offset = offset.min(size - 1);
        let len = len.clamp(1, size - offset);
        let bytes = if len % 2 == 0 {
            vec![0; len]
        } else {
            noise(k as u64, len)
        };
        modified[offset..offset + len].copy_from_slice(&bytes);
    }
    let mut base = Vec::new();
    let summary = write_base(&image[..], &mut base, &base_options(chunk_size)).unwrap();
    let patch = Patch::diff(&image[..], &modified[..]).unwrap();
    let table = compose_table(Cursor::new(&base), &summary.table, &patch).unwrap();
    Fixture {
        image,
        modified,
        base,
        base_table: summary.table,
        table,
        patch,
    }
}

fn composer(f: &Fixture, threads: usize, skip_zero_chunks: bool) -> Composer<Cursor<Vec<u8>>> {
    let options = ComposeOptions {
        threads,
        skip_zero_chunks,
    };
    Composer::new(
        Cursor::new(f.base.clone()),
        f.table.clone(),
        f.patch.clone(),
        options,
    )
    .unwrap()
}

fn compose_all(f: &Fixture, threads: usize, skip: bool) -> Result<Vec<u8>, ComposeError> {
    let options = ComposeOptions {
        threads,
        skip_zero_chunks: skip,
    };
    let composer = Composer::new(
        Cursor::new(f.base.clone()),
        f.table.clone(),
        f.patch.clone(),
        options,
    )?;
    let mut out = Vec::new();
    for chunk in composer.chunks() {
        out.extend_from_slice(&chunk?.data);
    }
    Ok(out)
}

/// (image size, chunk size, edits as (offset, len)).
type Case = (usize, u32, Vec<(usize, usize)>);

fn matrix() -> Vec<Case> {
    let k64 = 64 << 10;
    vec![
        (0, 4096, vec![]),
        (1, 4096, vec![(0, 1)]),
        (4095, 4096, vec![]),
        (4096 * 3 + 7, 4096, vec![(4096, 4096), (4096 * 3 + 6, 1)]),
        (
            k64 as usize * 5,
            k64,
            vec![(100, 3), (k64 as usize - 2, 5), (k64 as usize * 2 + 9, 1)],
        ),
        (
            k64 as usize * 9 + 4321,
            k64,
            vec![(k64 as usize * 8 + 1, 300_000)],
        ),
        (
            (1 << 20) * 3 + 17,
            1 << 20,
            vec![(1 << 20, 2), (3 << 20, 1)],
        ),
        ((4 << 20) * 2 + 1, 4 << 20, vec![(123_457, 4097)]),
    ]
}

#[test]
fn compose_round_trip_matrix() {
    for (size, chunk_size, edits) in matrix() {
        let f = fixture(size, chunk_size, &edits);
        assert_eq!(
            f.table,
            ChunkTable::from_image(&f.modified[..], chunk_size).unwrap()
        );
        for threads in [1, 3] {
            for skip in [true, false] {
                let out = compose_all(&f, threads, skip).unwrap();
                assert!(
                    out == f.modified,
                    "size {size} chunk {chunk_size} threads {threads} skip {skip}"
                );
            }
        }
        // Read adapter, in odd-sized reads.
        let mut reader = composer(&f, 2, true).into_reader();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 3001];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(out == f.modified, "reader: size {size} chunk {chunk_size}");
        // Random access, last chunk first.
        let mut c = composer(&f, 1, true);
        for i in (0..f.table.chunk_count()).rev() {
            let chunk = c.read_chunk(i).unwrap();
            let r = f.table.layout().chunk_range(i);
            assert_eq!(chunk.offset, r.start);
            assert!(
                *chunk.data == f.modified[r.start as usize..r.end as usize],
                "chunk {i}"
            );
            assert_eq!(chunk.is_zero, is_all_zero(&chunk.data), "chunk {i}");
        }
        let count = f.table.chunk_count();
        assert!(matches!(
            c.read_chunk(count),
            Err(ComposeError::ChunkOutOfRange { .. })
        ));
    }
}

#[test]
fn empty_patch_verifies_the_base() {
    let f = fixture(9 * 4096 + 5, 4096, &[]);
    assert!(f.patch.is_empty());
    assert_eq!(f.table, f.base_table);
    assert!(compose_all(&f, 2, false).unwrap() == f.image);
}

#[test]
fn slot_bytes_land_after_verification() {
    let chunk = 4096usize;
    let f = fixture(10 * chunk + 100, chunk as u32, &[(3 * chunk - 10, 40)]);
    // Slots inside a chunk, across a boundary, over a zero chunk, at the very end.
    for (offset, len) in [
        (100, 10),
        (2 * chunk - 5, 20),
        (chunk, chunk),
        (10 * chunk + 90, 10),
    ] {
        let secret = noise(offset as u64, len);
        let c = composer(&f, 2, true)
            .with_slot(offset as u64, secret.clone())
            .unwrap();
        let mut want = f.modified.clone();
        want[offset..offset + len].copy_from_slice(&secret);
        let chunks: Vec<Chunk> = c.chunks().collect::<Result<_, _>>().unwrap();
        let out: Vec<u8> = chunks.iter().flat_map(|c| c.data.iter().copied()).collect();
        assert!(out == want, "slot at {offset}");
        for c in &chunks {
            assert_eq!(c.is_zero, is_all_zero(&c.data), "chunk {}", c.index);
        }
        let mut c = composer(&f, 1, true)
            .with_slot(offset as u64, secret.clone())
            .unwrap();
        let i = offset / chunk;
        assert!(c.read_chunk(i).unwrap().data[offset - i * chunk..]
            .starts_with(&secret[..(chunk - offset % chunk).min(len)]));
    }
    let size = f.table.image_size();
    for (offset, len) in [(size, 1), (size - 1, 2), (u64::MAX, 1)] {
        let err = composer(&f, 1, true)
            .with_slot(offset, vec![1; len])
            .unwrap_err();
        assert!(matches!(err, ComposeError::SlotOutOfRange { .. }), "{err}");
    }
    // The slot never shows up in debug output.
    let c = composer(&f, 1, true)
        .with_slot(0, b"hunter2".to_vec())
        .unwrap();
    assert!(!format!("{c:?}").contains("104, 117"));
}

/// Composes every chunk with `read_chunk` on this thread (no thread start-up per
/// call, so a test can afford one compose per flipped byte).
fn compose_sync(f: &Fixture, skip: bool) -> Result<Vec<u8>, ComposeError> {
    let options = ComposeOptions {
        threads: 1,
        skip_zero_chunks: skip,
    };
    let mut c = Composer::new(
        Cursor::new(f.base.clone()),
        f.table.clone(),
        f.patch.clone(),
        options,
    )?;
    let mut out = Vec::new();
    for i in 0..f.table.chunk_count() {
        out.extend_from_slice(&c.read_chunk(i)?.data);
    }
    Ok(out)
}

#[test]
fn every_flipped_base_byte_is_detected_and_named() {
    let chunk = 4096usize;
    let f = fixture(6 * chunk + 333, chunk as u32, &[(5000, 3)]);
    let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
    let frames: Vec<_> = (0..f.table.chunk_count())
        .map(|i| reader.frame_range(i))
        .collect();
    let mut harmless = 0;
    let flips = (0..f.base.len()).flat_map(|at| [(at, 0x01u8), (at, 0x10), (at, 0x80)]);
    for (n, (at, bit)) in flips.enumerate() {
        let bad = f.clone_with_base(|b| b[at] ^= bit);
        let owner = frames.iter().position(|r| r.contains(&(at as u64)));
        let mut results = vec![compose_sync(&bad, false)];
        if n % 17 == 0 {
            results.push(compose_all(&bad, 2, false)); // the threaded path agrees
        }
        for result in results {
            let err = match result {
                // A few bits of a zstd frame do not change what it decodes to (the
                // header's "unused" bit, for one). Such a flip cannot be seen in the
                // content, cannot harm the card, and is caught by the layer's OCI
                // digest; anything that changes a byte of output must fail.
                Ok(out) => {
                    assert!(
                        out == f.modified,
                        "flip {bit:#x} at {at} (chunk {owner:?}) changed the output undetected"
                    );
                    harmless += 1;
                    continue;
                }
                Err(e) => e,
            };
            match owner {
                Some(i) => {
                    let named = match &err {
                        ComposeError::HashMismatch { chunk, .. }
                        | ComposeError::Base(BaseError::Decode { chunk, .. })
                        | ComposeError::Base(BaseError::DecodedSize { chunk, .. })
                        | ComposeError::Base(BaseError::FrameMissing { chunk, .. }) => Some(*chunk),
                        _ => None,
                    };
                    assert_eq!(named, Some(i), "flip {bit:#x} at {at}: {err}");
                    assert!(
                        err.to_string()
                            .starts_with(&format!("chunk {i} at byte offset {}", i * chunk)),
                        "{err}"
                    );
                }
                None => assert!(
                    matches!(
                        err,
                        ComposeError::Base(
                            BaseError::SeekTable(_)
                                | BaseError::FrameCount { .. }
                                | BaseError::FrameSize { .. }
                                | BaseError::FrameMissing { .. }
                        )
                    ),
                    "flip {bit:#x} at {at} in the seek table: {err}"
                ),
            }
        }
        // With zero chunks skipped, a flip in a zero chunk's frame is never read;
        // the output must still be right or the compose must fail.
        if let Ok(out) = compose_sync(&bad, true) {
            assert!(
                out == f.modified,
                "flip {bit:#x} at {at} changed the output undetected"
            );
        }
    }
    eprintln!("{harmless} harmless flips of {}", 3 * f.base.len());
    assert!(
        harmless * 100 < f.base.len() * 3,
        "{harmless} harmless flips of {}",
        3 * f.base.len()
    );
}

impl Fixture {
    fn clone_with_base(&self, change: impl Fn(&mut Vec<u8>)) -> Fixture {
        let mut base = self.base.clone();
        change(&mut base);
        Fixture {
            image: self.image.clone(),
            modified: self.modified.clone(),
            base,
            base_table: self.base_table.clone(),
            table: self.table.clone(),
            patch: self.patch.clone(),
        }
    }
}

#[test]
fn seek_table_entry_flips_name_the_chunk() {
    let chunk = 4096usize;
    let f = fixture(6 * chunk + 333, chunk as u32, &[]);
    let table_start = f.base.len() - (8 + 7 * 8 + 9);
    // c_size of frame 2 (entries start after the 8-byte skippable header).
    let at = table_start + 8 + 2 * 8;
    let bad = f.clone_with_base(|b| b[at] ^= 0x01);
    let err = compose_all(&bad, 2, false).unwrap_err();
    assert!(
        matches!(
            err,
            ComposeError::Base(BaseError::FrameMissing { chunk: 3, .. })
        ),
        "{err}"
    );
    // d_size of frame 4.
    let at = table_start + 8 + 4 * 8 + 4;
    let bad = f.clone_with_base(|b| b[at] ^= 0x01);
    let err = compose_all(&bad, 2, false).unwrap_err();
    assert!(
        matches!(
            err,
            ComposeError::Base(BaseError::FrameSize {
                chunk: 4,
                offset: 16384,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn flipped_table_hash_names_the_chunk() {
    let chunk = 4096usize;
    let f = fixture(5 * chunk, chunk as u32, &[(10, 1)]);
    for i in 0..f.table.chunk_count() {
        if f.table.is_zero(i) {
            continue; // a zero chunk's hash is checked when the table is built
        }
        let mut hashes = f.table.hashes().to_vec();
        hashes[i].0[7] ^= 1;
        let zeros: Vec<usize> = f.table.zero_chunks().collect();
        let table = ChunkTable::new(f.table.layout(), hashes, &zeros).unwrap();
        let c = Composer::new(
            Cursor::new(f.base.clone()),
            table,
            f.patch.clone(),
            ComposeOptions::default(),
        )
        .unwrap();
        let mut chunks = c.chunks();
        for j in 0..i {
            assert_eq!(chunks.next().unwrap().unwrap().index, j);
        }
        let err = chunks.next().unwrap().unwrap_err();
        assert!(
            matches!(err, ComposeError::HashMismatch { chunk, offset, .. } if chunk == i && offset == (i * 4096) as u64),
            "{err}"
        );
        assert!(chunks.next().is_none(), "iteration ends after an error");
    }
}

#[test]
fn changed_patch_is_detected() {
    let chunk = 4096usize;
    let f = fixture(8 * chunk, chunk as u32, &[(100, 5), (5 * chunk, 33)]);
    let wire = f.patch.encode().unwrap();
    let mut checked = 0;
    for at in 0..wire.len() {
        let mut bad = wire.clone();
        bad[at] ^= 0x04;
        let Ok(patch) = Patch::decode(&bad) else {
            continue;
        };
        if patch == f.patch {
            continue; // decodes to the same extents: harmless (see patch tests)
        }
        checked += 1;
        let result = Composer::new(
            Cursor::new(f.base.clone()),
            f.table.clone(),
            patch,
            ComposeOptions::default(),
        )
        .and_then(|c| {
            c.chunks()
                .map(|c| c.map(|c| c.data))
                .collect::<Result<Vec<_>, _>>()
        });
        assert!(result.is_err(), "flip at {at} went through");
    }
    // A patch with different content must also be caught; build one directly.
    let mut other = f
        .patch
        .extents()
        .map(|e| (e.offset, e.bytes.to_vec()))
        .collect::<Vec<_>>();
    other[0].1[0] ^= 1;
    let patch = Patch::from_extents(f.table.image_size(), other).unwrap();
    let err = Composer::new(
        Cursor::new(f.base.clone()),
        f.table.clone(),
        patch,
        ComposeOptions::default(),
    )
    .unwrap()
    .chunks()
    .find_map(Result::err)
    .unwrap();
    assert!(
        matches!(
            err,
            ComposeError::HashMismatch {
                chunk: 0,
                offset: 0,
                ..
            }
        ),
        "{err} ({checked} decodable flips)"
    );
    // A patch for another image size is refused up front.
    let err = Composer::new(
        Cursor::new(f.base.clone()),
        f.table.clone(),
        Patch::empty(1),
        ComposeOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ComposeError::Patch(PatchError::ImageSize { .. })),
        "{err}"
    );
}

#[test]
fn truncated_base_fails_cleanly() {
    let chunk = 4096usize;
    let f = fixture(4 * chunk + 1, chunk as u32, &[(1, 1)]);
    for len in 0..f.base.len() {
        let bad = f.clone_with_base(|b| b.truncate(len));
        let opened = Composer::new(
            Cursor::new(bad.base.clone()),
            f.table.clone(),
            f.patch.clone(),
            ComposeOptions::default(),
        );
        assert!(opened.is_err(), "base truncated to {len} opened");
    }
}

#[test]
fn zero_chunks_are_not_decoded_when_skipping() {
    let chunk = 4096usize;
    let f = fixture(8 * chunk, chunk as u32, &[]);
    assert!(f.table.is_zero(1) && f.table.is_zero(2));
    // Garble chunk 1's frame: skipping never reads it, so compose still succeeds.
    let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
    let r = reader.frame_range(1);
    let bad = f.clone_with_base(|b| b[r.start as usize + 5..r.end as usize].fill(0xAA));
    let chunks: Vec<Chunk> = composer(&bad, 2, true)
        .chunks()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(chunks[1].is_zero && chunks[2].is_zero && !chunks[0].is_zero);
    assert!(
        matches!(chunks[1].data, Cow::Borrowed(_)),
        "zero chunk was decoded"
    );
    assert!(chunks
        .iter()
        .flat_map(|c| c.data.iter().copied())
        .eq(f.modified.iter().copied()));
    // Without skipping it is caught, naming chunk 1.
    let err = compose_all(&bad, 2, false).unwrap_err();
    assert!(
        err.to_string().starts_with("chunk 1 at byte offset 4096"),
        "{err}"
    );
    // A patch extent on a zero chunk forces a decode, which then fails.
    let mut modified = f.image.clone();
    modified[chunk + 10] = 7;
    let patch = Patch::diff(&f.image[..], &modified[..]).unwrap();
    let table = compose_table(Cursor::new(&f.base), &f.base_table, &patch).unwrap();
    assert!(!table.is_zero(1));
    let c = Composer::new(
        Cursor::new(bad.base.clone()),
        table,
        patch,
        ComposeOptions::default(),
    )
    .unwrap();
    assert!(c.chunks().any(|r| r.is_err()));
}

#[test]
fn dropping_the_iterator_early_stops_the_threads() {
    let f = fixture(64 * 4096, 4096, &[]);
    for take in [0, 1, 5] {
        let mut chunks = composer(&f, 3, false).chunks();
        for _ in 0..take {
            chunks.next().unwrap().unwrap();
        }
        drop(chunks); // joins reader and workers; a hang here fails the test run
    }
}

#[test]
fn reader_keeps_failing_after_an_error() {
    let chunk = 4096usize;
    let f = fixture(4 * chunk, chunk as u32, &[]);
    let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
    let r = reader.frame_range(0);
    let bad = f.clone_with_base(|b| b[r.end as usize - 2] ^= 0xff);
    let mut reader = composer(&bad, 2, false).into_reader();
    let mut buf = vec![0u8; 100];
    let err = reader.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err
        .get_ref()
        .unwrap()
        .downcast_ref::<ComposeError>()
        .is_some());
    assert!(reader.read(&mut buf).is_err());
    assert!(io::copy(&mut reader, &mut io::sink()).is_err());
}

#[test]
fn compose_table_detects_a_corrupt_base_chunk() {
    let chunk = 4096usize;
    let f = fixture(6 * chunk, chunk as u32, &[(3 * chunk + 1, 1)]);
    let reader = BaseReader::open(Cursor::new(&f.base), f.table.layout()).unwrap();
    let r = reader.frame_range(3);
    let bad = f.clone_with_base(|b| b[(r.start + r.end) as usize / 2] ^= 0x20);
    let err = compose_table(Cursor::new(&bad.base), &f.base_table, &f.patch).unwrap_err();
    assert!(
        err.to_string().starts_with("chunk 3 at byte offset 12288"),
        "{err}"
    );
}
