//! Benchmark driver for the class base / node patch / compose pipeline.
//!
//! ```text
//! metis-bench-artifact gen SIZE OUT            mixed image: data, text, zero runs
//! metis-bench-artifact base IMAGE DIR [CHUNK [THREADS]]  DIR/base.zst, DIR/base.json
//! metis-bench-artifact node DIR [NAME [REV]]   DIR/node.patch and DIR/node.json
//!                                              (NAME's seed at revision REV)
//! metis-bench-artifact compose DIR [THREADS]   compose + verify to a sink
//! ```
//! Timing and peak RSS are measured from outside (`/usr/bin/time -v`) by
//! `bench/artifact.sh`, the same way as for the `zstd` CLI it is compared with.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use metis_core::image::base::{default_threads, write_base, BaseOptions};
use metis_core::image::chunks::{ChunkTable, DEFAULT_CHUNK_SIZE};
use metis_core::image::compose::{compose_table, ComposeOptions, Composer};
use metis_core::image::patch::PatchBuilder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["gen", size, out] => generate(parse(size), Path::new(out)),
        ["base", image, dir] => base(
            Path::new(image),
            Path::new(dir),
            DEFAULT_CHUNK_SIZE,
            default_threads(),
        ),
        ["base", image, dir, chunk] => base(
            Path::new(image),
            Path::new(dir),
            parse(chunk) as u32,
            default_threads(),
        ),
        ["base", image, dir, chunk, threads] => base(
            Path::new(image),
            Path::new(dir),
            parse(chunk) as u32,
            parse(threads) as usize,
        ),
        ["node", dir] => node(Path::new(dir), "titan-db", 1),
        ["node", dir, name] => node(Path::new(dir), name, 1),
        ["node", dir, name, rev] => node(Path::new(dir), name, parse(rev)),
        ["compose", dir] => compose(Path::new(dir), default_threads()),
        ["compose", dir, threads] => compose(Path::new(dir), parse(threads) as usize),
        _ => {
            eprintln!(
                "usage: metis-bench-artifact gen SIZE OUT | base IMAGE DIR [CHUNK [THREADS]] | node DIR [NAME [REV]] | compose DIR [THREADS]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Bytes with an optional K/M/G suffix (powers of 1024).
fn parse(text: &str) -> u64 {
    let (number, shift) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    number.parse::<u64>().expect("a number") << shift
}

type Error = Box<dyn std::error::Error>;

/// A golden-image-like file: runs (64 KiB..8 MiB) of incompressible data (~30%),
/// compressible text with some noise (~30%) and zeros (~40%, an image's free space).
fn generate(size: u64, out: &Path) -> Result<(), Error> {
    let mut writer = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let words: &[&[u8]] = &[
        b"kubelet ",
        b"node ",
        b"titan ",
        b"/usr/lib/",
        b"armbian ",
        b"longhorn ",
        b"\n",
        b"0x7f45 ",
    ];
    let mut buf = vec![0u8; 8 << 20];
    let mut written = 0u64;
    while written < size {
        let len = ((64 << 10) + next() % ((8 << 20) - (64 << 10))).min(size - written) as usize;
        let kind = next() % 10;
        let run = &mut buf[..len];
        if kind < 3 {
            for word in run.chunks_mut(8) {
                let x = next().to_le_bytes();
                word.copy_from_slice(&x[..word.len()]);
            }
        } else if kind < 6 {
            let mut at = 0;
            while at < len {
                let x = next();
                let w = words[(x % words.len() as u64) as usize];
                let n = w.len().min(len - at);
                run[at..at + n].copy_from_slice(&w[..n]);
                if x % 16 == 0 && at + n < len {
                    run[at + n] = (x >> 32) as u8;
                    at += 1;
                }
                at += n;
            }
        } else {
            run.fill(0);
        }
        writer.write_all(run)?;
        written += len as u64;
    }
    writer.flush()?;
    Ok(())
}

/// What the builder does once per class: the base and its chunk table.
fn base(image: &Path, dir: &Path, chunk_size: u32, threads: usize) -> Result<(), Error> {
    fs::create_dir_all(dir)?;
    let start = Instant::now();
    let options = BaseOptions::default()
        .with_chunk_size(chunk_size)
        .with_threads(threads);
    let summary = write_base(
        BufReader::with_capacity(1 << 20, File::open(image)?),
        BufWriter::with_capacity(1 << 20, File::create(dir.join("base.zst"))?),
        &options,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let size = summary.table.image_size();
    eprintln!(
        "base: {size} bytes -> {} bytes in {seconds:.2} s ({:.0} MiB/s, {} threads), {} of {} chunks zero",
        summary.compressed_size,
        size as f64 / seconds / (1 << 20) as f64,
        options.threads,
        summary.table.zero_chunks().count(),
        summary.table.chunk_count()
    );
    fs::write(dir.join("base.json"), serde_json::to_vec(&summary.table)?)?;
    Ok(())
}

/// What the builder does per node: a patch (a seed, a zeroed secrets slot, a metadata
/// sector) and the composed table.
fn node(dir: &Path, name: &str, revision: u64) -> Result<(), Error> {
    let table: ChunkTable = serde_json::from_slice(&fs::read(dir.join("base.json"))?)?;
    let size = table.image_size();
    let mut patch = PatchBuilder::new(size);
    let seed = format!("instance-id: {name}-{revision:04}\nlocal-hostname: {name}\n")
        .into_bytes()
        .repeat(1200);
    let seed_at = (size / 3).min(size.saturating_sub(seed.len() as u64));
    patch.write(seed_at, &seed[..seed.len().min(size as usize)])?;
    patch.write(
        size / 7,
        &vec![0u8; 64 << 10][..(64 << 10).min(size as usize - (size / 7) as usize)],
    )?;
    patch.write(
        512,
        &[0x55; 512][..512.min(size.saturating_sub(512) as usize)],
    )?;
    let patch = patch.finish();
    fs::write(dir.join("node.patch"), patch.encode()?)?;
    let composed = compose_table(File::open(dir.join("base.zst"))?, &table, &patch)?;
    fs::write(dir.join("node.json"), serde_json::to_vec(&composed)?)?;
    fs::write(dir.join("slot"), format!("{}", size / 7))?;
    Ok(())
}

/// Composes and verifies the node image into a sink, with the slot filled in.
fn compose(dir: &Path, threads: usize) -> Result<(), Error> {
    let table: ChunkTable = serde_json::from_slice(&fs::read(dir.join("node.json"))?)?;
    let patch = metis_core::image::patch::Patch::read_from(File::open(dir.join("node.patch"))?)?;
    let slot_at: u64 = fs::read_to_string(dir.join("slot"))?.trim().parse()?;
    let slot_len = (4096u64).min(table.image_size() - slot_at) as usize;
    let start = Instant::now();
    let composer = Composer::new(
        File::open(dir.join("base.zst"))?,
        table,
        patch,
        ComposeOptions::default().with_threads(threads),
    )?
    .with_slot(slot_at, vec![0xA5; slot_len])?;
    let mut bytes = 0u64;
    let mut zero = 0u64;
    let mut sink = io::sink();
    let mut chunks = composer.chunks();
    while let Some(chunk) = chunks.next() {
        let chunk = chunk?;
        bytes += chunk.data.len() as u64;
        // As the flasher does on a discarded card: zero chunks are not written.
        if chunk.is_zero {
            zero += 1;
        } else {
            sink.write_all(&chunk.data)?;
        }
        chunks.recycle(chunk);
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "compose: {bytes} bytes verified in {seconds:.2} s ({:.0} MiB/s, {threads} threads), {zero} zero chunks",
        bytes as f64 / seconds / (1 << 20) as f64
    );
    Ok(())
}
