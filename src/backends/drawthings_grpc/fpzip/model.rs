//! fpzip's adaptive probability model: quasi-static symbol frequencies over a fixed total of
//! 2^16, rebuilt at growing intervals.
//!
//! Every symbol starts with an equal share of the total. Each coded symbol adds an increment to
//! its own (pending) frequency; the table used for coding — the cumulative frequencies — is only
//! rebuilt when a period is over. At a rebuild the pending frequencies become the table, then are
//! halved (kept at least 1, so no symbol ever becomes impossible), and the increment for the next
//! period is chosen so that the pending frequencies add up to exactly 2^16 again when it ends:
//! `total - sum` split over the period, the remainder given one extra to the period's last
//! symbols. The period starts at `symbols / 16` (at least 2), doubles at each rebuild, and stays
//! at 1024 from there. Encoder and decoder run the same updates, so they always agree.
//!
//! Decoding finds the symbol whose cumulative interval holds the target through a lookup table
//! over the top 12 bits of the total, then a binary search within the table's bounds (rarely
//! more than a step). The reference uses 7 bits; the table only speeds the search, every
//! frequency is at least 1, so the symbol found is the same.

/// Symbols coded between rebuilds, once the period has grown.
const PERIOD: u32 = 0x400;
/// The lookup table has 2^TABLE_BITS + 1 entries over the total.
const TABLE_BITS: u32 = 12;
const TABLE_SHIFT: u32 = QuasiStaticModel::TOTAL_BITS - TABLE_BITS;

pub(super) struct QuasiStaticModel {
    /// Symbols left in this period before the increment grows by one (or the table is rebuilt).
    left: u32,
    /// Symbols of this period still to come with the increment plus one.
    more: u32,
    increment: u32,
    period: u32,
    /// Pending frequencies, one per symbol.
    pending: Vec<u32>,
    /// The coding table: `cumulative[s]` is where symbol s starts; `cumulative[symbols]` = total.
    cumulative: Vec<u32>,
    /// For decoding: `search[t >> TABLE_SHIFT]` is a lower bound of the symbol at target t,
    /// `search[(t >> TABLE_SHIFT) + 1]` an upper one. Empty when encoding.
    search: Vec<u16>,
}

impl QuasiStaticModel {
    pub(super) const TOTAL_BITS: u32 = 16;
    pub(super) const TOTAL: u32 = 1 << Self::TOTAL_BITS;

    /// A fresh model over `symbols` symbols (2..=511 in fpzip); `for_decoding` adds the search
    /// table.
    pub(super) fn new(symbols: u32, for_decoding: bool) -> QuasiStaticModel {
        let n = symbols as usize;
        let share = Self::TOTAL / symbols;
        let extra = (Self::TOTAL % symbols) as usize;
        let pending = (0..n)
            .map(|i| if i < extra { share + 1 } else { share })
            .collect();
        let mut cumulative = vec![0; n + 1];
        cumulative[n] = Self::TOTAL;
        let search = if for_decoding {
            vec![0; (1 << TABLE_BITS) + 1]
        } else {
            Vec::new()
        };
        let mut model = QuasiStaticModel {
            left: 0,
            more: 0,
            increment: 0,
            period: (symbols >> 4) | 2,
            pending,
            cumulative,
            search,
        };
        model.rebuild();
        model
    }

    /// The interval (start, frequency) of `symbol`, then the model learns it.
    #[inline]
    pub(super) fn encode(&mut self, symbol: u32) -> (u32, u32) {
        let s = symbol as usize;
        let start = self.cumulative[s];
        let frequency = self.cumulative[s + 1] - start;
        self.learn(s);
        (start, frequency)
    }

    /// The symbol whose interval holds `target` (< TOTAL), with its interval; then the model
    /// learns it.
    #[inline]
    pub(super) fn decode(&mut self, target: u32) -> (u32, u32, u32) {
        let slot = (target >> TABLE_SHIFT) as usize;
        let mut low = self.search[slot] as usize;
        let mut high = self.search[slot + 1] as usize + 1;
        while low + 1 < high {
            let middle = (low + high) / 2;
            if target < self.cumulative[middle] {
                high = middle;
            } else {
                low = middle;
            }
        }
        let start = self.cumulative[low];
        let frequency = self.cumulative[low + 1] - start;
        self.learn(low);
        (low as u32, start, frequency)
    }

    #[inline]
    fn learn(&mut self, symbol: usize) {
        if self.left == 0 {
            self.next_period();
        }
        self.left -= 1;
        self.pending[symbol] += self.increment;
    }

    /// Either the rest of the period with the increment plus one, or a rebuild.
    fn next_period(&mut self) {
        if self.more != 0 {
            self.left = self.more;
            self.more = 0;
            self.increment += 1;
        } else {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        // The first period is at most 33 symbols (511 symbols at most), so it never exceeds PERIOD.
        self.period = (self.period * 2).min(PERIOD);
        let n = self.pending.len();
        let mut start = self.cumulative[n];
        let mut unassigned = start;
        for (frequency, cumulative) in self
            .pending
            .iter_mut()
            .zip(self.cumulative[..n].iter_mut())
            .rev()
        {
            start -= *frequency;
            *cumulative = start;
            *frequency = (*frequency >> 1) | 1;
            unassigned -= *frequency;
        }
        self.increment = unassigned / self.period;
        self.more = unassigned % self.period;
        self.left = self.period - self.more;
        if !self.search.is_empty() {
            let mut high = 1usize << TABLE_BITS;
            for symbol in (0..n).rev() {
                let low = (self.cumulative[symbol] >> TABLE_SHIFT) as usize;
                for slot in &mut self.search[low..=high] {
                    *slot = symbol as u16;
                }
                high = low;
            }
        }
    }
}
