//! What a stored value looks like in each layout, and the in-place upgrade
//! from the oldest layout this build reads.

use redb::ReadableTable;

use super::{KEY_DELTA_FLOOR, KEY_LAYOUT, KEY_NEXT_INDEX, LAYOUT_VERSION, META, REGIONS};

/// (leader peer id, change index, encoding) of a stored value in `layout`.
pub(super) fn split_value(value: &[u8], layout: u64) -> Option<(u64, u64, &[u8])> {
    let (leader, rest) = value.split_first_chunk::<8>()?;
    let leader = u64::from_le_bytes(*leader);
    if layout < 2 {
        return Some((leader, 0, rest));
    }
    let (changed, encoded) = rest.split_first_chunk::<8>()?;
    Some((leader, u64::from_le_bytes(*changed), encoded))
}

/// The stored value of a region in the current layout: (leader peer id,
/// change index, encoding), the inverse of [`split_value`].
pub(super) fn join_value(leader: u64, changed: u64, encoded: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + encoded.len());
    put_value(&mut value, leader, changed, encoded);
    value
}

/// [`join_value`], appended to `to` (a batch's packed records).
pub(super) fn put_value(to: &mut Vec<u8>, leader: u64, changed: u64, encoded: &[u8]) {
    to.extend_from_slice(&leader.to_le_bytes());
    to.extend_from_slice(&changed.to_le_bytes());
    to.extend_from_slice(encoded);
}

/// Bring a store of layout `from` to the current one, inside the caller's
/// transaction. From layout 1, every value gains a change index of 0 ("older
/// than the delta floor"), and the floor becomes the store's next index,
/// since nothing before it was tracked; done in slices so that the upgrade
/// holds little memory. Layout 3 only adds tables (`super::snapshot`): a
/// layout-2 store is one without a snapshot, and only its version changes,
/// so that older builds refuse it once it may hold chunks they cannot read.
pub(super) fn upgrade(txn: &redb::WriteTransaction, from: u64) -> Result<(), redb::Error> {
    if from < 2 {
        add_change_indexes(txn)?;
    }
    txn.open_table(META)?.insert(KEY_LAYOUT, LAYOUT_VERSION)?;
    Ok(())
}

fn add_change_indexes(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    const SLICE: usize = 10_000;
    let mut regions = txn.open_table(REGIONS)?;
    let mut after: Option<u64> = None;
    loop {
        let slice: Vec<(u64, Vec<u8>)> = {
            let range = match after {
                Some(a) => regions.range((a + 1)..)?,
                None => regions.range(0..)?,
            };
            let mut out = Vec::with_capacity(SLICE);
            for entry in range.take(SLICE) {
                let (id, value) = entry?;
                out.push((id.value(), value.value().to_vec()));
            }
            out
        };
        let Some(&(last, _)) = slice.last() else {
            break;
        };
        for (id, old) in slice {
            let (leader, _, encoded) = split_value(&old, 1)
                .ok_or_else(|| redb::Error::Corrupted(format!("region {id} is truncated")))?;
            regions.insert(id, join_value(leader, 0, encoded).as_slice())?;
        }
        if last == u64::MAX {
            break;
        }
        after = Some(last);
    }
    let mut meta = txn.open_table(META)?;
    let next = meta.get(KEY_NEXT_INDEX)?.map_or(0, |v| v.value());
    if meta.get(KEY_DELTA_FLOOR)?.is_none() {
        meta.insert(KEY_DELTA_FLOOR, next)?;
    }
    Ok(())
}
