//! The bandwidth limit: a token bucket over the sync and chunk frames this node sends, all
//! peers together. Sans-IO: frames are queued with [`Throttle::push`], the network task asks
//! [`Throttle::ready`] which may go now, and sleeps until [`Throttle::next_at`]. Raft frames
//! are not throttled (heartbeats must not wait behind a bulk transfer, or the leader would be
//! deposed), and neither are frames when no limit is set.
//!
//! The bucket holds at most one second of budget, so an idle link does not save up a burst. A
//! frame larger than that budget still goes once the bucket is full, and the debt it leaves is
//! paid before the next one: over time the rate holds whatever the frame sizes.
//!
//! The queue holds at most [`MAX_QUEUED_BYTES`]: a frame that would go past it is dropped (the
//! sync protocol asks again for what matters), so peers that ask faster than the limit lets
//! answers go cannot grow it without bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most bytes of frames waiting for budget.
pub const MAX_QUEUED_BYTES: usize = 256 << 20;

/// Frames waiting for budget, and the budget.
#[derive(Debug)]
pub struct Throttle<F> {
    /// Bytes per second; `None` for no limit.
    rate: Option<u64>,
    /// Bytes that may be sent now (negative: owed).
    budget: f64,
    last: Instant,
    queue: VecDeque<(usize, F)>,
    /// Bytes in `queue`.
    queued_bytes: usize,
}

impl<F> Throttle<F> {
    pub fn new(rate: Option<u64>, now: Instant) -> Self {
        Throttle {
            rate: rate.filter(|&r| r > 0),
            budget: rate.unwrap_or(0) as f64,
            last: now,
            queue: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// Queues a frame of `len` bytes; false (and the frame dropped) when the queue would hold
    /// more than [`MAX_QUEUED_BYTES`].
    pub fn push(&mut self, len: usize, frame: F) -> bool {
        if self.rate.is_some() && self.queued_bytes.saturating_add(len) > MAX_QUEUED_BYTES {
            return false;
        }
        self.queued_bytes += len;
        self.queue.push_back((len, frame));
        true
    }

    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let dt = now.saturating_duration_since(self.last).as_secs_f64();
            self.budget = (self.budget + dt * rate as f64).min(rate as f64);
        }
        self.last = now;
    }

    /// The frames that may be sent at `now`, in order.
    pub fn ready(&mut self, now: Instant) -> Vec<F> {
        self.refill(now);
        let mut out = Vec::new();
        while let Some((len, _)) = self.queue.front() {
            if self.rate.is_some() {
                if self.budget <= 0.0 {
                    break;
                }
                self.budget -= *len as f64;
            }
            if let Some((len, f)) = self.queue.pop_front() {
                self.queued_bytes -= len;
                out.push(f);
            }
        }
        out
    }

    /// When the next queued frame may go, if one waits.
    pub fn next_at(&self) -> Option<Instant> {
        let rate = self.rate?;
        if self.queue.is_empty() {
            return None;
        }
        let owed = (-self.budget).max(0.0) + 1.0;
        Some(self.last + Duration::from_secs_f64(owed / rate as f64))
    }

    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_limit_everything_goes_at_once() {
        let t0 = Instant::now();
        let mut t = Throttle::new(None, t0);
        for i in 0..5 {
            t.push(1 << 20, i);
        }
        assert_eq!(t.ready(t0), vec![0, 1, 2, 3, 4]);
        assert_eq!(t.next_at(), None);
    }

    #[test]
    fn the_rate_holds_over_time_whatever_the_frame_sizes() {
        let t0 = Instant::now();
        let rate = 100_000u64;
        let mut t = Throttle::new(Some(rate), t0);
        // 40 frames of 25 kB: 1 MB, which must take about 9 s after the first second's budget.
        for i in 0..40 {
            t.push(25_000, i);
        }
        let mut sent = Vec::new();
        let mut now = t0;
        let mut last_batch_at = t0;
        while sent.len() < 40 {
            let batch = t.ready(now);
            if !batch.is_empty() {
                last_batch_at = now;
            }
            sent.extend(batch);
            match t.next_at() {
                Some(at) => now = at.max(now + Duration::from_millis(1)),
                None => break,
            }
        }
        assert_eq!(sent, (0..40).collect::<Vec<_>>(), "in order, none lost");
        let took = last_batch_at.duration_since(t0).as_secs_f64();
        assert!((8.5..=9.6).contains(&took), "{took}");
    }

    #[test]
    fn a_frame_larger_than_a_second_of_budget_still_goes_and_is_paid_for() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Some(1000), t0);
        t.push(5000, 'a');
        t.push(10, 'b');
        assert_eq!(t.ready(t0), vec!['a']);
        let at = t.next_at().unwrap();
        assert!(at >= t0 + Duration::from_secs(4), "the debt is paid first");
        assert!(t.ready(at - Duration::from_millis(10)).is_empty());
        assert_eq!(t.ready(at), vec!['b']);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let now = Instant::now();
        let mut t = Throttle::new(Some(1000), now);
        let frame = MAX_QUEUED_BYTES / 4;
        for i in 0..4 {
            assert!(t.push(frame, i), "frame {i} fits");
        }
        assert!(!t.push(1, 4), "past the bound: dropped");
        assert_eq!(t.queued(), 4);
        // What goes out makes room again.
        assert_eq!(t.ready(now), vec![0]);
        assert!(t.push(frame, 5));
        // Without a limit nothing waits, so nothing is dropped.
        let mut free = Throttle::new(None, now);
        assert!(free.push(MAX_QUEUED_BYTES * 2, 0));
    }
}
