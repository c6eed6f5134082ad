//! A disk in memory that forgets, on a simulated power loss, every write
//! since its last sync: the store's own code and redb's recovery run over
//! it as over a file, in one thread, with no I/O (the simulator's disk).
//!
//! Writes land in the working image at once and are journalled; a sync
//! replays the journal into the synced image. A crash is a new disk holding
//! the synced image only: what redb committed without `Durability::Immediate`
//! is gone, exactly what a machine that lost power would lose.

use std::sync::Arc;

use parking_lot::Mutex;
use redb::StorageBackend;

/// A simulated disk; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimDisk(Arc<Mutex<Images>>);

#[derive(Debug, Default)]
struct Images {
    working: Vec<u8>,
    synced: Vec<u8>,
    /// Writes (and lengths set) since the last sync, in order.
    journal: Vec<Write>,
    syncs: u64,
}

#[derive(Debug)]
enum Write {
    At(u64, Vec<u8>),
    Len(u64),
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// The disk as a machine finds it after losing power: what was synced.
    pub fn after_power_loss(&self) -> SimDisk {
        let images = self.0.lock();
        SimDisk(Arc::new(Mutex::new(Images {
            working: images.synced.clone(),
            synced: images.synced.clone(),
            journal: Vec::new(),
            syncs: images.syncs,
        })))
    }

    /// Syncs so far.
    pub fn syncs(&self) -> u64 {
        self.0.lock().syncs
    }
}

fn set_len(image: &mut Vec<u8>, len: u64) {
    image.resize(
        usize::try_from(len).expect("a simulated disk fits in memory"),
        0,
    );
}

fn write_at(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    if image.len() < start + data.len() {
        image.resize(start + data.len(), 0);
    }
    image[start..start + data.len()].copy_from_slice(data);
}

impl StorageBackend for SimDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.0.lock().working.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let images = self.0.lock();
        let start = offset as usize;
        let Some(bytes) = images.working.get(start..start + out.len()) else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut images = self.0.lock();
        set_len(&mut images.working, len);
        images.journal.push(Write::Len(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut images = self.0.lock();
        let Images {
            synced, journal, ..
        } = &mut *images;
        for write in journal.drain(..) {
            match write {
                Write::At(offset, data) => write_at(synced, offset, &data),
                Write::Len(len) => set_len(synced, len),
            }
        }
        images.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut images = self.0.lock();
        write_at(&mut images.working, offset, data);
        images.journal.push(Write::At(offset, data.to_vec()));
        Ok(())
    }
}
