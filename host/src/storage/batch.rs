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
    /// fsync before returning. Without it the batch may be lost in a crash,
    /// never torn; use it only where a lost batch is harmless (a full sync's
    /// data, which an incomplete marker already disowns).
    pub durable: bool,
}

/// One region write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionOp {
    /// (id, leader peer id, index of its last change, region encoding).
    Put(u64, u64, u64, Vec<u8>),
    /// Remove the region with this id.
    Delete(u64),
}

impl WriteBatch {
    /// Put a region already encoded (as the region store keeps it).
    pub fn put_encoded(&mut self, id: u64, leader_id: u64, changed: u64, blob: &[u8]) {
        self.ops
            .push(RegionOp::Put(id, leader_id, changed, blob.to_vec()));
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
}
