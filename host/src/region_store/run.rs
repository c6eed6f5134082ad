//! [`Run`]: a snapshot's regions as they arrive in bulk (`bulk`), in key
//! order, kept in chunks of a fixed size rather than in one vector.
//!
//! Why chunks: one vector doubles into a copy of itself as it grows, and it
//! was still whole beside the two indexes being built from it, the
//! follower's peak memory. A chunked run grows a chunk at a time, and hands
//! itself to the index builders a chunk at a time, each chunk freed once
//! consumed ([`Run::into_items`]).
//!
//! Entries alone, not (id, entry) pairs: the id is the encoding's first
//! field, read back where it is asked for, and the run is smaller for it at
//! the point where a full sync's memory peaks (BENCHMARKS.md, "Kept: a
//! full sync's snapshot is stored as chunks" and "Kept: a settling
//! snapshot's run without ids").

use super::entry::Entry;

/// Regions in arrival order, in chunks of [`CHUNK`] (all full but the last).
#[derive(Default)]
pub(super) struct Run {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

/// Items a chunk holds: 1.5 MiB of entries.
pub(super) const CHUNK: usize = 1 << 16;

impl Run {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn push(&mut self, entry: Entry) {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room was just ensured")
            .push(entry);
        self.len += 1;
    }

    /// Item `i` (arrival order).
    pub(super) fn get(&self, i: usize) -> (u64, &Entry) {
        with_id(&self.chunks[i / CHUNK][i % CHUNK])
    }

    /// Every item, in arrival order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, &Entry)> {
        self.chunks.iter().flatten().map(with_id)
    }

    /// The items from position `from` on.
    pub(super) fn iter_from(&self, from: usize) -> impl Iterator<Item = (u64, &Entry)> {
        let (first, offset) = (from / CHUNK, from % CHUNK);
        self.chunks
            .iter()
            .enumerate()
            .skip(first)
            .flat_map(move |(i, c)| c[if i == first { offset } else { 0 }..].iter())
            .map(with_id)
    }

    /// The number of leading items whose entries satisfy `pred`, which holds
    /// for a prefix of the run and for nothing after it (as for
    /// `slice::partition_point`).
    pub(super) fn partition_point(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        let full = self.chunks.partition_point(|c| c.last().is_some_and(&pred));
        match self.chunks.get(full) {
            Some(c) => full * CHUNK + c.partition_point(pred),
            None => self.len,
        }
    }

    /// Every item, by value, in arrival order; each chunk's memory is freed
    /// as soon as its last item is taken.
    pub(super) fn into_items(self) -> impl Iterator<Item = (u64, Entry)> {
        self.chunks.into_iter().flatten().map(|e| (e.id(), e))
    }
}

fn with_id(entry: &Entry) -> (u64, &Entry) {
    (entry.id(), entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_store::sample;

    /// Positions, partition points and iteration agree with one vector's,
    /// across chunk boundaries.
    #[test]
    fn a_chunked_run_reads_like_one_vector() {
        let n = 2 * CHUNK + 3;
        let mut run = Run::default();
        let mut flat = Vec::new();
        for i in 0..n as u64 {
            let region = sample::region(i, n as u64, 1);
            run.push(Entry::new(&region, 0, 0, i));
            flat.push(region);
        }
        assert_eq!(run.len(), n);
        for probe in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, n - 1] {
            let key = flat[probe].start_key.clone();
            assert_eq!(run.partition_point(|e| e.start_key() < &key[..]), probe);
            assert_eq!(
                run.partition_point(|e| e.start_key() <= &key[..]),
                probe + 1
            );
            assert_eq!(run.get(probe).0, flat[probe].id);
            let from: Vec<u64> = run.iter_from(probe).map(|(id, _)| id).collect();
            let want: Vec<u64> = flat[probe..].iter().map(|r| r.id).collect();
            assert_eq!(from, want, "{probe}");
        }
        assert_eq!(run.partition_point(|_| true), n);
        assert_eq!(run.iter_from(n).count(), 0);
        assert_eq!(
            run.iter().next_back().map(|(id, _)| id),
            Some(flat[n - 1].id)
        );
        let ids: Vec<u64> = run.into_items().map(|(id, _)| id).collect();
        assert_eq!(ids, flat.iter().map(|r| r.id).collect::<Vec<_>>());
    }
}
