//! [`TreeBuilder`]: a B-tree with full nodes, built from items pushed one at
//! a time without a sorted copy of all of them beside the tree. std's
//! `BTreeMap` fills its nodes only when built from a sorted sequence
//! (`collect`, `append`); `collect` first gathers the whole sequence in a
//! vector, and for the id index of a million regions that vector was a
//! third of a store load's peak memory.

use std::collections::BTreeMap;

/// A B-tree built from items pushed in any order, with scratch for one run
/// of [`RUN`] items: each run is sorted into a small tree, and trees of
/// equal size are merged (`append`, which frees the old nodes as it builds
/// the new) as a merge sort merges its runs. The price is a pass over the
/// items for each doubling past one run (two for a million).
pub(super) struct TreeBuilder<K, V> {
    run: Vec<(K, V)>,
    /// Items sorted at once ([`RUN`] unless made otherwise).
    run_len: usize,
    /// Merged trees with their levels (a tree of level l holds 2^l runs),
    /// levels falling towards the top.
    merged: Vec<(BTreeMap<K, V>, u32)>,
    pushed: usize,
}

/// Items sorted at once by a [`TreeBuilder`]: 8 MiB of scratch for the id
/// index's (u64, Entry).
pub(super) const RUN: usize = 1 << 18;

impl<K: Ord, V> TreeBuilder<K, V> {
    pub(super) fn new() -> Self {
        Self::with_run_len(RUN)
    }

    /// A builder that sorts `run_len` items at once: less scratch, for one
    /// more pass over the items each time it halves.
    pub(super) fn with_run_len(run_len: usize) -> Self {
        TreeBuilder {
            run: Vec::new(),
            run_len,
            merged: Vec::new(),
            pushed: 0,
        }
    }

    pub(super) fn push(&mut self, key: K, value: V) {
        if self.run.capacity() == 0 {
            // Whole at once: a run grown by doubling would hold a half and
            // the whole together on its last step.
            self.run.reserve_exact(self.run_len);
        }
        self.run.push((key, value));
        self.pushed += 1;
        if self.run.len() == self.run_len {
            self.merge_run();
        }
    }

    /// The tree, and whether its keys were distinct (of equal keys, the
    /// later pushed stays).
    pub(super) fn finish(mut self) -> (BTreeMap<K, V>, bool) {
        self.merge_run();
        let mut tree = BTreeMap::new();
        while let Some((mut earlier, _)) = self.merged.pop() {
            earlier.append(&mut tree);
            tree = earlier;
        }
        let distinct = tree.len() == self.pushed;
        (tree, distinct)
    }

    fn merge_run(&mut self) {
        if self.run.is_empty() {
            return;
        }
        let mut tree: BTreeMap<K, V> = std::mem::take(&mut self.run).into_iter().collect();
        let mut level = 0;
        while self.merged.last().is_some_and(|(_, l)| *l == level) {
            let (mut earlier, _) = self.merged.pop().expect("checked above");
            // The later run's values replace the earlier's on equal keys.
            earlier.append(&mut tree);
            tree = earlier;
            level += 1;
        }
        self.merged.push((tree, level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree builder equals inserting one at a time (the later of equal keys
    /// stays) across several runs and merges, and says whether keys repeated.
    #[test]
    fn a_tree_built_from_runs_equals_one_built_by_inserts() {
        for (n, range) in [
            (0, 1),
            (5, 100),
            (3 * super::RUN + 5, u64::MAX),
            (2 * super::RUN, 1 << 20),
        ] {
            let mut builder = super::TreeBuilder::new();
            let mut inserted = BTreeMap::new();
            let mut seed = 11u64;
            for i in 0..n {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = (seed >> 11) % range;
                builder.push(key, i);
                inserted.insert(key, i);
            }
            let (tree, distinct) = builder.finish();
            assert_eq!(distinct, inserted.len() == n, "{n}");
            assert!(tree == inserted, "{n}");
        }
    }
}
