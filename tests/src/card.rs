//! Offline inspection of a card image: its partition table (`sfdisk -J`),
//! files in its FAT partitions (mtools at a byte offset) and in its ext4
//! partitions (debugfs and e2fsck at a byte offset, through e2fsprogs'
//! `image?offset=N` I/O option). Nothing is mounted and no root is needed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::Deserialize;

use crate::tool;

/// Bytes per sector in every image the tests make (sfdisk reports sectors).
pub const SECTOR: u64 = 512;

/// A partition table as `sfdisk -J` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct PartitionTable {
    /// `dos` or `gpt`.
    pub label: String,
    /// MBR disk identifier (`0x…`) or GPT disk GUID.
    pub id: String,
    /// Partitions in table order.
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

/// One partition as `sfdisk -J` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Partition {
    /// sfdisk's device name, `<image>N`.
    pub node: String,
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub size: u64,
    /// MBR type byte in hex (`c`, `83`) or GPT type GUID.
    #[serde(rename = "type")]
    pub kind: String,
    /// GPT partition GUID.
    #[serde(default)]
    pub uuid: Option<String>,
    /// GPT partition name.
    #[serde(default)]
    pub name: Option<String>,
    /// MBR active flag.
    #[serde(default)]
    pub bootable: bool,
}

impl Partition {
    /// Byte offset of the partition in the image.
    pub fn offset(&self) -> u64 {
        self.start * SECTOR
    }

    /// Length of the partition in bytes.
    pub fn len(&self) -> u64 {
        self.size * SECTOR
    }

    /// Whether the partition has no sectors.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

#[derive(Deserialize)]
struct SfdiskJson {
    partitiontable: PartitionTable,
}

/// An entry of an ext4 directory, from `debugfs ls -p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Entry {
    /// Name within its directory.
    pub name: String,
    /// Full `st_mode` (file type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
}

impl Ext4Entry {
    /// Permission bits (`0o7777` part of the mode).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// A card image on disk, with its partition table read once.
#[derive(Debug, Clone)]
pub struct Card {
    path: PathBuf,
    table: PartitionTable,
}

impl Card {
    /// Reads the partition table of the image at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Card> {
        let path = path.into();
        let table = partition_table(&path)?;
        Ok(Card { path, table })
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The partition table.
    pub fn table(&self) -> &PartitionTable {
        &self.table
    }

    /// Partition `number` (1-based, as in `/dev/sda1`).
    pub fn partition(&self, number: usize) -> Result<&Partition> {
        number
            .checked_sub(1)
            .and_then(|index| self.table.partitions.get(index))
            .ok_or_else(|| {
                anyhow!(
                    "{} has no partition {number} (it has {})",
                    self.path.display(),
                    self.table.partitions.len()
                )
            })
    }

    /// Copies partition `number` into the file `dest` (holes stay holes where
    /// the source reads as zeros).
    pub fn extract(&self, number: usize, dest: &Path) -> Result<()> {
        let part = self.partition(number)?;
        let mut src =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        src.seek(SeekFrom::Start(part.offset()))?;
        let mut out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
        let mut remaining = part.len();
        let mut buf = vec![0u8; 1 << 20];
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            src.read_exact(&mut buf[..want]).with_context(|| {
                format!("reading partition {number} of {}", self.path.display())
            })?;
            if buf[..want].iter().all(|&b| b == 0) {
                out.seek(SeekFrom::Current(want as i64))?;
            } else {
                out.write_all(&buf[..want])?;
            }
            remaining -= want as u64;
        }
        out.set_len(part.len())?;
        out.sync_all()?;
        Ok(())
    }

    /// The `image?offset=N` name e2fsprogs opens partition `number` by.
    fn ext4_source(&self, number: usize) -> Result<String> {
        let part = self.partition(number)?;
        let path = self
            .path
            .to_str()
            .ok_or_else(|| anyhow!("{} is not UTF-8", self.path.display()))?;
        ensure!(
            !path.contains('?'),
            "{path}: e2fsprogs would read '?' as the start of I/O options"
        );
        Ok(format!("{path}?offset={}", part.offset()))
    }

    /// Runs one debugfs request on partition `number`; fails on anything
    /// debugfs reports on stderr besides its banner (debugfs exits 0 even
    /// when the file does not exist).
    fn debugfs(&self, number: usize, request: &str) -> Result<Vec<u8>> {
        let source = self.ext4_source(number)?;
        let output = tool::run(tool::command("debugfs").arg("-R").arg(request).arg(&source))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.starts_with("debugfs ") && !line.trim().is_empty())
            .collect();
        ensure!(
            complaints.is_empty(),
            "debugfs -R '{request}' on partition {number} of {}: {}",
            self.path.display(),
            complaints.join("; ")
        );
        Ok(output.stdout)
    }

    /// Contents of the file at absolute `path` in ext4 partition `number`.
    pub fn ext4_read(&self, number: usize, path: &str) -> Result<Vec<u8>> {
        let entry = self.ext4_stat(number, path)?;
        ensure!(
            entry.is_file(),
            "{path} in partition {number} of {} is not a regular file (mode {:o})",
            self.path.display(),
            entry.mode
        );
        let bytes = self.debugfs(number, &format!("cat {}", quote(path)))?;
        ensure!(
            bytes.len() as u64 == entry.size,
            "debugfs returned {} bytes of {path}, which has {}",
            bytes.len(),
            entry.size
        );
        Ok(bytes)
    }

    /// Contents of the text file at `path` in ext4 partition `number`.
    pub fn ext4_read_string(&self, number: usize, path: &str) -> Result<String> {
        let bytes = self.ext4_read(number, path)?;
        String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))
    }

    /// The entries of directory `dir` in ext4 partition `number`, without
    /// `.` and `..`.
    pub fn ext4_list(&self, number: usize, dir: &str) -> Result<Vec<Ext4Entry>> {
        let text = String::from_utf8(self.debugfs(number, &format!("ls -p {}", quote(dir)))?)?;
        parse_debugfs_ls(&text)
    }

    /// Mode, owner and size of `path` in ext4 partition `number`.
    pub fn ext4_stat(&self, number: usize, path: &str) -> Result<Ext4Entry> {
        let (dir, name) = split_path(path)?;
        self.ext4_list(number, dir)?
            .into_iter()
            .find(|entry| entry.name == name)
            .ok_or_else(|| {
                anyhow!(
                    "{path} does not exist in partition {number} of {}",
                    self.path.display()
                )
            })
    }

    /// Modification time of `path` in ext4 partition `number` as debugfs
    /// reports it (`0x<seconds>:<extra> -- <date>`), to tell whether a boot
    /// rewrote a file.
    pub fn ext4_mtime(&self, number: usize, path: &str) -> Result<String> {
        let text = String::from_utf8(self.debugfs(number, &format!("stat {}", quote(path)))?)?;
        parse_debugfs_mtime(&text).ok_or_else(|| {
            anyhow!(
                "debugfs stat of {path} in partition {number} of {} shows no mtime:\n{text}",
                self.path.display()
            )
        })
    }

    /// Whether `path` exists in ext4 partition `number`.
    pub fn ext4_exists(&self, number: usize, path: &str) -> Result<bool> {
        let (dir, name) = split_path(path)?;
        match self.ext4_list(number, dir) {
            Ok(entries) => Ok(entries.iter().any(|entry| entry.name == name)),
            Err(err) if err.to_string().contains("File not found") => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Runs `e2fsck -fn` on ext4 partition `number`.
    pub fn ext4_check(&self, number: usize) -> Result<()> {
        let source = self.ext4_source(number)?;
        tool::run(tool::command("e2fsck").arg("-fn").arg(&source))?;
        Ok(())
    }

    /// The `image@@offset` name mtools opens partition `number` by.
    fn fat_source(&self, number: usize) -> Result<String> {
        let part = self.partition(number)?;
        Ok(format!("{}@@{}", self.path.display(), part.offset()))
    }

    /// Names in the FAT directory `dir` (e.g. `/` or `/EFI/BOOT`) of
    /// partition `number`.
    pub fn fat_list(&self, number: usize, dir: &str) -> Result<Vec<String>> {
        let source = self.fat_source(number)?;
        let text = tool::run_stdout(mtools("mdir").args(["-b", "-i", &source, &fat_path(dir)]))?;
        Ok(text
            .lines()
            .filter_map(|line| line.trim_end_matches('/').rsplit('/').next())
            .filter(|name| !name.is_empty() && *name != "." && *name != "..")
            .map(str::to_owned)
            .collect())
    }

    /// Contents of the file `path` in FAT partition `number`.
    pub fn fat_read(&self, number: usize, path: &str) -> Result<Vec<u8>> {
        let source = self.fat_source(number)?;
        let scratch = tempfile::tempdir()?;
        let local = scratch.path().join("file");
        tool::run(
            mtools("mcopy")
                .args(["-n", "-i", &source, &fat_path(path)])
                .arg(&local),
        )
        .with_context(|| format!("reading {path} from partition {number}"))?;
        std::fs::read(&local).with_context(|| format!("reading {}", local.display()))
    }

    /// Contents of the text file `path` in FAT partition `number`.
    pub fn fat_read_string(&self, number: usize, path: &str) -> Result<String> {
        let bytes = self.fat_read(number, path)?;
        String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))
    }

    /// Writes `contents` to `path` in FAT partition `number`, replacing any
    /// file there.
    pub fn fat_write(&self, number: usize, path: &str, contents: &[u8]) -> Result<()> {
        let source = self.fat_source(number)?;
        let scratch = tempfile::tempdir()?;
        let local = scratch.path().join("file");
        std::fs::write(&local, contents)?;
        tool::run(
            mtools("mcopy")
                .args(["-o", "-i", &source])
                .arg(&local)
                .arg(fat_path(path)),
        )
        .with_context(|| format!("writing {path} into partition {number}"))?;
        Ok(())
    }

    /// Runs `fsck.vfat -n` on FAT partition `number` (extracted to a
    /// temporary file: fsck.vfat cannot start at an offset).
    pub fn fat_check(&self, number: usize) -> Result<()> {
        let scratch = tempfile::tempdir()?;
        let copy = scratch.path().join(format!("p{number}.fat"));
        self.extract(number, &copy)?;
        tool::run(tool::command("fsck.vfat").arg("-n").arg(&copy))?;
        Ok(())
    }

    /// `blkid -p` of partition `number`: `TYPE`, `LABEL`, `UUID` …
    pub fn probe(&self, number: usize) -> Result<Vec<(String, String)>> {
        let part = self.partition(number)?;
        let out = tool::run_stdout(
            tool::command("blkid")
                .args(["-p", "-o", "export", "-O"])
                .arg(part.offset().to_string())
                .args(["-S"])
                .arg(part.len().to_string())
                .arg(&self.path),
        )?;
        Ok(out
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect())
    }

    /// One value of [`Card::probe`], e.g. `LABEL`.
    pub fn probe_value(&self, number: usize, key: &str) -> Result<String> {
        self.probe(number)?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value)
            .ok_or_else(|| anyhow!("blkid reports no {key} for partition {number}"))
    }
}

/// Parses `debugfs ls -p` output, leaving out `.` and `..`.
fn parse_debugfs_ls(text: &str) -> Result<Vec<Ext4Entry>> {
    let mut entries = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        // `/inode/mode/uid/gid/name/size/`; a name may itself hold '/'
        // only in theory (ext4 forbids it), so split from both ends.
        // Directories have an empty size field (`/12/040755/0/0/.//`).
        let line = line.trim();
        let inner = line.strip_prefix('/').and_then(|l| l.strip_suffix('/'));
        let fields: Vec<&str> = inner.unwrap_or(line).split('/').collect();
        ensure!(fields.len() >= 6, "unexpected debugfs ls -p line: {line}");
        let name = fields[4..fields.len() - 1].join("/");
        if name == "." || name == ".." {
            continue;
        }
        entries.push(Ext4Entry {
            name,
            mode: u32::from_str_radix(fields[1], 8).with_context(|| format!("mode in `{line}`"))?,
            uid: fields[2]
                .parse()
                .with_context(|| format!("uid in `{line}`"))?,
            gid: fields[3]
                .parse()
                .with_context(|| format!("gid in `{line}`"))?,
            size: fields[fields.len() - 1].parse().unwrap_or(0),
        });
    }
    Ok(entries)
}

/// Reads the partition table of `image` with `sfdisk -J`.
pub fn partition_table(image: &Path) -> Result<PartitionTable> {
    let json = tool::run_stdout(tool::command("sfdisk").arg("-J").arg(image))?;
    let parsed: SfdiskJson = serde_json::from_str(&json)
        .with_context(|| format!("parsing sfdisk -J of {}", image.display()))?;
    Ok(parsed.partitiontable)
}

/// An mtools command that does not second-guess partition geometry.
fn mtools(program: &str) -> std::process::Command {
    let mut cmd = tool::command(program);
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    cmd
}

/// `::/path` for mtools.
fn fat_path(path: &str) -> String {
    format!("::/{}", path.trim_start_matches('/'))
}

/// Splits an absolute path into its directory and last name.
fn split_path(path: &str) -> Result<(&str, &str)> {
    if !path.starts_with('/') || path == "/" {
        bail!("{path}: expected an absolute path to a file or directory");
    }
    let (dir, name) = path
        .trim_end_matches('/')
        .rsplit_once('/')
        .expect("absolute");
    Ok((if dir.is_empty() { "/" } else { dir }, name))
}

/// The `mtime:` field of `debugfs stat` output.
fn parse_debugfs_mtime(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix("mtime:"))
        .map(|value| value.trim().to_owned())
}

/// Quotes a path for debugfs's request parser.
fn quote(path: &str) -> String {
    format!("\"{path}\"")
}

/// Copies a card image keeping it sparse (a bootable golden image is
/// ~1.8 GiB, mostly holes).
pub fn copy_sparse(source: &Path, dest: &Path) -> Result<PathBuf> {
    tool::run(
        tool::command("cp")
            .args(["--sparse=always", "--reflink=auto"])
            .arg(source)
            .arg(dest),
    )?;
    if !dest.is_file() {
        bail!("cp did not create {}", dest.display());
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debugfs_stat_mtime_is_found() {
        let text = "Inode: 12   Type: regular    Mode:  0644   Flags: 0x80000\n \
                    ctime: 0x6925d2b1:1a2b3c4d -- Wed Nov 25 23:10:41 2026\n \
                    atime: 0x6925d2b0:00000000 -- Wed Nov 25 23:10:40 2026\n \
                    mtime: 0x6925d2b1:1a2b3c4d -- Wed Nov 25 23:10:41 2026\n\
                    crtime: 0x6925d2b0:00000000 -- Wed Nov 25 23:10:40 2026\n";
        assert_eq!(
            parse_debugfs_mtime(text).unwrap(),
            "0x6925d2b1:1a2b3c4d -- Wed Nov 25 23:10:41 2026"
        );
        assert!(parse_debugfs_mtime("Inode: 12\n").is_none());
    }

    #[test]
    fn debugfs_ls_lines_parse_files_and_directories() {
        let text = "/12/040755/0/0/.//\n /2/040755/0/0/..//\n/16/100644/0/0/hostname/7/\n\n/19/040700/1000/100/ssh//\n";
        let entries = parse_debugfs_ls(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            Ext4Entry {
                name: "hostname".into(),
                mode: 0o100644,
                uid: 0,
                gid: 0,
                size: 7
            }
        );
        assert!(entries[0].is_file() && !entries[0].is_dir());
        assert_eq!(
            (entries[1].permissions(), entries[1].uid, entries[1].gid),
            (0o700, 1000, 100)
        );
        assert!(entries[1].is_dir());
        assert!(parse_debugfs_ls("/12/040755/0/\n").is_err());
    }

    #[test]
    fn paths_split_into_directory_and_name() {
        assert_eq!(split_path("/etc/hostname").unwrap(), ("/etc", "hostname"));
        assert_eq!(split_path("/etc/").unwrap(), ("/", "etc"));
        assert!(split_path("etc/hostname").is_err());
        assert!(split_path("/").is_err());
        assert_eq!(fat_path("/EFI/BOOT"), "::/EFI/BOOT");
        assert_eq!(fat_path("user-data"), "::/user-data");
    }

    #[test]
    fn sfdisk_json_of_a_gpt_disk_parses() {
        let json = r#"{"partitiontable": {"label": "gpt", "id": "4D455449-5300-4000-8000-000000000064",
            "device": "amd64.img", "unit": "sectors", "firstlba": 34, "lastlba": 298974, "sectorsize": 512,
            "partitions": [{"node": "amd64.img1", "start": 2048, "size": 32768,
              "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "uuid": "4D455449-5300-4000-8000-0000000000E1", "name": "ESP"}]}}"#;
        let table = serde_json::from_str::<SfdiskJson>(json)
            .unwrap()
            .partitiontable;
        assert_eq!(table.label, "gpt");
        let esp = &table.partitions[0];
        assert_eq!(
            (esp.offset(), esp.len(), esp.name.as_deref()),
            (1 << 20, 16 << 20, Some("ESP"))
        );
        assert!(!esp.bootable);
    }
}
