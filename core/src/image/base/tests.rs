use super::super::chunks::fixtures::synthetic_image;
use super::*;
use std::io::Cursor;

fn options(chunk_size: u32, threads: usize) -> BaseOptions {
    BaseOptions {
        chunk_size,
        threads,
        ..BaseOptions::default()
    }
}

fn compress(image: &[u8], chunk_size: u32, threads: usize) -> (Vec<u8>, BaseSummary) {
    let mut out = Vec::new();
    let summary = write_base(image, &mut out, &options(chunk_size, threads)).unwrap();
    (out, summary)
}

/// (image size, chunk size): tiny, exact multiples, remainders, many chunks.
fn size_matrix() -> Vec<(usize, u32)> {
    vec![
        (0, 4096),
        (1, 4096),
        (4095, 4096),
        (4096, 4096),
        (4097, 4096),
        (10 * 4096 + 1, 4096),
        (64 << 10, 64 << 10),
        (7 * (64 << 10) + 999, 64 << 10),
        (3 * (1 << 20) + 5, 1 << 20),
        (9 << 20, 4 << 20),
    ]
}

#[test]
fn round_trip_matrix() {
    for (size, chunk_size) in size_matrix() {
        let image = synthetic_image(size as u64, size, chunk_size as usize);
        let (base, summary) = compress(&image, chunk_size, 2);
        assert_eq!(summary.compressed_size, base.len() as u64);
        // Any zstd decoder gives back the image (frames, then a skippable frame).
        let decoded = zstd::stream::decode_all(&base[..]).unwrap();
        assert_eq!(decoded, image, "size {size} chunk {chunk_size}");
        // The table is the table of the raw image.
        let table = ChunkTable::from_image(&image[..], chunk_size).unwrap();
        assert_eq!(summary.table, table);
        // Every chunk decodes on its own.
        let mut reader = BaseReader::open(Cursor::new(&base), table.layout()).unwrap();
        for i in (0..table.chunk_count()).rev() {
            let chunk = reader.read_chunk_unverified(i).unwrap();
            let range = table.layout().chunk_range(i);
            assert_eq!(
                chunk,
                image[range.start as usize..range.end as usize],
                "chunk {i}"
            );
        }
    }
}

#[test]
fn zero_chunks_are_marked() {
    let chunk = 64 << 10;
    let image = synthetic_image(5, 8 * chunk + 100, chunk);
    let (_, summary) = compress(&image, chunk as u32, 2);
    let zeros: Vec<usize> = summary.table.zero_chunks().collect();
    assert_eq!(zeros, vec![1, 2, 7]);
}

#[test]
fn output_does_not_depend_on_threads() {
    let chunk = 64 << 10;
    let image = synthetic_image(9, 20 * chunk + 77, chunk);
    let (one, _) = compress(&image, chunk as u32, 1);
    for threads in [2, 3, 8] {
        let (many, _) = compress(&image, chunk as u32, threads);
        assert!(one == many, "{threads} threads changed the output");
    }
    let (again, _) = compress(&image, chunk as u32, 2);
    assert!(one == again);
}

#[test]
fn level_changes_output_and_is_checked() {
    let image = synthetic_image(2, 300_000, 65536);
    let mut fast = Vec::new();
    let mut o = options(65536, 2);
    o.level = 1;
    write_base(&image[..], &mut fast, &o).unwrap();
    let (default, _) = compress(&image, 65536, 2);
    assert_ne!(fast, default);
    // 0 is libzstd's "default level"; negative levels are its fast modes.
    for level in [23, -1_000_000] {
        o.level = level;
        let err = write_base(&image[..], &mut Vec::new(), &o).unwrap_err();
        assert!(matches!(err, BaseError::Options(_)), "{level}: {err}");
    }
    let err = write_base(&image[..], &mut Vec::new(), &options(65536, 0)).unwrap_err();
    assert!(matches!(err, BaseError::Options(_)));
    let err = write_base(&image[..], &mut Vec::new(), &options(65535, 1)).unwrap_err();
    assert!(matches!(
        err,
        BaseError::Layout(ChunkTableError::ChunkSize(65535))
    ));
}

#[test]
fn read_and_write_errors_name_the_offset() {
    struct FailAt(Cursor<Vec<u8>>, u64);
    impl Read for FailAt {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.position() >= self.1 {
                return Err(io::Error::other("disk on fire"));
            }
            let room = (self.1 - self.0.position()) as usize;
            let n = buf.len().min(room);
            self.0.read(&mut buf[..n])
        }
    }
    let image = synthetic_image(1, 10 * 4096, 4096);
    let err = write_base(
        FailAt(Cursor::new(image.clone()), 5 * 4096),
        Vec::new(),
        &options(4096, 2),
    )
    .unwrap_err();
    assert!(
        matches!(err, BaseError::ReadImage { offset: 20480, .. }),
        "{err}"
    );

    struct Full(u64);
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 < buf.len() as u64 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "full"));
            }
            self.0 -= buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = write_base(&image[..], Full(1000), &options(4096, 2)).unwrap_err();
    assert!(matches!(err, BaseError::Write { .. }), "{err}");
}

#[test]
fn every_truncation_fails_cleanly() {
    let image = synthetic_image(4, 5 * 4096 + 10, 4096);
    let (base, summary) = compress(&image, 4096, 2);
    for len in 0..base.len() {
        let cut = Cursor::new(&base[..len]);
        match BaseReader::open(cut, summary.table.layout()) {
            Err(_) => {}
            Ok(mut r) => {
                // Only a cut that keeps a valid-looking table can open; then
                // reading frames must fail.
                let all_ok =
                    (0..summary.table.chunk_count()).all(|i| r.read_chunk_unverified(i).is_ok());
                panic!(
                    "truncated to {len} of {} opened (all chunks ok: {all_ok})",
                    base.len()
                );
            }
        }
    }
}

#[test]
fn layout_mismatch_is_reported() {
    let image = synthetic_image(4, 5 * 4096 + 10, 4096);
    let (base, _) = compress(&image, 4096, 2);
    let other = ChunkLayout::new(4096, 6 * 4096).unwrap();
    let err = BaseReader::open(Cursor::new(&base), other).unwrap_err();
    assert!(
        matches!(
            err,
            BaseError::FrameSize {
                chunk: 5,
                offset: 20480,
                ..
            }
        ),
        "{err}"
    );
    let other = ChunkLayout::new(8192, 5 * 4096 + 10).unwrap();
    let err = BaseReader::open(Cursor::new(&base), other).unwrap_err();
    assert!(
        matches!(
            err,
            BaseError::FrameCount {
                frames: 6,
                chunks: 3
            }
        ),
        "{err}"
    );
    let err = BaseReader::open(Cursor::new(&image), other).unwrap_err();
    assert!(matches!(err, BaseError::SeekTable(_)), "{err}");
}
