//! Which leadership wrote which records: the terms a store's index passed
//! through (docs/protocol.md §8).
//!
//! Followers number records as their leader does, so a promoted follower
//! continues the numbering and the others resume from it by history. That is
//! only sound for a follower whose records *are* the new leader's: when the
//! old leader fails, a follower that was ahead of the winner holds records
//! the winner never had, under indexes the winner will now reuse. Resuming
//! it by index alone would serve it a mix of two histories with equal
//! indexes and different regions.
//!
//! The cure is Raft's log-matching rule. Each leadership under etcd has a
//! term (the etcd revision at which it won); a leader records the index at
//! which its term began. Two stores whose records at index `i` come from
//! the same term hold the same records up to `i`, because one leader wrote
//! that term's records in order on top of what it held when it won. A
//! follower therefore says which term its last record came from; the leader
//! compares it with its own term at that index and routes a follower whose
//! history diverged to a full sync.
//!
//! Static roles (no etcd) fork too: a leader restored from an older copy of
//! its store grows another history under the same indexes. So each start
//! of a static leader is a leadership with a term of its own (the start's
//! wall-clock time in microseconds, `leader::static_term`); a plain restart
//! continues its own records, a fork does not (docs/protocol.md §8).

use std::fmt;

/// Most leaderships remembered. A follower whose records predate all of
/// them cannot be matched and takes a full sync.
const MAX_TERMS: usize = 1024;

/// The start of one leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermStart {
    /// The leadership's term (etcd's revision when it won).
    pub term: u64,
    /// The index of the first record it wrote.
    pub first_index: u64,
}

/// The leaderships a store's records come from, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    starts: Vec<TermStart>,
    /// Older entries were dropped: indexes before the first one kept have
    /// an unknown term.
    truncated: bool,
}

impl Lineage {
    /// A lineage from its entries, oldest first (as stored).
    pub fn from_starts(mut starts: Vec<TermStart>) -> Self {
        starts.sort_by_key(|s| s.first_index);
        let truncated = starts.len() > MAX_TERMS;
        if truncated {
            starts.drain(..starts.len() - MAX_TERMS);
        }
        Lineage { starts, truncated }
    }

    /// The entries, oldest first.
    pub fn starts(&self) -> &[TermStart] {
        &self.starts
    }

    /// The newest term (0 without any).
    pub fn latest(&self) -> u64 {
        self.starts.last().map_or(0, |s| s.term)
    }

    /// The term that wrote the record at `index`: 0 before every leadership
    /// (static roles), `None` when that part was forgotten.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        match self.starts.iter().rev().find(|s| s.first_index <= index) {
            Some(s) => Some(s.term),
            None if self.truncated => None,
            None => Some(0),
        }
    }

    /// The term of the last record of a store whose next index is `next`
    /// (0 for an empty store).
    pub fn term_before(&self, next: u64) -> Option<u64> {
        if next == 0 {
            Some(0)
        } else {
            self.term_at(next - 1)
        }
    }

    /// This lineage continued by a leadership `term` that writes from
    /// `first_index` on. A term already last is not added twice (a leader
    /// restarting in its own term).
    pub fn continued(&self, term: u64, first_index: u64) -> Lineage {
        let mut starts: Vec<TermStart> = self
            .starts
            .iter()
            .copied()
            .filter(|s| s.first_index < first_index || s.term == term)
            .collect();
        if starts.last().map(|s| s.term) != Some(term) {
            starts.push(TermStart { term, first_index });
        }
        let mut next = Lineage::from_starts(starts);
        next.truncated |= self.truncated;
        next
    }

    /// What of this lineage a store at `next` can claim: the leaderships
    /// that began at or before its index. A follower holds a term's records
    /// only once its index passed that term's start (or stands at it, with
    /// everything the term's leader had when it won); a leadership that
    /// began after its index wrote nothing it holds.
    pub fn through(&self, next: u64) -> Lineage {
        Lineage {
            starts: self
                .starts
                .iter()
                .copied()
                .filter(|s| s.first_index <= next)
                .collect(),
            truncated: self.truncated,
        }
    }

    /// Parse the metadata form, `term@index,term@index,...`; `None` when it
    /// does not parse (a malformed header is ignored, not trusted).
    pub fn parse(value: &str) -> Option<Self> {
        let mut starts = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (term, index) = part.split_once('@')?;
            starts.push(TermStart {
                term: term.parse().ok()?,
                first_index: index.parse().ok()?,
            });
        }
        Some(Lineage::from_starts(starts))
    }

    /// The lineage is empty (static roles).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

/// The metadata form that [`Lineage::parse`] reads.
impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.starts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}@{}", s.term, s.first_index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage(pairs: &[(u64, u64)]) -> Lineage {
        Lineage::from_starts(
            pairs
                .iter()
                .map(|&(term, first_index)| TermStart { term, first_index })
                .collect(),
        )
    }

    #[test]
    fn term_at_finds_the_leadership_that_wrote_an_index() {
        let l = lineage(&[(7, 1), (12, 100), (30, 250)]);
        assert_eq!(l.term_at(0), Some(0));
        assert_eq!(l.term_at(1), Some(7));
        assert_eq!(l.term_at(99), Some(7));
        assert_eq!(l.term_at(100), Some(12));
        assert_eq!(l.term_at(10_000), Some(30));
        assert_eq!(l.term_before(100), Some(7));
        assert_eq!(l.term_before(0), Some(0));
        assert_eq!(l.latest(), 30);
        assert_eq!(Lineage::default().term_at(5), Some(0));
    }

    #[test]
    fn a_new_term_replaces_what_the_old_one_wrote_from_its_start() {
        // The old leader wrote term 7 up to 120; the winner held only up to
        // 100, so its term starts there and 7's claim on 100.. is gone.
        let winner = lineage(&[(7, 1)]).continued(12, 100);
        assert_eq!(winner, lineage(&[(7, 1), (12, 100)]));
        // Restarting in the same term adds nothing.
        assert_eq!(winner.continued(12, 140), winner);
        // A later term starting before an earlier one's start drops it.
        let again = winner.continued(20, 90);
        assert_eq!(again, lineage(&[(7, 1), (20, 90)]));
    }

    /// Issue #30 item 3: a store at 50 that reconnected to a leader whose
    /// term began at 100 holds none of that term's records.
    #[test]
    fn a_store_holds_only_the_terms_that_began_at_or_before_its_index() {
        let offered = lineage(&[(7, 1), (12, 100)]);
        assert_eq!(offered.through(50), lineage(&[(7, 1)]));
        assert_eq!(offered.through(50).latest(), 7);
        assert_eq!(offered.through(100).latest(), 12);
        assert_eq!(offered.through(150), offered);
        assert_eq!(offered.through(0), Lineage::default());
    }

    #[test]
    fn the_metadata_form_round_trips_and_garbage_is_refused() {
        let l = lineage(&[(7, 1), (12, 100)]);
        assert_eq!(l.to_string(), "7@1,12@100");
        assert_eq!(Lineage::parse(&l.to_string()), Some(l));
        assert_eq!(Lineage::parse(""), Some(Lineage::default()));
        assert_eq!(Lineage::parse("7@x"), None);
        assert_eq!(Lineage::parse("7"), None);
    }

    #[test]
    fn a_forgotten_past_has_no_term() {
        let many: Vec<(u64, u64)> = (1..=(MAX_TERMS as u64 + 5)).map(|t| (t, t * 10)).collect();
        let l = lineage(&many);
        assert_eq!(l.starts().len(), MAX_TERMS);
        assert_eq!(l.term_at(10), None);
        assert_eq!(l.term_at(60), Some(6));
    }
}
