//! The embedded store's write-ahead log: what makes a group commit durable
//! with one small sequential write and one `fdatasync`, where a durable
//! redb commit writes every page the commit touched, scattered over the
//! file, and syncs them all (docs/state.md, "Durability").
//!
//! The file has a fixed size, written in full when it is created, so that
//! an append changes no file metadata and `fdatasync` writes only the
//! appended blocks. It holds a header block, then records from
//! [`HEADER_BYTES`] on:
//!
//! ```text
//! header:  MAGIC (8) ‖ VERSION u32 ‖ epoch u64 ‖ crc32 of the 20 bytes before it (u32)
//! record:  epoch u64 ‖ length u32 ‖ crc32 of epoch ‖ length ‖ ops (u32) ‖ ops (length bytes)
//! ```
//!
//! (integers little-endian). A record holds the operations of one group
//! commit ([`Op`]). After each durable redb commit the log restarts: the
//! epoch goes up by one and records are written from the first again,
//! over the old ones. Replay reads records while their epoch is the
//! header's and their checksum holds: the first that fails ends the log (a
//! record whose `fdatasync` had not returned when the process died, or one
//! from before the restart).
//!
//! The restart writes the header without syncing it: the first append
//! after it syncs the header with the record, and a crash before that
//! leaves the old epoch in place, whose records are all in the redb file
//! already. Replaying them there again changes nothing, since every
//! operation sets a key's whole record or removes it, whatever it was.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::KvError;

/// The header's block; records start after it.
pub(super) const HEADER_BYTES: u64 = 4096;
/// The log's size when it is created: the header and 1 MiB of records.
/// A group commit whose record does not fit after the others is committed
/// by redb durably instead, which restarts the log.
pub(super) const DEFAULT_BYTES: u64 = HEADER_BYTES + (1 << 20);

const MAGIC: &[u8; 8] = b"SHKVWAL\0";
const VERSION: u32 = 1;
const RECORD_HEAD: usize = 16;

const PUT: u8 = 1;
const REMOVE: u8 = 2;

/// One write of a group commit, as logged and replayed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Op<'a> {
    /// The key's record becomes `value`, expiring at `expiry` (unix ms).
    Put {
        key: &'a [u8],
        value: &'a [u8],
        expiry: Option<u64>,
    },
    /// The key is removed.
    Remove { key: &'a [u8] },
}

impl Op<'_> {
    /// Appends the operation to a record's body.
    pub(super) fn encode(&self, ops: &mut Vec<u8>) {
        match self {
            Op::Put { key, value, expiry } => {
                ops.push(PUT);
                put_bytes(ops, key);
                ops.extend_from_slice(&expiry.unwrap_or(0).to_le_bytes());
                put_bytes(ops, value);
            }
            Op::Remove { key } => {
                ops.push(REMOVE);
                put_bytes(ops, key);
            }
        }
    }

    /// The operations of a record's body, in order; `None` for a body that
    /// does not parse (which a record with a valid checksum never has).
    pub(super) fn decode_all(mut ops: &[u8]) -> Option<Vec<Op<'_>>> {
        let mut decoded = Vec::new();
        while let Some((&kind, rest)) = ops.split_first() {
            let (key, rest) = take_bytes(rest)?;
            let op = match kind {
                PUT => {
                    let (expiry, rest) = rest.split_first_chunk::<8>()?;
                    let (value, rest) = take_bytes(rest)?;
                    ops = rest;
                    let expiry = u64::from_le_bytes(*expiry);
                    Op::Put {
                        key,
                        value,
                        expiry: (expiry != 0).then_some(expiry),
                    }
                }
                REMOVE => {
                    ops = rest;
                    Op::Remove { key }
                }
                _ => return None,
            };
            decoded.push(op);
        }
        Some(decoded)
    }
}

fn put_bytes(ops: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (KvSettings' limits).
    ops.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    ops.extend_from_slice(bytes);
}

fn take_bytes(ops: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = ops.split_first_chunk::<4>()?;
    let length = u32::from_le_bytes(*length) as usize;
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// The open log.
pub(super) struct Wal {
    file: File,
    epoch: u64,
    /// Where the next record goes.
    end: u64,
    /// The file's size.
    capacity: u64,
    /// Records appended since the last restart.
    pub(super) appended: u32,
    /// False after a restart failed to write the header: records written
    /// then would carry an epoch the header does not, and replay would skip
    /// them. Until a restart succeeds, every commit is a durable redb one.
    usable: bool,
}

impl Wal {
    /// Opens the log at `path`, creating it `size` bytes long if it does
    /// not exist. Returns it with the bodies of the records to replay, in
    /// order. A file that is not a log of this version is refused, not
    /// overwritten: it may hold acknowledged writes.
    pub(super) fn open(path: &Path, size: u64) -> Result<(Self, Vec<Vec<u8>>), KvError> {
        let failed = |what: &str, error: std::io::Error| {
            KvError::Internal(format!("{what} {}: {error}", path.display()))
        };
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Self::create(path, size).map(|wal| (wal, Vec::new()));
            }
            Err(error) => return Err(failed("cannot open the write-ahead log", error)),
        };
        let capacity = file
            .metadata()
            .map_err(|error| failed("cannot read the write-ahead log", error))?
            .len();
        let mut bytes = Vec::with_capacity(capacity as usize);
        (&file)
            .read_to_end(&mut bytes)
            .map_err(|error| failed("cannot read the write-ahead log", error))?;
        let Some(epoch) = parse_header(&bytes) else {
            return Err(KvError::Internal(format!(
                "{} is not a write-ahead log of this version (header {MAGIC:?}, version {VERSION}); \
                 move it away only if the store beside it may lose the writes it holds",
                path.display()
            )));
        };
        let mut records = Vec::new();
        let mut at = HEADER_BYTES as usize;
        while let Some((body, next)) = parse_record(&bytes, at, epoch) {
            records.push(body.to_vec());
            at = next;
        }
        let wal = Self {
            file,
            epoch,
            end: at as u64,
            capacity,
            appended: records.len() as u32,
            usable: true,
        };
        Ok((wal, records))
    }

    /// A new log: `size` bytes written (zeros after the header) and synced,
    /// and its folder synced so that the file's name survives a crash.
    fn create(path: &Path, size: u64) -> Result<Self, KvError> {
        let failed = |error: std::io::Error| {
            KvError::Internal(format!(
                "cannot create the write-ahead log {}: {error}",
                path.display()
            ))
        };
        let size = size.max(HEADER_BYTES * 2);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(failed)?;
        let mut contents = vec![0; size as usize];
        contents[..HEADER_LENGTH].copy_from_slice(&header(1));
        file.write_all_at(&contents, 0).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(folder)
                .and_then(|folder| folder.sync_all())
                .map_err(failed)?;
        }
        Ok(Self {
            file,
            epoch: 1,
            end: HEADER_BYTES,
            capacity: size,
            appended: 0,
            usable: true,
        })
    }

    /// Whether a record of `ops` bytes fits after the others.
    pub(super) fn fits(&self, ops: usize) -> bool {
        self.usable && self.end + (RECORD_HEAD + ops) as u64 <= self.capacity
    }

    /// Writes a record of `ops` and syncs it: when this returns `Ok`, the
    /// record survives a crash.
    pub(super) fn append(&mut self, ops: &[u8]) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(RECORD_HEAD + ops.len());
        record.extend_from_slice(&self.epoch.to_le_bytes());
        record.extend_from_slice(&(ops.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record);
        crc.update(ops);
        record.extend_from_slice(&crc.finalize().to_le_bytes());
        record.extend_from_slice(ops);
        self.file.write_all_at(&record, self.end)?;
        self.file.sync_data()?;
        self.end += record.len() as u64;
        self.appended += 1;
        Ok(())
    }

    /// Empties the log once a durable redb commit holds everything in it:
    /// the next epoch, written into the header, unsynced (see the module's
    /// documentation).
    pub(super) fn restart(&mut self) -> std::io::Result<()> {
        let epoch = self.epoch + 1;
        self.usable = false;
        self.file.write_all_at(&header(epoch), 0)?;
        self.epoch = epoch;
        self.end = HEADER_BYTES;
        self.appended = 0;
        self.usable = true;
        Ok(())
    }

    /// [`Wal::restart`], synced: after a replay at open, so that the
    /// records replayed are not replayed again over later writes.
    pub(super) fn restart_synced(&mut self) -> std::io::Result<()> {
        self.restart()?;
        self.file.sync_data()
    }
}

const HEADER_LENGTH: usize = 24;

fn header(epoch: u64) -> [u8; HEADER_LENGTH] {
    let mut header = [0; HEADER_LENGTH];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&header[..20]);
    header[20..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The epoch of a valid header.
fn parse_header(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..HEADER_LENGTH)?;
    let valid = &header[..8] == MAGIC
        && header[8..12] == VERSION.to_le_bytes()
        && header[20..] == crc32fast::hash(&header[..20]).to_le_bytes();
    valid.then(|| u64::from_le_bytes(header[12..20].try_into().expect("8 bytes")))
}

/// The body of the record at `at` and where the next starts, if a record of
/// `epoch` with a valid checksum is there.
fn parse_record(bytes: &[u8], at: usize, epoch: u64) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at.checked_add(RECORD_HEAD)?)?;
    if head[..8] != epoch.to_le_bytes() {
        return None;
    }
    let length = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    let start = at + RECORD_HEAD;
    let body = bytes.get(start..start.checked_add(length)?)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..12]);
    crc.update(body);
    (head[12..] == crc.finalize().to_le_bytes()).then_some((body, start + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[Op<'_>]) -> Vec<u8> {
        let mut ops = Vec::new();
        for op in list {
            op.encode(&mut ops);
        }
        ops
    }

    #[test]
    fn operations_decode_as_they_were_encoded() {
        let list = [
            Op::Put {
                key: b"a",
                value: b"one",
                expiry: None,
            },
            Op::Remove { key: b"b" },
            Op::Put {
                key: b"",
                value: b"",
                expiry: Some(1_700_000_000_000),
            },
        ];
        assert_eq!(Op::decode_all(&ops(&list)).unwrap(), list);
        // Cut short, or an unknown kind: not a body.
        let whole = ops(&list);
        assert_eq!(Op::decode_all(&whole[..whole.len() - 1]), None);
        assert_eq!(Op::decode_all(&[9, 0, 0, 0, 0]), None);
    }

    #[test]
    fn records_are_replayed_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        let (mut wal, replay) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        assert!(replay.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), DEFAULT_BYTES);
        wal.append(b"first").unwrap();
        wal.append(b"second").unwrap();
        drop(wal);
        let (wal, replay) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        assert_eq!(replay, [b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(wal.appended, 2);
    }

    #[test]
    fn a_torn_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        let (mut wal, _) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        wal.append(b"kept").unwrap();
        let torn_at = wal.end;
        wal.append(b"torn by the crash").unwrap();
        wal.append(b"after it").unwrap();
        drop(wal);
        // One byte of the second record's body never reached the disk.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"X", torn_at + RECORD_HEAD as u64 + 3)
            .unwrap();
        let (mut wal, replay) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        assert_eq!(replay, [b"kept".to_vec()]);
        // The next record goes where the torn one was.
        assert_eq!(wal.end, torn_at);
        wal.append(b"new").unwrap();
        let (_, replay) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        assert_eq!(replay, [b"kept".to_vec(), b"new".to_vec()]);
    }

    #[test]
    fn a_restart_leaves_the_old_records_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        let (mut wal, _) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        wal.append(b"old one").unwrap();
        wal.append(b"old two").unwrap();
        wal.restart().unwrap();
        // Not synced, but a reopen in the same boot reads the page cache.
        let (_, replay) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        assert!(replay.is_empty(), "{replay:?}");
        // As long as the old first record: the old second one follows it,
        // whole, with a valid checksum. Its epoch ends the log.
        wal.append(b"new one").unwrap();
        drop(wal);
        let (_, replay) = Wal::open(&path, DEFAULT_BYTES).unwrap();
        assert_eq!(replay, [b"new one".to_vec()]);
    }

    #[test]
    fn a_record_fits_only_in_the_space_left() {
        let dir = tempfile::tempdir().unwrap();
        let size = HEADER_BYTES + 100;
        let (mut wal, _) = Wal::open(&dir.path().join("kv.wal"), size).unwrap();
        // HEADER_BYTES * 2 at least, whatever was asked.
        assert_eq!(wal.capacity, HEADER_BYTES * 2);
        let room = (wal.capacity - HEADER_BYTES) as usize - RECORD_HEAD;
        assert!(wal.fits(room));
        assert!(!wal.fits(room + 1));
        wal.append(&vec![7; room]).unwrap();
        assert!(!wal.fits(0));
        wal.restart().unwrap();
        assert!(wal.fits(room));
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.wal");
        std::fs::write(&path, b"something else entirely").unwrap();
        let Err(KvError::Internal(message)) = Wal::open(&path, DEFAULT_BYTES) else {
            panic!("opened a file that is not a log");
        };
        assert!(message.contains("is not a write-ahead log"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), b"something else entirely");
    }
}
