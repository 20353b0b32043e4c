"""A sliding statistics window: Sentinel's LeapArray, `sample_count` buckets that together span `interval_ms`.

Time is cut into buckets of `interval_ms / sample_count` aligned on multiples of that length. A bucket is reused
(reset) when time reaches its slot again, so memory is fixed and nothing is ever scanned but the buckets
themselves. The window at time t is the bucket holding t and the `sample_count - 1` buckets before it: it covers
between `interval_ms * (sample_count - 1) / sample_count` and `interval_ms` of history, the same trade Sentinel
makes (one bucket = a tumbling window; more buckets = a smoother slide).

>>> w = SlidingWindow(sample_count=2, interval_ms=1000)
>>> w.current(0.1).requests += 1; w.current(0.6).requests += 1
>>> w.totals(0.9).requests, w.totals(1.2).requests, w.totals(2.0).requests
(2, 1, 0)
"""

from __future__ import annotations


class Bucket:
    """Counts of one bucket (mutable; reset in place when its slot comes round again)."""

    __slots__ = ("errors", "index", "requests", "slow")

    def __init__(self) -> None:
        self.index = -1  # which bucket length since time 0 this bucket counts; -1 = never used
        self.requests = 0
        self.errors = 0
        self.slow = 0

    def reset(self, index: int) -> None:
        self.index = index
        self.requests = self.errors = self.slow = 0


class Totals:
    """Sums over the window (a fresh value; changing it changes nothing)."""

    __slots__ = ("errors", "requests", "slow")

    def __init__(self, requests: int = 0, errors: int = 0, slow: int = 0) -> None:
        self.requests = requests
        self.errors = errors
        self.slow = slow

    def __repr__(self) -> str:
        return f"Totals(requests={self.requests}, errors={self.errors}, slow={self.slow})"


class SlidingWindow:
    """`sample_count` buckets over `interval_ms`; times are the caller's monotonic clock in seconds.

    `add()` is the per-statement path: it counts one completion and leaves the window's sums in `requests`,
    `errors` and `slow`, in O(1) while time stays in the same bucket (the sums are recomputed from the
    `sample_count` buckets only when a new bucket starts). `current()` and `totals()` are the general forms.
    """

    __slots__ = ("_bucket_s", "_buckets", "_head", "_head_bucket", "errors", "interval_ms", "requests",
                 "sample_count", "slow")

    def __init__(self, sample_count: int, interval_ms: int) -> None:
        if sample_count < 1 or interval_ms <= 0:
            raise ValueError(f"sample_count {sample_count} and interval_ms {interval_ms} must be positive")
        self.sample_count = sample_count
        self.interval_ms = interval_ms
        # Float bucket lengths, so an interval need not divide evenly by sample_count (Sentinel asserts it must).
        self._bucket_s = interval_ms / 1000.0 / sample_count
        self._buckets = [Bucket() for _ in range(sample_count)]
        # The sums below are those of the window ending with bucket index `_head` (whose bucket is `_head_bucket`),
        # and only while nothing but `add()` changed the buckets: `current()` and `reset()` invalidate them.
        self._head: int | None = None
        self._head_bucket = self._buckets[0]
        self.requests = 0
        self.errors = 0
        self.slow = 0

    def _index(self, now: float) -> int:
        return int(now // self._bucket_s)

    def _bucket(self, index: int) -> Bucket:
        bucket = self._buckets[index % self.sample_count]
        if bucket.index != index:
            bucket.reset(index)
        return bucket

    def current(self, now: float) -> Bucket:
        """The bucket that counts `now`, reset first if it still holds an older time's counts."""
        self._head = None  # the caller may change the bucket behind add()'s sums
        return self._bucket(self._index(now))

    def add(self, now: float, error: bool, slow: bool) -> None:
        """Count one completion at `now`; afterwards `requests`, `errors` and `slow` are `totals(now)`'s."""
        index = int(now // self._bucket_s)
        if index == self._head:
            bucket = self._head_bucket
            bucket.requests += 1
            self.requests += 1
            if error:
                bucket.errors += 1
                self.errors += 1
            if slow:
                bucket.slow += 1
                self.slow += 1
            return
        bucket = self._bucket(index)
        bucket.requests += 1
        if error:
            bucket.errors += 1
        if slow:
            bucket.slow += 1
        oldest = index - self.sample_count + 1
        requests = errors = slow_n = 0
        for b in self._buckets:
            if oldest <= b.index <= index:
                requests += b.requests
                errors += b.errors
                slow_n += b.slow
        self.requests, self.errors, self.slow = requests, errors, slow_n
        self._head, self._head_bucket = index, bucket

    def totals(self, now: float) -> Totals:
        """Sums of the buckets inside the window that ends with the bucket of `now`."""
        index = self._index(now)
        oldest = index - self.sample_count + 1
        out = Totals()
        for bucket in self._buckets:
            if oldest <= bucket.index <= index:
                out.requests += bucket.requests
                out.errors += bucket.errors
                out.slow += bucket.slow
        return out

    def reset(self) -> None:
        """Forget every count (a breaker that closes starts from a clean window)."""
        self._head = None
        for bucket in self._buckets:
            bucket.reset(-1)
