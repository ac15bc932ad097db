//! The journal: what makes a group durable between two checkpoints of the store.
//!
//! A group's changes to the redb tables are recorded as [`Op`]s, appended to the
//! journal file as one record, and made durable with one `fdatasync`: one
//! sequential write per group where a redb commit rewrites every B-tree page the
//! group touched. The writer keeps applying groups to one open redb write
//! transaction and commits it (a *checkpoint*) only every [`super::CHECKPOINT_EVERY`]
//! or when the journal fills; the checkpoint stores the number of the last record
//! it holds (`META["journal"]`), and the journal starts over at offset 0 (of the
//! other segment, when the checkpoint commits in the background).
//!
//! # File format
//! Two segments, `jobwire.journal` and `jobwire.journal.1` in the data directory
//! (see [`Journal`] for which is written when), each records back to back from
//! offset 0, each `number: u64 LE | len: u32 LE | crc32(number, len, payload): u32
//! LE | payload`. Numbers are consecutive across the store's life and both
//! segments. At open, the records numbered `META["journal"] + 1, + 2, …` are
//! replayed in order ([`chain`]), up to the first record that is missing, torn
//! (bad checksum) or out of sequence (left from before the last checkpoint): such
//! a record was never acknowledged.
//!
//! The file is grown in zeroed, synced [`GROW`] chunks ahead of the write offset, so
//! that a group's `fdatasync` flushes its data only, not the file's size.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The journal's two segment files inside the data directory (the first is the
/// single journal file of stores from before segments).
pub const FILES: [&str; 2] = ["jobwire.journal", "jobwire.journal.1"];

/// Bytes of a record header: number, length, checksum.
const HEADER: usize = 16;

/// How much the file grows at a time (zeroed and synced before use).
pub(super) const GROW: u64 = 1 << 20;

/// Largest payload a record may carry (a group of [`super::MAX_BATCH`] requests
/// of up to the largest publish fits many times over).
const MAX_PAYLOAD: usize = 1 << 30;

/// One change to the store's tables, as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op<'a> {
    /// `jobs[id] = snapshot`
    Job { id: &'a str, snapshot: &'a [u8] },
    /// `events[(id, seq)] = bytes`
    Event {
        id: &'a str,
        seq: u64,
        bytes: &'a [u8],
    },
    /// Delete `events[(id, from)..(id, to)]` (retention trim).
    Trim { id: &'a str, from: u64, to: u64 },
    /// `idempotency[(id, event_id)] = seq`
    Idem {
        id: &'a str,
        event_id: &'a str,
        seq: u64,
    },
    /// `creates[id] = fingerprint`
    Create { id: &'a str, fingerprint: &'a [u8] },
    /// `expiry[(at, id)] = ()`
    Expiry { at: u64, id: &'a str },
    /// `notifications[(owner, seq)] = frame`
    Notify {
        owner: &'a str,
        seq: u64,
        frame: &'a [u8],
    },
    /// `notification_heads[owner] = seq`
    NotifyHead { owner: &'a str, seq: u64 },
    /// Delete `notifications[(owner, seq)]`.
    Unnotify { owner: &'a str, seq: u64 },
    /// `meta["epoch"] = epoch`
    Epoch(u64),
}

const T_JOB: u8 = 1;
const T_EVENT: u8 = 2;
const T_TRIM: u8 = 3;
const T_IDEM: u8 = 4;
const T_CREATE: u8 = 5;
const T_EXPIRY: u8 = 6;
const T_NOTIFY: u8 = 7;
const T_NOTIFY_HEAD: u8 = 8;
const T_UNNOTIFY: u8 = 9;
const T_EPOCH: u8 = 10;

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths are bounded by the frame limits (far below 4 GiB); saturate anyway so
    // a corrupt length can never be written silently: decoding would refuse it.
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

impl Op<'_> {
    /// Appends this op's encoding to `out`.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Job { id, snapshot } => {
                out.push(T_JOB);
                put_bytes(out, id.as_bytes());
                put_bytes(out, snapshot);
            }
            Op::Event { id, seq, bytes } => {
                out.push(T_EVENT);
                put_bytes(out, id.as_bytes());
                put_u64(out, seq);
                put_bytes(out, bytes);
            }
            Op::Trim { id, from, to } => {
                out.push(T_TRIM);
                put_bytes(out, id.as_bytes());
                put_u64(out, from);
                put_u64(out, to);
            }
            Op::Idem { id, event_id, seq } => {
                out.push(T_IDEM);
                put_bytes(out, id.as_bytes());
                put_bytes(out, event_id.as_bytes());
                put_u64(out, seq);
            }
            Op::Create { id, fingerprint } => {
                out.push(T_CREATE);
                put_bytes(out, id.as_bytes());
                put_bytes(out, fingerprint);
            }
            Op::Expiry { at, id } => {
                out.push(T_EXPIRY);
                put_u64(out, at);
                put_bytes(out, id.as_bytes());
            }
            Op::Notify { owner, seq, frame } => {
                out.push(T_NOTIFY);
                put_bytes(out, owner.as_bytes());
                put_u64(out, seq);
                put_bytes(out, frame);
            }
            Op::NotifyHead { owner, seq } => {
                out.push(T_NOTIFY_HEAD);
                put_bytes(out, owner.as_bytes());
                put_u64(out, seq);
            }
            Op::Unnotify { owner, seq } => {
                out.push(T_UNNOTIFY);
                put_bytes(out, owner.as_bytes());
                put_u64(out, seq);
            }
            Op::Epoch(e) => {
                out.push(T_EPOCH);
                put_u64(out, e);
            }
        }
    }
}

/// A record payload that does not decode: the journal is damaged there.
#[derive(Debug, thiserror::Error)]
#[error("journal record {number}: {what}")]
pub struct BadRecord {
    pub number: u64,
    pub what: &'static str,
}

/// Reads the ops of one record payload in order.
pub(super) struct Ops<'a> {
    rest: &'a [u8],
    number: u64,
}

impl<'a> Ops<'a> {
    pub(super) fn new(number: u64, payload: &'a [u8]) -> Ops<'a> {
        Ops {
            rest: payload,
            number,
        }
    }

    fn bad(&self, what: &'static str) -> BadRecord {
        BadRecord {
            number: self.number,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRecord> {
        if self.rest.len() < n {
            return Err(self.bad("cut short"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, BadRecord> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BadRecord> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        let n = u32::from_le_bytes(a) as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, BadRecord> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.bad("a key is not UTF-8"))
    }

    fn op(&mut self) -> Result<Op<'a>, BadRecord> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            T_JOB => Op::Job {
                id: self.str()?,
                snapshot: self.bytes()?,
            },
            T_EVENT => Op::Event {
                id: self.str()?,
                seq: self.u64()?,
                bytes: self.bytes()?,
            },
            T_TRIM => Op::Trim {
                id: self.str()?,
                from: self.u64()?,
                to: self.u64()?,
            },
            T_IDEM => Op::Idem {
                id: self.str()?,
                event_id: self.str()?,
                seq: self.u64()?,
            },
            T_CREATE => Op::Create {
                id: self.str()?,
                fingerprint: self.bytes()?,
            },
            T_EXPIRY => Op::Expiry {
                at: self.u64()?,
                id: self.str()?,
            },
            T_NOTIFY => Op::Notify {
                owner: self.str()?,
                seq: self.u64()?,
                frame: self.bytes()?,
            },
            T_NOTIFY_HEAD => Op::NotifyHead {
                owner: self.str()?,
                seq: self.u64()?,
            },
            T_UNNOTIFY => Op::Unnotify {
                owner: self.str()?,
                seq: self.u64()?,
            },
            T_EPOCH => Op::Epoch(self.u64()?),
            _ => return Err(self.bad("unknown op")),
        })
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = Result<Op<'a>, BadRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let op = self.op();
        if op.is_err() {
            self.rest = &[];
        }
        Some(op)
    }
}

fn checksum(number: u64, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&number.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The records numbered `after + 1, after + 2, …` at the start of `buf`, in
/// order, up to the first missing, torn or out-of-sequence one: `(number,
/// payload)`.
pub(super) fn records(buf: &[u8], after: u64) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut want = after.wrapping_add(1);
    while buf.len() - at >= HEADER {
        let h = &buf[at..at + HEADER];
        let mut n = [0u8; 8];
        n.copy_from_slice(&h[..8]);
        let number = u64::from_le_bytes(n);
        let mut l = [0u8; 4];
        l.copy_from_slice(&h[8..12]);
        let len = u32::from_le_bytes(l);
        let mut c = [0u8; 4];
        c.copy_from_slice(&h[12..16]);
        let crc = u32::from_le_bytes(c);
        let start = at + HEADER;
        let Some(end) = start.checked_add(len as usize).filter(|&e| e <= buf.len()) else {
            break;
        };
        if number != want || (len as usize) > MAX_PAYLOAD {
            break;
        }
        let payload = &buf[start..end];
        if checksum(number, len, payload) != crc {
            break;
        }
        out.push((number, payload));
        at = end;
        want = want.wrapping_add(1);
    }
    out
}

/// The records after `after` across both segments: the segment whose first record
/// is `after + 1`, then the other one if it goes on from there (a checkpoint that
/// was still committing when the process died switched segments; see [`Journal`]).
pub(super) fn chain(segments: &[Vec<u8>; 2], after: u64) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut last = after;
    for _ in 0..2 {
        let Some(more) = segments
            .iter()
            .map(|buf| records(buf, last))
            .find(|r| !r.is_empty())
        else {
            break;
        };
        last = more.last().map_or(last, |r| r.0);
        out.extend(more);
    }
    out
}

/// One journal file.
struct Segment {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    end: u64,
    /// Bytes of the file that are allocated (zeroed and synced).
    allocated: u64,
}

impl Segment {
    fn open(path: PathBuf, dir: &Path) -> std::io::Result<(Segment, Vec<u8>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let allocated = buf.len() as u64;
        if allocated == 0 {
            // A new file: make its directory entry durable before any record.
            File::open(dir)?.sync_all()?;
        }
        let segment = Segment {
            file,
            path,
            end: 0,
            allocated,
        };
        Ok((segment, buf))
    }

    /// Grows the file with zeroes to at least `to` bytes, in [`GROW`] steps, and
    /// syncs it (size included), so record writes never change the file's size.
    fn grow(&mut self, to: u64) -> std::io::Result<()> {
        let target = to.div_ceil(GROW) * GROW;
        let zeros = vec![0u8; GROW as usize];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(GROW);
            self.file.write_all_at(&zeros[..n as usize], at)?;
            at += n;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }
}

/// The journal, written by the writer thread alone: two segment files, one of
/// them active. A checkpoint committed on the writer's thread restarts the active
/// segment ([`Journal::restart`]); one committed in the background first
/// switches to the other segment ([`Journal::switch`]), so that the records
/// written while it commits survive it. The inactive segment then holds only
/// records the committing checkpoint covers, and is switched back to (and
/// overwritten) only when a later checkpoint begins, after this one completed.
pub(super) struct Journal {
    segments: [Segment; 2],
    active: usize,
    /// The number of the next record.
    next: u64,
}

impl Journal {
    /// Opens (or creates) both segments in `dir` and reads them whole. The writer
    /// replays what [`chain`] finds after the store's checkpoint, then calls
    /// [`Journal::restart`].
    pub(super) fn open(dir: &Path) -> std::io::Result<(Journal, [Vec<u8>; 2])> {
        let (first, a) = Segment::open(dir.join(FILES[0]), dir)?;
        let (second, b) = Segment::open(dir.join(FILES[1]), dir)?;
        let journal = Journal {
            segments: [first, second],
            active: 0,
            next: 1,
        };
        Ok((journal, [a, b]))
    }

    /// The active segment's path.
    pub(super) fn path(&self) -> &Path {
        &self.segments[self.active].path
    }

    /// The active segment starts over at offset 0 after a checkpoint that holds
    /// every record before `next`.
    pub(super) fn restart(&mut self, next: u64) {
        self.segments[self.active].end = 0;
        self.next = next;
    }

    /// Records go to the other segment from offset 0 on: a checkpoint holding every
    /// record so far begins (and its commit may not complete).
    pub(super) fn switch(&mut self) {
        self.active ^= 1;
        self.segments[self.active].end = 0;
    }

    /// The number the next record gets.
    pub(super) fn next_number(&self) -> u64 {
        self.next
    }

    /// Bytes written to the active segment.
    pub(super) fn len(&self) -> u64 {
        self.segments[self.active].end
    }

    /// Appends one record and makes it durable (`fdatasync`). On error the write
    /// offset does not move: the next record overwrites whatever reached the file.
    /// A record whose sync failed may still reach the disk; its header is cleared
    /// (best effort) so that a crash before the next append does not replay a
    /// group its callers were told failed.
    pub(super) fn append(&mut self, payload: &[u8]) -> std::io::Result<u64> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| (l as usize) <= MAX_PAYLOAD)
            .ok_or_else(|| std::io::Error::other("journal record too large"))?;
        let number = self.next;
        let total = (HEADER + payload.len()) as u64;
        let seg = &mut self.segments[self.active];
        if seg.end + total > seg.allocated {
            seg.grow(seg.end + total)?;
        }
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&number.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&checksum(number, len, payload).to_le_bytes());
        rec.extend_from_slice(payload);
        seg.file.write_all_at(&rec, seg.end)?;
        if let Err(e) = seg.file.sync_data() {
            let cleared = seg.file.write_all_at(&[0u8; HEADER], seg.end);
            drop(cleared.and_then(|()| seg.file.sync_data()));
            return Err(e);
        }
        seg.end += total;
        self.next += 1;
        Ok(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op<'static>> {
        vec![
            Op::Job {
                id: "t/j",
                snapshot: b"{\"id\":\"j\"}",
            },
            Op::Event {
                id: "t/j",
                seq: 7,
                bytes: b"{\"seq\":7}",
            },
            Op::Trim {
                id: "t/j",
                from: 1,
                to: 3,
            },
            Op::Idem {
                id: "t/j",
                event_id: "e1",
                seq: 7,
            },
            Op::Create {
                id: "t/j",
                fingerprint: b"fp",
            },
            Op::Expiry { at: 99, id: "t/j" },
            Op::Notify {
                owner: "o",
                seq: 2,
                frame: b"{}",
            },
            Op::NotifyHead { owner: "o", seq: 2 },
            Op::Unnotify { owner: "o", seq: 1 },
            Op::Epoch(4),
        ]
    }

    #[test]
    fn ops_round_trip() {
        let mut buf = Vec::new();
        for op in sample() {
            op.encode(&mut buf);
        }
        let back: Vec<Op<'_>> = Ops::new(1, &buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn a_cut_or_garbled_payload_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        for op in sample() {
            op.encode(&mut buf);
        }
        for cut in 0..buf.len() {
            let _ = Ops::new(1, &buf[..cut]).count();
        }
        let mut bad = buf.clone();
        bad[0] = 200;
        assert!(Ops::new(1, &bad).next().unwrap().is_err());
    }

    #[test]
    fn records_stop_at_a_torn_or_stale_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, buf) = Journal::open(dir.path()).unwrap();
        assert!(buf.iter().all(Vec::is_empty));
        j.restart(5);
        for p in [&b"one"[..], b"two", b"three"] {
            j.append(p).unwrap();
        }
        let all = std::fs::read(j.path()).unwrap();
        assert_eq!(all.len() as u64, GROW, "grown in whole chunks");
        let got = records(&all, 4);
        assert_eq!(
            got,
            vec![(5, &b"one"[..]), (6, &b"two"[..]), (7, &b"three"[..])]
        );
        // After any later checkpoint, the record at offset 0 is stale: nothing is new.
        assert!(records(&all, 6).is_empty());
        assert!(records(&all, 7).is_empty());
        // A torn second record ends the replay there.
        let mut torn = all.clone();
        torn[HEADER + 3 + HEADER] ^= 0xff;
        assert_eq!(records(&torn, 4), vec![(5, &b"one"[..])]);
        // Starting over: record 8 overwrites offset 0; 6 and 7 are stale behind it.
        j.restart(8);
        j.append(b"eight").unwrap();
        let all = std::fs::read(j.path()).unwrap();
        assert_eq!(records(&all, 7), vec![(8, &b"eight"[..])]);
        // A garbage length never reads past the buffer.
        let mut long = all.clone();
        long[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(records(&long, 7).is_empty());
    }

    #[test]
    fn a_switch_mid_checkpoint_chains_both_segments_and_a_later_one_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let read = || Journal::open(dir.path()).unwrap().1;
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.restart(1);
        j.append(b"one").unwrap();
        j.append(b"two").unwrap();
        // A checkpoint holding 1..=2 begins in the background; 3 and 4 go on.
        j.switch();
        j.append(b"three").unwrap();
        j.append(b"four").unwrap();
        let segs = read();
        let numbers = |after| chain(&segs, after).iter().map(|r| r.0).collect::<Vec<_>>();
        // It never completed (the store still says 0): all four, in order.
        assert_eq!(numbers(0), [1, 2, 3, 4]);
        // It completed (the store says 2): the second segment only.
        assert_eq!(numbers(2), [3, 4]);
        assert!(numbers(4).is_empty());
        // The next checkpoint (holding 1..=4) switches back: 1 and 2 are overwritten.
        j.switch();
        j.append(b"five").unwrap();
        let segs = read();
        let numbers = |after| chain(&segs, after).iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(numbers(2), [3, 4, 5]);
        assert_eq!(numbers(4), [5]);
        assert_eq!(chain(&segs, 4)[0].1, b"five");
    }
}
