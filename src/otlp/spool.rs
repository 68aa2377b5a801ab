//! OTEL_SPOOL_DIR: undelivered batches as files, so that they survive a
//! restart or a crash. Blocking file I/O: the push calls it on the blocking
//! pool, never on a runtime worker.
//!
//! A file is one batch: a 48-byte header, then the payload (the encoded
//! `ExportMetricsServiceRequest`, gzip-compressed). All numbers are
//! little-endian:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `NVCLSOTB` |
//! | 8 | 4 | format version, 1 |
//! | 12 | 8 | collection time of the snapshot, unix seconds (f64) |
//! | 20 | 8 | sequence number (u64) |
//! | 28 | 8 | encoded length before compression (u64) |
//! | 36 | 8 | payload length (u64) |
//! | 44 | 4 | CRC-32 (IEEE) of bytes 0..44 and of the payload |
//!
//! Named `<collection time in ms, 15 digits>-<sequence, 10 digits>.otlp`, so
//! that a listing sorts oldest first. Written crash-safe: a temporary file
//! (`.<name>.<n>.tmp`), fsync, rename, fsync of the directory; a crash
//! leaves either the whole file or a temporary one, which the next start
//! removes. A file that does not check out is moved into `corrupt/`.
//!
//! The spool holds metric data only: the request carries no API key and no
//! OTLP header (those are added by the transport when it sends).

use super::backlog::Meta;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"NVCLSOTB";
const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 48;
const CRC_AT: usize = 44;
const SUFFIX: &str = ".otlp";
/// DEFLATE inflates a byte to at most 1032 (RFC 1951's longest match from
/// one symbol): a header that claims more than that of its payload lies,
/// and trusting it would size a buffer for it.
const MAX_INFLATION: u64 = 1032;
/// A file larger than this is no batch (a large org's batch is a few
/// hundred kilobytes): not read into memory.
const MAX_FILE: u64 = 256 << 20;
const TEMP_SUFFIX: &str = ".tmp";
/// Where files that do not check out are moved.
pub(crate) const CORRUPT_DIR: &str = "corrupt";

/// Why a spool file was not taken as a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corrupt {
    /// Shorter than its header, or than the payload the header announces.
    Truncated { length: u64, expected: u64 },
    /// Not a spool file of this exporter.
    Foreign,
    /// A spool file of a format version this build does not read.
    Version(u32),
    /// Longer than the header says.
    TrailingBytes { length: u64, expected: u64 },
    /// The checksum does not match: a bit changed on disk.
    Checksum,
    /// The header does not describe a batch (a length or time out of range).
    Header(&'static str),
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corrupt::Truncated { length, expected } => {
                write!(f, "truncated: {length} bytes of {expected}")
            }
            Corrupt::Foreign => {
                f.write_str("not a spool file of this exporter (no NVCLSOTB magic)")
            }
            Corrupt::Version(v) => {
                write!(f, "spool format version {v}, this exporter reads {VERSION}")
            }
            Corrupt::TrailingBytes { length, expected } => {
                write!(f, "{length} bytes where the header says {expected}")
            }
            Corrupt::Checksum => f.write_str("checksum mismatch"),
            Corrupt::Header(what) => write!(f, "bad header: {what}"),
        }
    }
}

/// The header of a batch, then its payload.
pub fn encode(meta: &Meta, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&meta.time.to_le_bytes());
    out.extend_from_slice(&meta.seq.to_le_bytes());
    out.extend_from_slice(&meta.raw_len.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A whole spool file → its batch's description and payload.
pub fn decode(bytes: &[u8]) -> Result<(Meta, &[u8]), Corrupt> {
    let length = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A file cut inside the magic is ours, truncated, only if what is
        // there is the magic's beginning.
        return Err(if !bytes.is_empty() && MAGIC.starts_with(bytes) {
            Corrupt::Truncated {
                length,
                expected: HEADER_LEN as u64,
            }
        } else {
            Corrupt::Foreign
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(Corrupt::Truncated {
            length,
            expected: HEADER_LEN as u64,
        });
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(version);
    if version != VERSION {
        return Err(Corrupt::Version(version));
    }
    let time = f64::from_bits(u64_at(bytes, 12));
    let seq = u64_at(bytes, 20);
    let raw_len = u64_at(bytes, 28);
    let payload_len = u64_at(bytes, 36);
    let expected = (HEADER_LEN as u64).saturating_add(payload_len);
    if length < expected {
        return Err(Corrupt::Truncated { length, expected });
    }
    if length > expected {
        return Err(Corrupt::TrailingBytes { length, expected });
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&bytes[CRC_AT..HEADER_LEN]);
    let payload = &bytes[HEADER_LEN..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..CRC_AT]);
    crc.update(payload);
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Err(Corrupt::Checksum);
    }
    if !(time.is_finite() && time >= 0.0) {
        return Err(Corrupt::Header("the collection time is not a time"));
    }
    if raw_len > payload_len.saturating_mul(MAX_INFLATION).saturating_add(64) {
        return Err(Corrupt::Header(
            "an encoded length the payload cannot inflate to",
        ));
    }
    Ok((
        Meta {
            time,
            seq,
            raw_len,
            stored_len: length,
        },
        payload,
    ))
}

/// A file's bytes, unless it is larger than any batch.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("larger than {} MiB: no batch", MAX_FILE >> 20));
    }
    Ok(bytes)
}

/// The file name of a batch: oldest first in a listing.
pub(crate) fn file_name(meta: &Meta) -> String {
    let millis = (meta.time * 1000.0).round() as u64;
    format!("{millis:015}-{:010}{SUFFIX}", meta.seq)
}

/// What a start found in the spool.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Batches that checked out, oldest first, with their files.
    pub batches: Vec<(Meta, PathBuf)>,
    /// Files that did not, each with why; moved into `corrupt/` when
    /// `moved`, else left where they are (a name that is not ours).
    pub rejected: Vec<Rejected>,
    /// Temporary files of writes a crash interrupted, removed.
    pub interrupted: usize,
}

#[derive(Debug)]
pub(crate) struct Rejected {
    pub path: PathBuf,
    pub why: String,
    pub moved: bool,
}

/// The spool directory, checked usable when opened.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    /// Makes the temporary names of concurrent writes of one batch differ
    /// (a write cut short by shutdown may still run when it writes again).
    temp: AtomicU64,
}

impl Spool {
    /// Creates the directory if missing and checks that a file can be
    /// written there; the error is a setting's error (exit 2).
    pub(crate) fn open(dir: &Path) -> Result<Spool, String> {
        let bad = |what: &str, e: &dyn fmt::Display| {
            format!(
                "OTEL_SPOOL_DIR={:?} is not usable: {what}: {e}",
                dir.display().to_string()
            )
        };
        if dir.exists() && !dir.is_dir() {
            return Err(bad("it is not a directory", &"a file of that name exists"));
        }
        fs::create_dir_all(dir).map_err(|e| bad("cannot create it", &e))?;
        let spool = Spool {
            dir: dir.to_owned(),
            temp: AtomicU64::new(0),
        };
        let probe = dir.join(format!(".probe-{}{TEMP_SUFFIX}", std::process::id()));
        let written = File::create(&probe)
            .and_then(|mut f| f.write_all(b"probe").and_then(|()| f.sync_all()));
        let removed = fs::remove_file(&probe);
        written.map_err(|e| bad("cannot write a file in it", &e))?;
        removed.map_err(|e| bad("cannot remove a file from it", &e))?;
        Ok(spool)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a batch crash-safe; its path.
    pub(crate) fn write(&self, meta: &Meta, payload: &[u8]) -> io::Result<PathBuf> {
        let name = file_name(meta);
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(".{name}.{n}{TEMP_SUFFIX}"));
        let path = self.dir.join(&name);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(&encode(meta, payload))?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map(|()| path)
    }

    /// The payload of a batch written earlier, checked against what the
    /// backlog knows of it.
    pub(crate) fn read(&self, path: &Path, expected: &Meta) -> Result<Vec<u8>, String> {
        let bytes = read_bounded(path)?;
        let (meta, payload) = decode(&bytes).map_err(|c| c.to_string())?;
        if meta.seq != expected.seq || meta.stored_len != expected.stored_len {
            return Err("it changed on disk since it was written".into());
        }
        Ok(payload.to_vec())
    }

    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Moves a file into `corrupt/`, keeping its name.
    pub(crate) fn set_aside(&self, path: &Path) -> io::Result<PathBuf> {
        let aside = self.dir.join(CORRUPT_DIR);
        fs::create_dir_all(&aside)?;
        let target = aside.join(path.file_name().unwrap_or_default());
        fs::rename(path, &target)?;
        Ok(target)
    }

    /// Reads every batch back, oldest first; what does not check out is
    /// set aside (ours) or left alone (foreign names), and reported.
    pub(crate) fn scan(&self) -> io::Result<Scan> {
        let mut scan = Scan::default();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if name == CORRUPT_DIR {
                continue;
            }
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) && is_file {
                if fs::remove_file(&path).is_ok() {
                    scan.interrupted += 1;
                }
                continue;
            }
            if !name.ends_with(SUFFIX) || !is_file {
                scan.rejected.push(Rejected {
                    path,
                    why: "not a spool file of this exporter (left where it is)".into(),
                    moved: false,
                });
                continue;
            }
            let checked = read_bounded(&path).and_then(|bytes| {
                decode(&bytes)
                    .map(|(meta, _)| meta)
                    .map_err(|c| c.to_string())
            });
            match checked {
                Ok(meta) => scan.batches.push((meta, path)),
                Err(why) => {
                    let moved = self.set_aside(&path).is_ok();
                    scan.rejected.push(Rejected { path, why, moved });
                }
            }
        }
        scan.batches
            .sort_by(|(a, _), (b, _)| a.time.total_cmp(&b.time).then(a.seq.cmp(&b.seq)));
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(time: f64, seq: u64) -> Meta {
        Meta {
            time,
            seq,
            raw_len: 1000,
            stored_len: (HEADER_LEN + 5) as u64,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_batch_round_trips_through_its_bytes() {
        let bytes = encode(&meta(1_700_000_000.0, 7), b"hello");
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        assert_eq!(&bytes[..8], b"NVCLSOTB");
        let (got, payload) = decode(&bytes).unwrap();
        assert_eq!(got, meta(1_700_000_000.0, 7));
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn every_kind_of_damage_is_named_and_none_panics() {
        let good = encode(&meta(1.0, 1), b"hello");
        let truncated = |n: usize| decode(&good[..n]).unwrap_err();
        assert_eq!(truncated(0), Corrupt::Foreign);
        assert_eq!(
            truncated(3),
            Corrupt::Truncated {
                length: 3,
                expected: 48
            }
        );
        assert_eq!(
            truncated(47),
            Corrupt::Truncated {
                length: 47,
                expected: 48
            }
        );
        assert_eq!(
            truncated(50),
            Corrupt::Truncated {
                length: 50,
                expected: 53
            }
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer).unwrap_err(),
            Corrupt::TrailingBytes {
                length: 54,
                expected: 53
            }
        );
        let mut flipped = good.clone();
        flipped[50] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), Corrupt::Checksum);
        let mut header = good.clone();
        header[21] ^= 1;
        assert_eq!(decode(&header).unwrap_err(), Corrupt::Checksum);
        let mut version = good.clone();
        version[8] = 9;
        assert_eq!(decode(&version).unwrap_err(), Corrupt::Version(9));
        assert_eq!(decode(b"# not ours\n").unwrap_err(), Corrupt::Foreign);
        let mut huge = good[..HEADER_LEN].to_vec();
        huge[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(Corrupt::Truncated { .. })));
        let bad_time = encode(&meta(f64::NAN, 1), b"x");
        assert!(matches!(decode(&bad_time), Err(Corrupt::Header(_))));
        // Found by fuzz/spool_decode: a length no payload inflates to sized
        // a buffer of 46 TB.
        let mut liar = meta(1.0, 1);
        liar.raw_len = 46_179_488_366_604;
        assert_eq!(
            decode(&encode(&liar, b"hello")).unwrap_err(),
            Corrupt::Header("an encoded length the payload cannot inflate to")
        );
    }

    #[test]
    fn names_sort_by_collection_time_then_sequence() {
        assert_eq!(
            file_name(&meta(1_700_000_000.5, 42)),
            "001700000000500-0000000042.otlp"
        );
        let mut names = [
            file_name(&meta(20.0, 1)),
            file_name(&meta(3.0, 9)),
            file_name(&meta(3.0, 2)),
        ];
        names.sort();
        assert_eq!(names[0], file_name(&meta(3.0, 2)));
        assert_eq!(names[2], file_name(&meta(20.0, 1)));
    }

    #[test]
    fn written_batches_are_scanned_back_and_damaged_ones_set_aside() {
        let dir = temp_dir("scan");
        let spool = Spool::open(&dir).unwrap();
        let a = spool.write(&meta(20.0, 2), b"hello").unwrap();
        let b = spool.write(&meta(10.0, 1), b"hello").unwrap();
        let c = spool.write(&meta(30.0, 3), b"hello").unwrap();
        let mut bytes = fs::read(&c).unwrap();
        bytes[HEADER_LEN] ^= 0xff;
        fs::write(&c, bytes).unwrap();
        fs::write(dir.join("notes.txt"), "mine").unwrap();
        fs::write(dir.join(".000000000000040-0000000004.otlp.0.tmp"), "half").unwrap();
        assert_eq!(spool.read(&a, &meta(20.0, 2)).unwrap(), b"hello");

        let scan = spool.scan().unwrap();
        let found: Vec<_> = scan
            .batches
            .iter()
            .map(|(m, p)| (m.seq, p.clone()))
            .collect();
        assert_eq!(found, [(1, b), (2, a)]);
        assert_eq!(scan.interrupted, 1);
        assert_eq!(scan.rejected.len(), 2, "{:?}", scan.rejected);
        let corrupt = scan.rejected.iter().find(|r| r.moved).unwrap();
        assert_eq!(corrupt.why, "checksum mismatch");
        assert!(dir.join(CORRUPT_DIR).join(c.file_name().unwrap()).is_file());
        assert!(!c.exists());
        assert!(
            dir.join("notes.txt").is_file(),
            "a foreign file is left alone"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_spool_that_is_a_file_is_refused_with_the_setting_named() {
        let dir = temp_dir("file");
        fs::write(&dir, "x").unwrap();
        let error = Spool::open(&dir).unwrap_err();
        assert!(
            error.starts_with("OTEL_SPOOL_DIR=") && error.contains("is not usable: "),
            "{error}"
        );
        let _ = fs::remove_file(&dir);
    }
}
