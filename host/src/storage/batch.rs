//! [`WriteBatch`]: one atomic change of the durable state, committed as one
//! redb transaction by [`super::Storage::write`].

/// One atomic change of the durable state.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// Remove every region first (a full sync starts).
    pub reset: bool,
    /// Region writes, applied in order: a region removed and re-added in
    /// one batch must end up present (a pending write reordered after a
    /// delete once brought a removed region back in PD).
    pub ops: Vec<RegionOp>,
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

impl WriteBatch {
    /// Put a region already encoded (as the region store keeps it).
    pub fn put_encoded(&mut self, id: u64, leader_id: u64, changed: u64, blob: &[u8]) {
        let value = super::layout::join_value(leader_id, changed, blob);
        self.ops.push(RegionOp::Put(id, value));
    }

    /// Remove region `id`.
    pub fn delete(&mut self, id: u64) {
        self.ops.push(RegionOp::Delete(id));
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.ops.is_empty()
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
        self.ops
            .iter()
            .map(|op| match op {
                RegionOp::Put(_, value) => 16 + value.len(),
                RegionOp::Delete(_) => 16,
            })
            .sum::<usize>()
            + 64
    }

    /// Fold a `later` batch into this one, so that both land in one
    /// transaction with the same result as one after the other: its
    /// region writes after ours, its settings over ours, durable if either
    /// was. A batch that resets the store cannot follow others in one
    /// transaction, and is handed back.
    pub fn absorb(&mut self, later: WriteBatch) -> Result<(), WriteBatch> {
        if later.reset {
            return Err(later);
        }
        let WriteBatch {
            reset: _,
            snapshot,
            ops,
            next_index,
            complete,
            cluster_id,
            delta_floor,
            resumable,
            lineage,
            durable,
        } = later;
        // A chunk only if all of its writes are snapshot data.
        self.snapshot = (self.snapshot || self.ops.is_empty()) && (snapshot || ops.is_empty());
        self.ops.extend(ops);
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
            first.ops,
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
