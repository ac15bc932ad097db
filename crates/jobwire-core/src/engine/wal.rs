//! The embedded engine's write-ahead log: what makes a group durable.
//!
//! The writer applies a group to a redb write transaction and records every change it
//! makes as a physical redo operation ("set this key of this table to these bytes",
//! "delete this key", "delete this key range"). Before the transaction becomes
//! visible, the group's record is appended here and `fdatasync`ed: one small
//! sequential write and one flush, instead of redb's durable commit (dozens of page
//! writes and a flush of all of them) on every group. The transaction then commits
//! without a flush (`Durability::None`), and a checkpoint (a durable redb commit that
//! stores the last applied LSN) lets the log start over.
//!
//! After a crash, [`read`] returns the records past the last checkpoint and the engine
//! applies them again. Redo operations carry resulting values, never increments, so
//! applying a record that already reached the database changes nothing.
//!
//! Record layout (little-endian): `len: u32, crc32(lsn ++ payload): u32, lsn: u64,
//! payload: len bytes`. Reading stops at the first record that is short, fails its
//! checksum, or does not follow its predecessor's LSN: a torn write at the end of the
//! log belongs to a group that was never acknowledged.

use redb::{Key, StorageError, Table, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

const HEADER: usize = 16;
/// A record bigger than this is treated as corruption when reading.
const MAX_RECORD: usize = 256 << 20;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_RANGE: u8 = 3;
const DELETE_RANGE_INCLUSIVE: u8 = 4;

/// The redo operations of one group, encoded as they are made.
#[derive(Default)]
pub(crate) struct Redo {
    buf: Vec<u8>,
}

/// One decoded redo operation; `table` is the engine's table number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    Put {
        table: u8,
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        table: u8,
        key: &'a [u8],
    },
    /// Keys in `start..end` (`..=end` when `inclusive`).
    DeleteRange {
        table: u8,
        start: &'a [u8],
        end: &'a [u8],
        inclusive: bool,
    },
}

impl Redo {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn record(&mut self, kind: u8, table: u8, a: &[u8], b: &[u8]) {
        self.buf.push(kind);
        self.buf.push(table);
        for part in [a, b] {
            // Keys and values are far below 4 GiB (events are capped at the frame limit).
            self.buf
                .extend_from_slice(&(part.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(part);
        }
    }

    /// `table.insert(k, v)`, recorded.
    pub(crate) fn put<K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: &mut Table<'_, K, V>,
        id: u8,
        k: K::SelfType<'_>,
        v: V::SelfType<'_>,
    ) -> Result<(), StorageError> {
        self.record(PUT, id, K::as_bytes(&k).as_ref(), V::as_bytes(&v).as_ref());
        table.insert(k, v)?;
        Ok(())
    }

    /// `table.remove(k)`, recorded.
    pub(crate) fn delete<K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: &mut Table<'_, K, V>,
        id: u8,
        k: K::SelfType<'_>,
    ) -> Result<(), StorageError> {
        self.record(DELETE, id, K::as_bytes(&k).as_ref(), &[]);
        table.remove(k)?;
        Ok(())
    }

    /// Deletes the keys in `start..end` (`..=end` when `inclusive`), recorded.
    pub(crate) fn delete_range<'k, K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: &mut Table<'_, K, V>,
        id: u8,
        start: K::SelfType<'k>,
        end: K::SelfType<'k>,
        inclusive: bool,
    ) -> Result<(), StorageError> {
        let kind = if inclusive {
            DELETE_RANGE_INCLUSIVE
        } else {
            DELETE_RANGE
        };
        self.record(
            kind,
            id,
            K::as_bytes(&start).as_ref(),
            K::as_bytes(&end).as_ref(),
        );
        delete_range(table, start, end, inclusive)
    }
}

/// Deletes the keys in `start..end` (`..=end` when `inclusive`).
pub(crate) fn delete_range<'k, K: Key + 'static, V: Value + 'static>(
    table: &mut Table<'_, K, V>,
    start: K::SelfType<'k>,
    end: K::SelfType<'k>,
    inclusive: bool,
) -> Result<(), StorageError> {
    if inclusive {
        table.retain_in(start..=end, |_, _| false)
    } else {
        table.retain_in(start..end, |_, _| false)
    }
}

/// Decodes a record's payload; `None` at the end or on a malformed operation.
pub(crate) fn ops(payload: &[u8]) -> impl Iterator<Item = Option<Op<'_>>> + '_ {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let op = next_op(&mut rest);
        if op.is_none() {
            rest = &[];
        }
        Some(op)
    })
}

fn next_op<'a>(rest: &mut &'a [u8]) -> Option<Op<'a>> {
    let (&kind, r) = rest.split_first()?;
    let (&table, r) = r.split_first()?;
    let (a, r) = part(r)?;
    let (b, r) = part(r)?;
    *rest = r;
    match kind {
        PUT => Some(Op::Put {
            table,
            key: a,
            value: b,
        }),
        DELETE => Some(Op::Delete { table, key: a }),
        DELETE_RANGE | DELETE_RANGE_INCLUSIVE => Some(Op::DeleteRange {
            table,
            start: a,
            end: b,
            inclusive: kind == DELETE_RANGE_INCLUSIVE,
        }),
        _ => None,
    }
}

fn part(r: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
    let body = r.get(4..4 + len)?;
    Some((body, &r[4 + len..]))
}

/// The log file, appended by the writer thread only.
pub(crate) struct Wal {
    file: File,
    end: u64,
    header: Vec<u8>,
    /// A failed write could not be taken back: the file may hold a record nobody
    /// was told about, so nothing more may be appended after it.
    broken: bool,
}

impl Wal {
    /// Opens (creating) the log and truncates it: call after [`read`] and after the
    /// records read were made durable in the database.
    pub(crate) fn open_empty(path: &Path) -> io::Result<Wal> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        file.set_len(0)?;
        file.sync_all()?;
        Ok(Wal {
            file,
            end: 0,
            header: Vec::with_capacity(HEADER),
            broken: false,
        })
    }

    /// Bytes appended since the log was last emptied.
    pub(crate) fn len(&self) -> u64 {
        self.end
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Appends one record and waits until it is on disk. On failure the record is
    /// cut off again (or the log marks itself broken), so that a restart never
    /// applies a group that was reported as failed.
    pub(crate) fn append(&mut self, lsn: u64, payload: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("the write-ahead log is broken"));
        }
        match self.write_record(lsn, payload) {
            Ok(()) => Ok(()),
            Err(e) => {
                let end = self.end;
                // `truncate` marks the log broken if this fails too.
                let _ = self.truncate(end);
                Err(e)
            }
        }
    }

    fn write_record(&mut self, lsn: u64, payload: &[u8]) -> io::Result<()> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&lsn.to_le_bytes());
        crc.update(payload);
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "group too large"))?;
        self.header.clear();
        self.header.extend_from_slice(&len.to_le_bytes());
        self.header.extend_from_slice(&crc.finalize().to_le_bytes());
        self.header.extend_from_slice(&lsn.to_le_bytes());
        // Two writes into the page cache, one flush: cheaper than copying a large
        // group into one buffer.
        self.file.write_all_at(&self.header, self.end)?;
        self.file.write_all_at(payload, self.end + HEADER as u64)?;
        self.file.sync_data()?;
        self.end += (HEADER + payload.len()) as u64;
        Ok(())
    }

    /// Cuts the log back to `len` bytes (a record whose group then failed) and
    /// flushes that; marks the log broken when it cannot.
    pub(crate) fn truncate(&mut self, len: u64) -> io::Result<()> {
        let cut = self.file.set_len(len).and_then(|()| self.file.sync_data());
        match cut {
            Ok(()) => {
                self.end = len;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Empties the log (after a checkpoint made everything in it durable). Not
    /// flushed: records that survive a crash are older than the checkpoint and
    /// skipped by LSN, or stop the read by breaking the LSN chain.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.end = 0;
        Ok(())
    }
}

/// The log's intact records, `(lsn, payload)` in order. A missing file is empty.
pub(crate) fn read(path: &Path) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut at = 0usize;
    while let Some(h) = data.get(at..at + HEADER) {
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let len = word(0) as usize;
        let crc = word(4);
        let lsn = u64::from(word(8)) | (u64::from(word(12)) << 32);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let mut c = crc32fast::Hasher::new();
        c.update(&lsn.to_le_bytes());
        c.update(payload);
        if c.finalize() != crc {
            break;
        }
        if out.last().is_some_and(|(prev, _)| lsn != prev + 1) {
            break;
        }
        out.push((lsn, payload.to_vec()));
        at += HEADER + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w");
        let mut wal = Wal::open_empty(&path).expect("open");
        let mut redo = Redo::default();
        redo.record(PUT, 1, b"k", b"v");
        redo.record(DELETE_RANGE_INCLUSIVE, 2, b"a", b"z");
        wal.append(7, redo.as_bytes()).expect("append");
        wal.append(8, b"").expect("append");
        let recs = read(&path).expect("read");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].0, 7);
        let decoded: Vec<_> = ops(&recs[0].1).collect();
        assert_eq!(
            decoded,
            vec![
                Some(Op::Put {
                    table: 1,
                    key: b"k",
                    value: b"v"
                }),
                Some(Op::DeleteRange {
                    table: 2,
                    start: b"a",
                    end: b"z",
                    inclusive: true
                }),
            ]
        );
        // A torn third record (header only, payload cut short) is not returned.
        wal.append(9, b"payload").expect("append");
        let len = std::fs::metadata(&path).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("truncate");
        assert_eq!(read(&path).expect("read").len(), 2);
        // A flipped byte fails the checksum: reading stops before it.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        assert!(read(&path).expect("read").is_empty());
    }

    #[test]
    fn a_broken_lsn_chain_ends_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w");
        let mut wal = Wal::open_empty(&path).expect("open");
        wal.append(1, b"a").expect("append");
        wal.append(2, b"b").expect("append");
        wal.append(5, b"stale").expect("append");
        let recs = read(&path).expect("read");
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(read(&dir.path().join("missing")).expect("read").is_empty());
    }

    #[test]
    fn malformed_operations_decode_as_none() {
        let mut redo = Redo::default();
        redo.record(PUT, 1, b"k", b"v");
        let mut bytes = redo.as_bytes().to_vec();
        bytes.truncate(bytes.len() - 1);
        assert_eq!(ops(&bytes).collect::<Vec<_>>(), vec![None]);
        assert_eq!(
            ops(&[9, 1, 0, 0, 0, 0, 0, 0, 0, 0]).collect::<Vec<_>>(),
            vec![None]
        );
    }
}
