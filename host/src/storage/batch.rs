//! [`WriteBatch`]: one atomic change of the durable state, committed as one
//! redb transaction by [`super::Storage::write`].

/// One atomic change of the durable state.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// Remove every region first (a full sync starts).
    pub reset: bool,
    /// Region writes, applied in order (`put_encoded`, `delete`).
    pub writes: RegionWrites,
    /// Set the next index.
    pub next_index: Option<u64>,
    /// Set or clear the sync-complete marker.
    pub complete: Option<bool>,
    /// Keep this cluster id.
    pub cluster_id: Option<u64>,
    /// Set the oldest index from which the regions' change indexes are
    /// complete.
    pub delta_floor: Option<u64>,
    /// Set or clear the resumable marker (a delta is under way).
    pub resumable: Option<bool>,
    /// Replace the store's lineage (the leaderships its index passed
    /// through), in the same transaction as the records it describes.
    pub lineage: Option<crate::lineage::Lineage>,
    /// The region writes are a full sync's snapshot in key order, into a
    /// store reset since: kept as one chunk (`super::snapshot`) when nothing
    /// else was written since the reset, as rows otherwise.
    pub snapshot: bool,
    /// fsync before returning. Without it the batch may be lost in a crash,
    /// never torn; use it only where a lost batch is harmless (a full sync's
    /// data, which an incomplete marker already disowns).
    pub durable: bool,
}

/// The region writes of a batch, in order: a region removed and re-added in
/// one batch must end up present (a pending write reordered after a delete
/// once brought a removed region back in PD).
#[derive(Debug, Default)]
pub struct RegionWrites {
    /// The first writes, all puts, laid out as records (`pack`): one buffer
    /// rather than a value per region, written as it is when it is a
    /// snapshot's chunk (`super::snapshot`). Applied before `ops`.
    packed: Vec<u8>,
    /// Records in `packed`.
    packed_count: u64,
    /// The writes from the first removal on.
    ops: Vec<RegionOp>,
}

/// One region write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOp {
    /// (id, the value stored for it: leader peer id, index of its last
    /// change and region encoding, made by the caller's thread so that the
    /// writer's only copy is into redb).
    Put(u64, Vec<u8>),
    /// Remove the region with this id.
    Delete(u64),
}

/// A put as a record: id (8 bytes, little endian), the stored value's length
/// (4 bytes, little endian), then the value (`super::layout`). A snapshot's
/// chunk on disk is a run of these.
fn pack(to: &mut Vec<u8>, id: u64, leader_id: u64, changed: u64, blob: &[u8]) -> Option<()> {
    let len = u32::try_from(16 + blob.len()).ok()?;
    to.extend_from_slice(&id.to_le_bytes());
    to.extend_from_slice(&len.to_le_bytes());
    super::layout::put_value(to, leader_id, changed, blob);
    Some(())
}

/// The records of a packed buffer, in order, as (id, stored value); the
/// error names where it is cut short.
pub(super) fn unpack(mut packed: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8]), usize>> {
    let total = packed.len();
    std::iter::from_fn(move || {
        if packed.is_empty() {
            return None;
        }
        let cut = Err(total - packed.len());
        let Some((id, rest)) = packed.split_first_chunk::<8>() else {
            return Some(cut);
        };
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            return Some(cut);
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some(value) = rest.get(..len) else {
            return Some(cut);
        };
        packed = &rest[len..];
        Some(Ok((u64::from_le_bytes(*id), value)))
    })
}

impl RegionWrites {
    /// Put a region already encoded (as the region store keeps it).
    fn put(&mut self, id: u64, leader_id: u64, changed: u64, blob: &[u8]) {
        // Packed until the first removal (or a region too large to pack),
        // so that the packed puts stay before every op.
        if self.ops.is_empty() && pack(&mut self.packed, id, leader_id, changed, blob).is_some() {
            self.packed_count += 1;
        } else {
            let value = super::layout::join_value(leader_id, changed, blob);
            self.ops.push(RegionOp::Put(id, value));
        }
    }

    /// The packed puts (written by this batch, so whole).
    pub(super) fn packed_puts(&self) -> impl Iterator<Item = (u64, &[u8])> {
        unpack(&self.packed).map_while(Result::ok)
    }

    /// The writes after the packed puts.
    pub(super) fn ops(&self) -> &[RegionOp] {
        &self.ops
    }

    /// Only puts, all packed: (records, count), for a chunk.
    pub(super) fn only_packed(&self) -> Option<(&[u8], u64)> {
        (self.ops.is_empty() && self.packed_count > 0).then_some((&self.packed, self.packed_count))
    }

    /// No writes.
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty() && self.ops.is_empty()
    }

    fn weight(&self) -> usize {
        let ops = self.ops.iter().map(|op| match op {
            RegionOp::Put(_, value) => 16 + value.len(),
            RegionOp::Delete(_) => 16,
        });
        self.packed.len() + ops.sum::<usize>()
    }

    /// `later`'s writes after ours.
    fn extend(&mut self, later: RegionWrites) {
        if self.is_empty() {
            *self = later;
        } else if self.ops.is_empty() {
            self.packed.extend_from_slice(&later.packed);
            self.packed_count += later.packed_count;
            self.ops = later.ops;
        } else {
            // Packed puts may only come before every op.
            let puts = later
                .packed_puts()
                .map(|(id, v)| RegionOp::Put(id, v.to_vec()));
            self.ops.extend(puts);
            self.ops.extend(later.ops);
        }
    }

    /// The writes in order, as ops.
    #[cfg(test)]
    fn all(&self) -> Vec<RegionOp> {
        let puts = self
            .packed_puts()
            .map(|(id, v)| RegionOp::Put(id, v.to_vec()));
        puts.chain(self.ops.iter().cloned()).collect()
    }
}

impl WriteBatch {
    /// Put a region already encoded (as the region store keeps it).
    pub fn put_encoded(&mut self, id: u64, leader_id: u64, changed: u64, blob: &[u8]) {
        self.writes.put(id, leader_id, changed, blob);
    }

    /// Remove region `id`.
    pub fn delete(&mut self, id: u64) {
        self.writes.ops.push(RegionOp::Delete(id));
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.writes.is_empty()
            && self.next_index.is_none()
            && self.complete.is_none()
            && self.cluster_id.is_none()
            && self.delta_floor.is_none()
            && self.resumable.is_none()
            && self.lineage.is_none()
    }

    /// Bytes this batch holds in memory, roughly: what a queue of batches
    /// is bounded by.
    pub fn weight(&self) -> usize {
        self.writes.weight() + 64
    }

    /// Fold a `later` batch into this one, so that both land in one
    /// transaction with the same result as one after the other: its
    /// region writes after ours, its settings over ours, durable if either
    /// was. A batch that resets the store cannot follow others in one
    /// transaction, and is handed back.
    pub fn absorb(&mut self, later: WriteBatch) -> Result<(), Box<WriteBatch>> {
        if later.reset {
            return Err(Box::new(later));
        }
        let WriteBatch {
            reset: _,
            snapshot,
            writes,
            next_index,
            complete,
            cluster_id,
            delta_floor,
            resumable,
            lineage,
            durable,
        } = later;
        // A chunk only if all of its writes are snapshot data.
        self.snapshot =
            (self.snapshot || self.writes.is_empty()) && (snapshot || writes.is_empty());
        self.writes.extend(writes);
        self.next_index = next_index.or(self.next_index);
        self.complete = complete.or(self.complete);
        self.cluster_id = cluster_id.or(self.cluster_id);
        self.delta_floor = delta_floor.or(self.delta_floor);
        self.resumable = resumable.or(self.resumable);
        self.lineage = lineage.or(self.lineage.take());
        self.durable |= durable;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbing_keeps_order_and_takes_the_later_settings() {
        let mut first = WriteBatch {
            next_index: Some(5),
            complete: Some(true),
            ..Default::default()
        };
        first.put_encoded(1, 0, 4, b"a");
        let mut later = WriteBatch {
            next_index: Some(7),
            durable: true,
            ..Default::default()
        };
        later.delete(1);
        later.put_encoded(1, 0, 6, b"b");
        assert!(first.absorb(later).is_ok());
        assert_eq!(first.next_index, Some(7));
        assert_eq!(first.complete, Some(true));
        assert!(first.durable);
        assert_eq!(
            first.writes.all(),
            vec![
                RegionOp::Put(1, super::super::layout::join_value(0, 4, b"a")),
                RegionOp::Delete(1),
                RegionOp::Put(1, super::super::layout::join_value(0, 6, b"b")),
            ]
        );
        let reset = WriteBatch {
            reset: true,
            ..Default::default()
        };
        assert!(first.absorb(reset).is_err());
    }
}
